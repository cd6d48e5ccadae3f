//! web-proxy's command line (the binary is a thin wrapper): the dashboards' shared flags and run
//! loop ([`hashpool_web::cli`]) with web-proxy's defaults and config.

use std::path::PathBuf;

use hashpool_config::ProxyGlobalConfig;
pub use hashpool_web::cli::Args;
use hashpool_web::{
    cli::Binary,
    settings::{WebFile, WebSettings},
};
use serde::Deserialize;

use crate::WebProxyConfig;

/// Hashpool web-proxy: the miner's page.
pub const BINARY: Binary = Binary::new(
    "web-proxy",
    "Hashpool web-proxy: the miner's page",
    "config/web-proxy.config.toml",
)
.global_config(
    "config/shared/proxy.toml",
    "Shared miner-side topology (TOML)",
);

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

/// Both files combined: every address comes from the shared topology.
pub fn load(args: &Args) -> anyhow::Result<WebProxyConfig> {
    let (global, own): (ProxyGlobalConfig, _) = args.load_files(WebProxyFile::checked)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_local_configs_load() {
        let config = load(&BINARY.shipped_args()).unwrap();
        assert_eq!(
            config.wallet_token_path,
            PathBuf::from(".hashpool/data/translator/wallet-api-token")
        );
        assert_eq!(config.address.port(), 3030);
        assert_eq!(config.stats_url, "http://127.0.0.1:8092");
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
    }
}
