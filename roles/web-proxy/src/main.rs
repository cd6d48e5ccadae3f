use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    web_proxy::cli::run(web_proxy::cli::Args::parse()).await
}
