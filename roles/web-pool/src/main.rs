#[tokio::main]
async fn main() -> anyhow::Result<()> {
    web_pool::cli::BINARY
        .main(|args| web_pool::cli::load(args).map(web_pool::dashboard))
        .await
}
