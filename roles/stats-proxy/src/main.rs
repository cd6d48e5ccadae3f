use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stats_proxy::run(stats_proxy::Args::parse()).await
}
