//! web-pool's command line (the binary is a thin wrapper): the dashboards' shared flags and run
//! loop ([`hashpool_web::cli`]) with web-pool's defaults and config.

use hashpool_config::PoolGlobalConfig;
pub use hashpool_web::cli::Args;
use hashpool_web::{cli::Binary, settings::WebFile};

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

/// Both files combined: every address comes from the shared topology.
pub fn load(args: &Args) -> anyhow::Result<WebPoolConfig> {
    let (global, web) = args.load_files::<PoolGlobalConfig, _, _>(WebFile::checked)?;
    Ok(WebPoolConfig {
        address: global.web.address,
        stats_url: format!("http://{}", global.stats.http_address),
        pool_monitoring_url: format!("http://{}", global.pool.monitoring_address),
        pool_api_url: global.pool.api_address.map(|a| format!("http://{a}")),
        mint_url: format!("http://{}", global.mint.http_address),
        refresh_secs: web.refresh_secs,
        allowed_hosts: web.allowed_hosts,
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
}
