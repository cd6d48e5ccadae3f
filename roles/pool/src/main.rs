use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pool::cli::run(pool::cli::Args::parse()).await
}
