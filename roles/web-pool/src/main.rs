use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    web_pool::cli::run(web_pool::cli::Args::parse()).await
}
