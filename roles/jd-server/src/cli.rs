//! The jd-server's command line (the binary is a thin wrapper, so tests can run the same thing).

use std::path::PathBuf;

use clap::Parser;
use hashpool_config::PoolGlobalConfig;

use crate::{JdServerConfig, JdServerRunConfig};

/// Hashpool job declarator server.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/jd-server.config.toml")]
    config: PathBuf,
    /// Shared pool-side topology (TOML), with its `[jd_server]` section.
    #[arg(short, long, default_value = "config/shared/pool.toml")]
    global_config: PathBuf,
    #[command(flatten)]
    log: hashpool_role::LogArgs,
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("jd-server", &args.log, |shutdown| async move {
        let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
        let own: JdServerConfig = hashpool_config::load(&args.config)?;
        let config = JdServerRunConfig::new(&global, own).map_err(anyhow::Error::msg)?;
        Ok(crate::start(config, shutdown).await?.task)
    })
    .await
}
