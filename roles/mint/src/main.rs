use clap::Parser;

// Tried against the mint's RSS growth under steady quotes (its live heap stayed near 8 MB in a
// short heaptrack run while glibc's RSS grew): with it the RSS still grows, from a higher
// start, so the cause is elsewhere (docs/benchmarks.md, "Soak"); kept, as in the pool, until a
// longer profile decides.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mint::cli::run(mint::cli::Args::parse()).await
}
