#[tokio::main]
async fn main() -> anyhow::Result<()> {
    stats_proxy::main().await
}
