//! web-pool's command line (the binary is a thin wrapper).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hashpool_config::PoolGlobalConfig;

use crate::WebPoolConfig;

/// Hashpool web-pool: the operator's dashboard.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/web-pool.config.toml")]
    pub config: PathBuf,
    /// Shared pool-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/pool.toml")]
    pub global_config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    pub log_file: Option<PathBuf>,
}

/// Both files combined: every address comes from the shared topology.
pub fn load(args: &Args) -> anyhow::Result<WebPoolConfig> {
    let global: PoolGlobalConfig = hashpool_config::load(&args.global_config)?;
    let own: hashpool_web::settings::WebFile = hashpool_config::load(&args.config)?;
    let own = own
        .checked()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", args.config.display()))?;
    Ok(WebPoolConfig {
        address: global.web.address,
        stats_url: format!("http://{}", global.stats.http_address),
        pool_monitoring_url: format!("http://{}", global.pool.monitoring_address),
        mint_url: format!("http://{}", global.mint.http_address),
        refresh_secs: own.refresh_secs,
        allowed_hosts: own.allowed_hosts,
    })
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("web-pool", args.log_file.as_deref(), |shutdown| async move {
        let config = load(args)?;
        let address = config.address;
        let running = crate::start(config, shutdown)
            .await
            .with_context(|| format!("binding {address}"))?;
        tracing::info!(address = %running.address, "web-pool: open http://{}/", running.address);
        Ok(running.task)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_local_configs_load() {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = load(&Args {
            config: repo.join("config/web-pool.config.toml"),
            global_config: repo.join("config/shared/pool.toml"),
            log_file: None,
        })
        .unwrap();
        assert_eq!(config.address.port(), 8081);
        assert_eq!(config.stats_url, "http://127.0.0.1:8091");
    }
}
