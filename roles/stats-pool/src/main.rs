use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stats_pool::run(stats_pool::Args::parse()).await
}
