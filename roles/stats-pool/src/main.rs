#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stats_pool::main().await
}
