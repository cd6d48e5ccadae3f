use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    translator::cli::run(translator::cli::Args::parse()).await
}
