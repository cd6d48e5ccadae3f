use clap::Parser;

// glibc's malloc, as tried against the mint's RSS growth under steady quotes: mimalloc grew
// faster, and capping glibc's arenas at two did not stop it (docs/benchmarks.md, "Soak").
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mint::cli::run(mint::cli::Args::parse()).await
}
