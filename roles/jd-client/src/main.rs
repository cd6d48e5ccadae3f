use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jd_client::cli::run(jd_client::cli::Args::parse()).await
}
