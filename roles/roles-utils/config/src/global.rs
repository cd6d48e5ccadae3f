//! The shared topology every role of one side reads: `config/shared/pool.toml` through
//! [`PoolGlobalConfig`], `config/shared/proxy.toml` through [`ProxyGlobalConfig`].

use std::net::SocketAddr;

use serde::Deserialize;
use stratum_apps::key_utils::Secp256k1PublicKey;

/// Pool side: where the pool, the mint, the pool's stats and web roles listen, and how work is
/// turned into ehash.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolGlobalConfig {
    pub pool: PoolTopology,
    pub mint: MintTopology,
    pub stats: StatsTopology,
    pub web: WebTopology,
    pub ehash: EhashConfig,
    /// The job declarator server, when miners may declare their own jobs.
    #[serde(default)]
    pub jd_server: Option<JdServerTopology>,
}

/// Where job declarator clients connect, and the key the pool checks job tokens with.
#[derive(Debug, Clone, Deserialize)]
pub struct JdServerTopology {
    pub listen_address: SocketAddr,
    /// The jd-server's Noise authority key; it also signs the job tokens the pool checks.
    pub authority_public_key: Secp256k1PublicKey,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolTopology {
    /// Miners and translators connect here (Noise SV2).
    pub listen_address: SocketAddr,
    /// The mint connects here (Noise SV2 with the mint-quote extension).
    pub mint_link_address: SocketAddr,
    /// Monitoring HTTP API (`/api/v1/...`, `/metrics`).
    pub monitoring_address: SocketAddr,
    /// The per-key miner API (`/api/v1/miners/{key}`), read by web-pool's miner pages. Not
    /// served when unset.
    #[serde(default)]
    pub api_address: Option<SocketAddr>,
    /// The pool's Noise authority public key: what every peer of the pool pins.
    pub authority_public_key: Secp256k1PublicKey,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MintTopology {
    /// Cashu HTTP API.
    pub http_address: SocketAddr,
    /// The mint's authority key: the pool accepts the mint link only from its holder.
    pub authority_public_key: Secp256k1PublicKey,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatsTopology {
    /// Where the role feeding stats connects (Noise).
    pub ingest_address: SocketAddr,
    /// Stats HTTP JSON API.
    pub http_address: SocketAddr,
    /// The stats service's Noise authority key, pinned by its reporters.
    pub authority_public_key: Secp256k1PublicKey,
    /// Keys allowed to report (each reporter proves it holds one).
    pub reporter_public_keys: Vec<Secp256k1PublicKey>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebTopology {
    pub address: SocketAddr,
}

/// How accepted work becomes ehash.
#[derive(Debug, Clone, Deserialize)]
pub struct EhashConfig {
    /// Cashu currency unit of the tokens (`hash`).
    pub unit: String,
    /// Work, in difficulty-1 shares, that earns one unit of ehash.
    pub unit_work: f64,
}

/// Miner side: the translator's upstream and downstream, its wallet, and the proxy's stats and
/// web roles.
#[derive(Debug, Clone, Deserialize)]
pub struct ProxyGlobalConfig {
    pub translator: TranslatorTopology,
    pub wallet: WalletTopology,
    pub stats: StatsTopology,
    pub web: WebTopology,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TranslatorTopology {
    /// SV1 miners connect here.
    pub downstream_address: SocketAddr,
    /// The SV2 pool (Noise): `host:port`, the name resolved at each connect.
    pub upstream_address: crate::HostPort,
    /// The pool's authority key, pinned by the translator.
    pub upstream_authority_public_key: Secp256k1PublicKey,
    /// Monitoring HTTP API.
    pub monitoring_address: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletTopology {
    /// Wallet HTTP API (bound to loopback by default).
    pub api_address: SocketAddr,
    /// The mint's Cashu HTTP API, as the wallet reaches it.
    pub mint_url: String,
    /// The pool's miner API (`pool.api_address`), where the miner's page follows its
    /// withdrawals into the pool's coinbases; unset: the page lists them without their state.
    #[serde(default)]
    pub pool_api_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo_file(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../..")
            .join(rel)
    }

    #[test]
    fn shipped_pool_global_config_loads() {
        let c: PoolGlobalConfig =
            crate::load_with_env(&repo_file("config/shared/pool.toml"), vec![]).unwrap();
        assert_eq!(c.pool.listen_address.port(), 34254);
        assert_eq!(c.mint.http_address.port(), 3338);
        assert_eq!(c.ehash.unit, "hash");
        assert!(c.ehash.unit_work > 0.0);
    }

    #[test]
    fn shipped_proxy_global_config_loads() {
        let c: ProxyGlobalConfig =
            crate::load_with_env(&repo_file("config/shared/proxy.toml"), vec![]).unwrap();
        assert_eq!(c.translator.downstream_address.port(), 34255);
        assert_eq!(c.web.address.port(), 3030);
    }

    #[test]
    fn an_upstream_may_be_a_host_name() {
        let text = std::fs::read_to_string(repo_file("config/shared/proxy.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        let load = |upstream: &str| {
            let mut section = false;
            let edited: Vec<String> = text
                .lines()
                .map(|line| {
                    if line.starts_with('[') {
                        section = line.trim() == "[translator]";
                    }
                    if section && line.starts_with("upstream_address") {
                        format!("upstream_address = \"{upstream}\"")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            std::fs::write(&path, edited.join("\n")).unwrap();
            crate::load_with_env::<ProxyGlobalConfig, _>(&path, vec![])
        };
        let c = load("localhost:34254").unwrap();
        assert_eq!(c.translator.upstream_address.host(), "localhost");
        assert_eq!(c.translator.upstream_address.port(), 34254);
        let c = load("[::1]:34254").unwrap();
        assert_eq!(
            c.translator.upstream_address,
            "[::1]:34254".parse::<SocketAddr>().unwrap()
        );
        let err = load("pool.example.org").unwrap_err();
        assert!(
            matches!(&err, crate::ConfigError::BadValue { key, .. } if key == "translator.upstream_address"),
            "{err:?}"
        );
        assert!(err.to_string().contains("has no port"), "{err}");
        // And from the environment.
        let c: ProxyGlobalConfig = crate::load_with_env(
            &repo_file("config/shared/proxy.toml"),
            vec![(
                "HASHPOOL__TRANSLATOR__UPSTREAM_ADDRESS".to_string(),
                "pool.example.org:3333".to_string(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.translator.upstream_address.to_string(),
            "pool.example.org:3333"
        );
    }

    #[test]
    fn shipped_prod_global_configs_load() {
        let pool: PoolGlobalConfig =
            crate::load_with_env(&repo_file("config/prod/shared/pool.toml"), vec![]).unwrap();
        assert!(pool.jd_server.is_some());
        assert_eq!(pool.ehash.unit_work, 1024.0);
        let proxy: ProxyGlobalConfig =
            crate::load_with_env(&repo_file("config/prod/shared/proxy.toml"), vec![]).unwrap();
        assert_eq!(proxy.translator.downstream_address.port(), 34255);
    }

    #[test]
    fn the_shared_config_loads_beside_the_variables_of_a_roles_own_file() {
        // What a pool-side role's environment holds under systemd (keys/<role>.env) and in the
        // supervisor's tests: variables for the role's own file, in sections the shared file
        // has too (`pool`, `stats`) and in sections it lacks (`template_provider`).
        let env = vec![
            (
                "HASHPOOL__POOL__AUTHORITY_SECRET_KEY".to_string(),
                "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n".to_string(),
            ),
            (
                "HASHPOOL__STATS__AUTHORITY_SECRET_KEY".to_string(),
                "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n".to_string(),
            ),
            (
                "HASHPOOL__TEMPLATE_PROVIDER__ADDRESS".to_string(),
                "127.0.0.1:1".to_string(),
            ),
            (
                "HASHPOOL__POOL__LISTEN_ADDRESS".to_string(),
                "127.0.0.1:2".to_string(),
            ),
        ];
        let c: PoolGlobalConfig =
            crate::load_with_env(&repo_file("config/prod/shared/pool.toml"), env).unwrap();
        assert_eq!(c.pool.listen_address.port(), 2);
    }

    #[test]
    fn bad_authority_key_is_named() {
        let text = std::fs::read_to_string(repo_file("config/shared/pool.toml"))
            .unwrap()
            // Only the first occurrence, in [pool]: the mint's key uses the same local key, and
            // with two bad keys which one is reported would depend on map order.
            .replacen(
                "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
                "not-a-key",
                1,
            );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.toml");
        std::fs::write(&path, text).unwrap();
        let err = crate::load_with_env::<PoolGlobalConfig, _>(&path, vec![]).unwrap_err();
        assert!(
            matches!(&err, crate::ConfigError::BadValue { key, .. } if key == "pool.authority_public_key"),
            "{err:?}"
        );
    }
}
