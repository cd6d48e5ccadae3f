use clap::Parser;

// CDK runs each SQLite connection on a thread of its own, and glibc's malloc keeps what those
// threads free in per-thread arenas: under an hour of steady quotes the mint's live heap stayed
// near 8 MB (heaptrack) while its anonymous RSS grew by half (docs/benchmarks.md, "Soak").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mint::cli::run(mint::cli::Args::parse()).await
}
