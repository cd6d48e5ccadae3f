use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jd_server::cli::run(jd_server::cli::Args::parse()).await
}
