//! The mint's command line (the binary is a thin wrapper, so tests can run the same thing as a process).

use std::path::PathBuf;

use crate::{MintConfig, MintRunConfig};
use clap::Parser;
use hashpool_config::PoolGlobalConfig;

/// Hashpool's Cashu mint (unit `hash`).
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/mint.config.toml")]
    config: PathBuf,
    /// Shared pool-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/pool.toml")]
    global_config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("mint", &args.log, |shutdown| async move {
        let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
        let own: MintConfig = hashpool_config::load(&args.config)?;
        let config = MintRunConfig::new(&global, own).map_err(anyhow::Error::msg)?;
        Ok(crate::start(config, shutdown).await?.task)
    })
    .await
}
