use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads allocate: the cap applies to the arenas threads are given.
    mint::malloc_arenas::limit();
    let args = mint::cli::Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("the async runtime")?
        .block_on(mint::cli::run(args))
}
