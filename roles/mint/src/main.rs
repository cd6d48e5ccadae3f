use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mint::cli::run(mint::cli::Args::parse()).await
}
