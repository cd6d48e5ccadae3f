#[tokio::main]
async fn main() -> anyhow::Result<()> {
    web_proxy::cli::BINARY
        .main(|args| web_proxy::cli::load(args).map(web_proxy::dashboard))
        .await
}
