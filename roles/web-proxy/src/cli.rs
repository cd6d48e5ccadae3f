//! web-proxy's command line (the binary is a thin wrapper).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use hashpool_config::ProxyGlobalConfig;
use hashpool_web::settings::{WebFile, WebSettings};
use serde::Deserialize;

use crate::WebProxyConfig;

/// `config/web-proxy.config.toml`: the dashboards' `[web]` section and the wallet API's token.
#[derive(Debug, Clone, Deserialize)]
pub struct WebProxyFile {
    pub web: WebSettings,
    #[serde(default)]
    pub wallet_api: WalletApiSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletApiSettings {
    /// The wallet API's bearer token file (written by the wallet's role on its first start),
    /// read for every spending request the page forwards.
    #[serde(default = "default_token_path")]
    pub token_path: PathBuf,
}

impl WebProxyFile {
    /// Checks the values; the error names the key.
    pub fn checked(self) -> Result<Self, String> {
        let web = WebFile { web: self.web }.checked()?;
        if self.wallet_api.token_path.as_os_str().is_empty() {
            return Err("`wallet_api.token_path` is empty".into());
        }
        Ok(Self {
            web,
            wallet_api: self.wallet_api,
        })
    }
}

impl Default for WalletApiSettings {
    fn default() -> Self {
        Self {
            token_path: default_token_path(),
        }
    }
}

/// The local run's translator wallet (config/translator.config.toml keeps its data there).
fn default_token_path() -> PathBuf {
    PathBuf::from(".hashpool/data/translator/wallet-api-token")
}

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
    let own: WebProxyFile = hashpool_config::load(&args.config)?;
    let own = own
        .checked()
        .map_err(|e| anyhow::anyhow!("config {}: {e}", args.config.display()))?;
    Ok(WebProxyConfig {
        address: global.web.address,
        stats_url: format!("http://{}", global.stats.http_address),
        wallet_url: format!("http://{}", global.wallet.api_address),
        translator_url: format!("http://{}", global.translator.monitoring_address),
        refresh_secs: own.web.refresh_secs,
        allowed_hosts: own.web.allowed_hosts,
        wallet_token_path: own.wallet_api.token_path,
    })
}

/// Runs until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = &args;
    hashpool_role::run("web-proxy", args.log_file.as_deref(), |shutdown| async move {
        let config = load(args)?;
        let address = config.address;
        let running = crate::start(config, shutdown)
            .await
            .with_context(|| format!("binding {address}"))?;
        tracing::info!(address = %running.address, "web-proxy: open http://{}/", running.address);
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
            config: repo.join("config/web-proxy.config.toml"),
            global_config: repo.join("config/shared/proxy.toml"),
            log_file: None,
        })
        .unwrap();
        assert_eq!(config.address.port(), 3030);
        assert_eq!(config.stats_url, "http://127.0.0.1:8092");
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
        assert_eq!(
            config.wallet_token_path,
            PathBuf::from(".hashpool/data/translator/wallet-api-token")
        );
    }
}
