use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mining_device::cli::run(mining_device::cli::Args::parse()).await
}
