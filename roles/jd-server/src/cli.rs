//! The jd-server's command line (the binary is a thin wrapper, so tests can run the same thing).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hashpool_config::PoolGlobalConfig;
use tokio_util::sync::CancellationToken;

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
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    log_file: Option<PathBuf>,
}

/// Runs the role as its binary does, until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
    let own: JdServerConfig = hashpool_config::load(&args.config)?;
    let config = JdServerRunConfig::new(&global, own).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let running = crate::start(config, shutdown.clone())
        .await
        .context("starting the jd-server")?;
    hashpool_sv2_io::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    running.task.await.context("jd-server tasks")?;
    Ok(())
}
