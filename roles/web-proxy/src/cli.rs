//! web-proxy's command line (the binary is a thin wrapper): the dashboards' shared flags and run
//! loop ([`hashpool_web::cli`]) with web-proxy's defaults and config.

use std::path::PathBuf;

use hashpool_config::{StatsTopology, TranslatorTopology, WalletTopology, WebTopology};
pub use hashpool_web::cli::Args;
use hashpool_web::{
    cli::Binary,
    settings::{optional_upstream, WebFile, WebSettings},
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

/// `config/web-proxy.config.toml`: the dashboards' `[web]` section, the wallet API's token and,
/// for a web-proxy on another host than the roles it reads, their URLs.
#[derive(Debug, Clone, Deserialize)]
pub struct WebProxyFile {
    pub web: WebSettings,
    #[serde(default)]
    pub wallet_api: WalletApiSettings,
    #[serde(default)]
    pub upstreams: ProxyUpstreams,
}

/// Where web-proxy reads each role, when not at the address the shared topology binds it to
/// (`http://rig-box.lan:8083`). A stats or translator URL shows that part even where the
/// topology has no such section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyUpstreams {
    pub stats_url: Option<String>,
    pub wallet_url: Option<String>,
    pub translator_url: Option<String>,
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
        let u = self.upstreams;
        Ok(Self {
            web,
            wallet_api: self.wallet_api,
            upstreams: ProxyUpstreams {
                stats_url: optional_upstream("stats_url", u.stats_url)?,
                wallet_url: optional_upstream("wallet_url", u.wallet_url)?,
                translator_url: optional_upstream("translator_url", u.translator_url)?,
            },
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

/// The shared miner-side topology (`config/shared/proxy.toml`, the same file and sections as
/// `hashpool_config::ProxyGlobalConfig`) as web-proxy reads it: `[translator]` and `[stats]`
/// may be left out where none runs (a miner's wallet at home, `hashpool-wallet serve`), and the
/// page then shows the wallet alone and says what is not available. A section that is given is
/// read whole, as every other role reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyTopology {
    pub translator: Option<TranslatorTopology>,
    pub wallet: WalletTopology,
    pub stats: Option<StatsTopology>,
    pub web: WebTopology,
}

/// Both files combined: each role at the address the shared topology gives it, unless
/// `[upstreams]` names another.
pub fn load(args: &Args) -> anyhow::Result<WebProxyConfig> {
    let (global, own): (ProxyTopology, _) = args.load_files(WebProxyFile::checked)?;
    let u = own.upstreams;
    Ok(WebProxyConfig {
        address: global.web.address,
        stats_url: u.stats_url.or_else(|| {
            global
                .stats
                .map(|stats| format!("http://{}", stats.http_address))
        }),
        wallet_url: u
            .wallet_url
            .unwrap_or_else(|| format!("http://{}", global.wallet.api_address)),
        translator_url: u.translator_url.or_else(|| {
            global
                .translator
                .map(|translator| format!("http://{}", translator.monitoring_address))
        }),
        pool_api_url: global.wallet.pool_api_url,
        refresh_secs: own.web.refresh_secs,
        allowed_hosts: own.web.allowed_hosts,
        wallet_token_path: own.wallet_api.token_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn shipped_local_configs_load() {
        let config = load(&BINARY.shipped_args()).unwrap();
        assert_eq!(
            config.wallet_token_path,
            PathBuf::from(".hashpool/data/translator/wallet-api-token")
        );
        assert_eq!(config.address.port(), 3030);
        assert_eq!(config.stats_url.as_deref(), Some("http://127.0.0.1:8092"));
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
        assert_eq!(
            config.translator_url.as_deref(),
            Some("http://127.0.0.1:9109")
        );
    }

    /// The files a miner uses at home (`hashpool-wallet serve`, no translator, no stats-proxy;
    /// docs/mine-with-your-own-key.md): the wallet alone.
    #[test]
    fn shipped_home_configs_load_without_translator_or_stats() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let config = load(&Args {
            config: dir.join("config/home/web-proxy.config.toml"),
            global_config: dir.join("config/home/proxy.toml"),
            log: Default::default(),
        })
        .unwrap();
        assert_eq!(config.address.port(), 3030);
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
        assert_eq!(
            config.wallet_token_path,
            PathBuf::from(".hashpool-wallet/wallet-api-token")
        );
        assert_eq!((config.stats_url, config.translator_url), (None, None));
    }

    /// The page in front of one's own translator at home (config/profiles/home.toml): every
    /// part shown, the translator's wallet token.
    #[test]
    fn shipped_home_translator_configs_load() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let config = load(&Args {
            config: dir.join("config/home/translator/web-proxy.config.toml"),
            global_config: dir.join("config/home/translator/proxy.toml"),
            log: Default::default(),
        })
        .unwrap();
        assert_eq!(config.stats_url.as_deref(), Some("http://127.0.0.1:8092"));
        assert_eq!(
            config.translator_url.as_deref(),
            Some("http://127.0.0.1:9109")
        );
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
        assert_eq!(
            config.wallet_token_path,
            PathBuf::from(".hashpool-home/translator/wallet-api-token")
        );
    }

    /// A section that is given is read whole: a half-written `[stats]` is refused, naming the key.
    #[test]
    fn a_partial_optional_section_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let global = dir.path().join("proxy.toml");
        std::fs::write(
            &global,
            "[wallet]\napi_address = \"127.0.0.1:8083\"\nmint_url = \"http://127.0.0.1:3338\"\n\
             [web]\naddress = \"127.0.0.1:3030\"\n[stats]\nhttp_address = \"127.0.0.1:8092\"\n",
        )
        .unwrap();
        let own = dir.path().join("web-proxy.toml");
        std::fs::write(&own, "[web]\nrefresh_secs = 5\n").unwrap();
        let err = load(&Args {
            config: own,
            global_config: global,
            log: Default::default(),
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("stats"), "{err:#}");
    }

    /// A web-proxy on another box than the translator (the home wallet's page showing a
    /// translator on the rig's box): named URLs are used, the rest comes from the topology; a
    /// URL that is not one is refused by its key.
    #[test]
    fn upstreams_by_name_override_the_topology() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("web-proxy.toml");
        let load_with = |upstreams: &str| {
            std::fs::write(
                &own,
                format!("[web]\nrefresh_secs = 5\n[upstreams]\n{upstreams}"),
            )
            .unwrap();
            load(&Args {
                config: own.clone(),
                global_config: dir.join("config/home/proxy.toml"),
                log: Default::default(),
            })
        };
        let config = load_with("translator_url = \"http://rig-box.lan:9109\"\n").unwrap();
        assert_eq!(
            config.translator_url.as_deref(),
            Some("http://rig-box.lan:9109")
        );
        assert_eq!(config.stats_url, None);
        assert_eq!(config.wallet_url, "http://127.0.0.1:8083");
        let err = load_with("wallet_url = \"rig-box.lan:8083\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("upstreams.wallet_url"),
            "{err:#}"
        );
    }
}
