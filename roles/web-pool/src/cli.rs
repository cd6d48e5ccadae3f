//! web-pool's command line (the binary is a thin wrapper): the dashboards' shared flags and run
//! loop ([`hashpool_web::cli`]) with web-pool's defaults and config.

use hashpool_config::PoolGlobalConfig;
pub use hashpool_web::cli::Args;
use hashpool_web::{
    cli::Binary,
    settings::{optional_upstream, WebFile, WebSettings},
};
use serde::Deserialize;

use crate::WebPoolConfig;

/// Hashpool web-pool: the operator's dashboard.
pub const BINARY: Binary = Binary::new(
    "web-pool",
    "Hashpool web-pool: the operator's dashboard",
    "config/web-pool.config.toml",
)
.global_config(
    "config/shared/pool.toml",
    "Shared pool-side topology (TOML)",
);

/// `config/web-pool.config.toml`: the dashboards' `[web]` section and, for a web-pool on
/// another host than the roles it reads, their URLs.
#[derive(Debug, Clone, Deserialize)]
pub struct WebPoolFile {
    pub web: WebSettings,
    #[serde(default)]
    pub upstreams: PoolUpstreams,
}

/// Where web-pool reads each role, when not at the address the shared topology binds it to
/// (`http://stats.internal:8091`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolUpstreams {
    pub stats_url: Option<String>,
    pub pool_monitoring_url: Option<String>,
    pub pool_api_url: Option<String>,
    pub mint_url: Option<String>,
}

impl WebPoolFile {
    /// Checks the values; the error names the key.
    pub fn checked(self) -> Result<Self, String> {
        let web = WebFile { web: self.web }.checked()?;
        let u = self.upstreams;
        Ok(Self {
            web,
            upstreams: PoolUpstreams {
                stats_url: optional_upstream("stats_url", u.stats_url)?,
                pool_monitoring_url: optional_upstream(
                    "pool_monitoring_url",
                    u.pool_monitoring_url,
                )?,
                pool_api_url: optional_upstream("pool_api_url", u.pool_api_url)?,
                mint_url: optional_upstream("mint_url", u.mint_url)?,
            },
        })
    }
}

/// Both files combined: each role at the address the shared topology gives it, unless
/// `[upstreams]` names another.
pub fn load(args: &Args) -> anyhow::Result<WebPoolConfig> {
    let (global, own) = args.load_files::<PoolGlobalConfig, _, _>(WebPoolFile::checked)?;
    let u = own.upstreams;
    Ok(WebPoolConfig {
        address: global.web.address,
        stats_url: u
            .stats_url
            .unwrap_or_else(|| format!("http://{}", global.stats.http_address)),
        pool_monitoring_url: u
            .pool_monitoring_url
            .unwrap_or_else(|| format!("http://{}", global.pool.monitoring_address)),
        pool_api_url: u
            .pool_api_url
            .or_else(|| global.pool.api_address.map(|a| format!("http://{a}"))),
        mint_url: u
            .mint_url
            .unwrap_or_else(|| format!("http://{}", global.mint.http_address)),
        refresh_secs: own.web.refresh_secs,
        allowed_hosts: own.web.allowed_hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_local_configs_load() {
        let config = load(&BINARY.shipped_args()).unwrap();
        assert_eq!(config.address.port(), 8081);
        assert_eq!(config.stats_url, "http://127.0.0.1:8091");
    }

    fn load_with(upstreams: &str) -> anyhow::Result<WebPoolConfig> {
        let dir = tempfile::tempdir()?;
        let own = dir.path().join("web-pool.config.toml");
        std::fs::write(
            &own,
            format!("[web]\nrefresh_secs = 5\n\n[upstreams]\n{upstreams}"),
        )?;
        let shipped = BINARY.shipped_args();
        load(&Args {
            config: own,
            ..shipped
        })
    }

    /// A web-pool on another host reads each role by name; what is not named comes from the
    /// shared topology; a value that is not an http(s) URL of a host is refused by its key.
    #[test]
    fn upstreams_by_name_override_the_topology() {
        let config = load_with(
            "stats_url = \"http://stats.internal:8091\"\nmint_url = \"https://mint.example.org/\"\n",
        )
        .unwrap();
        assert_eq!(config.stats_url, "http://stats.internal:8091");
        assert_eq!(config.mint_url, "https://mint.example.org");
        assert_eq!(config.pool_monitoring_url, "http://127.0.0.1:9108");
        let e = load_with("pool_api_url = \"pool.internal:8090\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("upstreams.pool_api_url"), "{e:#}");
        let e = load_with("stat_url = \"http://stats.internal:8091\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("stat_url"), "{e:#}");
    }
}
