use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mining_device_sv1::cli::run(mining_device_sv1::cli::Args::parse()).await
}
