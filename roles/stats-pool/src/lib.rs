//! `stats-pool`: the stats service of the pool side. Takes reports from the pool only
//! (keys in the shared config's `[stats]`), keeps them (SQLite or PostgreSQL) and serves
//! them over HTTP.

use std::path::PathBuf;

use clap::Parser;
use hashpool_config::PoolGlobalConfig;
use hashpool_stats::Role;

pub const SERVICE: &str = "stats-pool";

/// Hashpool stats-pool: keeps what the pool reports and serves it over HTTP.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/stats-pool.config.toml")]
    pub config: PathBuf,
    /// Shared topology (TOML).
    #[arg(short, long, default_value = "config/shared/pool.toml")]
    pub global_config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    pub log_file: Option<PathBuf>,
}

/// The service's run config from both files.
pub fn load(args: &Args) -> Result<hashpool_stats::StatsServiceConfig, String> {
    hashpool_stats::role::load(
        SERVICE,
        Role::Pool,
        &args.config,
        &args.global_config,
        |g: &PoolGlobalConfig| &g.stats,
    )
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    hashpool_stats::role::run(SERVICE, args.log_file.as_deref(), || load(&args)).await
}
