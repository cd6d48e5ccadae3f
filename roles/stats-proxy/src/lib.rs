//! `stats-proxy`: the stats service of the proxy side. Takes reports from the translator only
//! (keys in the shared config's `[stats]`), keeps them (SQLite or PostgreSQL) and serves
//! them over HTTP.

use std::path::PathBuf;

use clap::Parser;
use hashpool_config::ProxyGlobalConfig;
use hashpool_stats::Role;

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
pub fn load(args: &Args) -> Result<hashpool_stats::StatsServiceConfig, String> {
    hashpool_stats::role::load(
        SERVICE,
        Role::Translator,
        &args.config,
        &args.global_config,
        |g: &ProxyGlobalConfig| &g.stats,
    )
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    hashpool_stats::role::run(SERVICE, args.log_file.as_deref(), || load(&args)).await
}
