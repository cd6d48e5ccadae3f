//! `stats-proxy`: the stats service of the proxy side. Takes reports from the translator only
//! (keys in the shared config's `[stats]`), keeps them (SQLite or PostgreSQL) and serves
//! them over HTTP.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hashpool_config::ProxyGlobalConfig;
use hashpool_stats::{role::StatsRoleConfig, Role};

pub const SERVICE: &str = "stats-proxy";

/// Hashpool stats-proxy: keeps what the translator reports and serves it over HTTP.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/stats-proxy.config.toml")]
    pub config: PathBuf,
    /// Shared topology (TOML).
    #[arg(short, long, default_value = "config/shared/proxy.toml")]
    pub global_config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    pub log_file: Option<PathBuf>,
}

/// The service's run config from both files.
pub fn load(args: &Args) -> anyhow::Result<hashpool_stats::StatsServiceConfig> {
    let global: ProxyGlobalConfig = hashpool_config::load(&args.global_config)?;
    let own: StatsRoleConfig = hashpool_config::load(&args.config)?;
    own.run_config(SERVICE, Role::Translator, &global.stats)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("config {}", args.config.display()))
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let config = load(&args)?;
    hashpool_stats::role::serve_until_signal(config)
        .await
        .map_err(anyhow::Error::msg)
}
