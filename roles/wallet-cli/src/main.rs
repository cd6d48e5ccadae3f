use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = hashpool_wallet_cli::Cli::parse();
    let mut out = std::io::stdout();
    if let Err(e) = hashpool_wallet_cli::run(cli, &mut out).await {
        eprintln!("hashpool-wallet: {e:#}");
        std::process::exit(1);
    }
}
