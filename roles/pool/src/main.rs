use clap::Parser;

/// mimalloc instead of glibc's malloc: with thousands of connections and a few allocations per
/// share, glibc's arenas fragmented (memory held after connections closed) and malloc/free were
/// a few percent of the share path (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pool::cli::run(pool::cli::Args::parse()).await
}
