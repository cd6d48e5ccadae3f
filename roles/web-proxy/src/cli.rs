//! web-proxy's command line (the binary is a thin wrapper).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hashpool_config::ProxyGlobalConfig;
use tokio_util::sync::CancellationToken;

use crate::WebProxyConfig;

/// Hashpool web-proxy: the miner's page.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Role config (TOML).
    #[arg(short, long, default_value = "config/web-proxy.config.toml")]
    pub config: PathBuf,
    /// Shared miner-side topology (TOML).
    #[arg(short, long, default_value = "config/shared/proxy.toml")]
    pub global_config: PathBuf,
    /// Also log to this file (rotated daily).
    #[arg(short = 'f', long)]
    pub log_file: Option<PathBuf>,
}

/// Both files combined: every address comes from the shared topology.
pub fn load(args: &Args) -> anyhow::Result<WebProxyConfig> {
    let global: ProxyGlobalConfig = hashpool_config::load(&args.global_config)?;
    let own: hashpool_web::settings::WebFile = hashpool_config::load(&args.config)?;
    let own = own
        .checked()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", args.config.display()))?;
    Ok(WebProxyConfig {
        address: global.web.address,
        stats_url: format!("http://{}", global.stats.http_address),
        wallet_url: format!("http://{}", global.wallet.api_address),
        translator_url: format!("http://{}", global.translator.monitoring_address),
        refresh_secs: own.refresh_secs,
        allowed_hosts: own.allowed_hosts,
    })
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _log = hashpool_logging::init(args.log_file.as_deref())?;
    let config = load(&args)?;
    let shutdown = CancellationToken::new();
    let address = config.address;
    let running = crate::start(config, shutdown.clone())
        .await
        .with_context(|| format!("binding {address}"))?;
    tracing::info!(address = %running.address, "web-proxy: open http://{}/", running.address);
    hashpool_sv2_io::shutdown_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = running.task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_local_configs_load() {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = load(&Args {
            config: repo.join("config/web-proxy.config.toml"),
            global_config: repo.join("config/shared/proxy.toml"),
            log_file: None,
        })
        .unwrap();
        assert_eq!(config.address.port(), 3030);
        assert_eq!(config.stats_url, "http://127.0.0.1:8092");
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
    }
}
