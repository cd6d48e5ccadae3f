//! The jd-server's own file (`config/jd-server.config.toml`) and its run config with the shared
//! topology (`[jd_server]` in `config/shared/pool.toml`).

use std::net::SocketAddr;

use bitcoin::ScriptBuf;
use hashpool_config::PoolGlobalConfig;
use serde::Deserialize;
use stratum_apps::{
    config_helpers::CoinbaseRewardScript,
    key_utils::{Secp256k1PublicKey, Secp256k1SecretKey},
};

#[derive(Debug, Clone, Deserialize)]
pub struct JdServerConfig {
    pub jd_server: JdServerSettings,
    pub bitcoin_rpc: RpcSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JdServerSettings {
    /// Secret half of `[jd_server] authority_public_key` in the shared config.
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    /// The pool's payout script (the same descriptor as the pool's): every declared coinbase
    /// must pay the whole block reward to it, since the pool pays its miners in ehash.
    pub coinbase_reward_script: CoinbaseRewardScript,
    /// How long an allocated token may wait for its declaration, and how long a job token is
    /// good for at the pool (seconds).
    pub token_lifetime_secs: u64,
    /// Prometheus `/metrics` and `GET /api/v1/health`. Off when unset.
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    /// Require the pool's withdrawal payouts in declared coinbases (docs/job-declaration.md):
    /// asked of the pool at each token allocation.
    #[serde(default)]
    pub require_payouts: bool,
    /// Where the pool's payout offers are asked for. Default:
    /// `http://<pool.api_address>/api/v1/settlement/payouts/offer` from the shared config.
    #[serde(default)]
    pub payouts_url: Option<String>,
}

/// Bitcoin Core's JSON-RPC (the template provider's subset in local runs).
pub use hashpool_bitcoin_rpc::RpcSettings;

/// Everything the jd-server runs with.
#[derive(Debug, Clone)]
pub struct JdServerRunConfig {
    pub listen_address: SocketAddr,
    pub authority_public_key: Secp256k1PublicKey,
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    pub pool_script: ScriptBuf,
    pub token_lifetime_secs: u64,
    pub rpc: RpcSettings,
    pub metrics_address: Option<SocketAddr>,
    /// The pool's payout offers (with `require_payouts`).
    pub payouts_url: Option<String>,
}

impl JdServerRunConfig {
    pub fn new(global: &PoolGlobalConfig, own: JdServerConfig) -> Result<Self, String> {
        let topology = global.jd_server.as_ref().ok_or(
            "the shared config has no [jd_server] section (listen_address, authority_public_key)",
        )?;
        let ours: Secp256k1PublicKey = own.jd_server.authority_secret_key.into();
        if ours.into_bytes() != topology.authority_public_key.into_bytes() {
            return Err(
                "`jd_server.authority_secret_key` does not match `[jd_server] authority_public_key` \
                 in the shared config: the pool would refuse this jd-server's job tokens"
                    .into(),
            );
        }
        let pool_script = own.jd_server.coinbase_reward_script.script_pubkey();
        // Consensus caps scripts at 10,000 bytes; the bound also keeps the coinbase outputs
        // sent to every client within their message field.
        if pool_script.is_empty() || pool_script.len() > 10_000 {
            return Err(format!(
                "`jd_server.coinbase_reward_script` gives a {}-byte script; it must be 1 to 10,000 bytes",
                pool_script.len()
            ));
        }
        if own.jd_server.token_lifetime_secs == 0 {
            return Err("`jd_server.token_lifetime_secs` must be at least 1".into());
        }
        let payouts_url = if own.jd_server.require_payouts {
            let url = match (own.jd_server.payouts_url, global.pool.api_address) {
                (Some(url), _) => url,
                (None, Some(api)) if !api.ip().is_unspecified() => {
                    format!("http://{api}/api/v1/settlement/payouts/offer")
                }
                _ => {
                    return Err(
                        "`jd_server.require_payouts` needs `jd_server.payouts_url`, or \
                                `pool.api_address` (not 0.0.0.0) in the shared config"
                            .into(),
                    )
                }
            };
            reqwest::Url::parse(&url)
                .map_err(|e| format!("`jd_server.payouts_url` `{url}`: {e}"))?;
            Some(url)
        } else {
            None
        };
        Ok(Self {
            payouts_url,
            listen_address: topology.listen_address,
            authority_public_key: topology.authority_public_key,
            authority_secret_key: own.jd_server.authority_secret_key,
            cert_validity_secs: own.jd_server.cert_validity_secs,
            pool_script,
            token_lifetime_secs: own.jd_server.token_lifetime_secs,
            rpc: own.bitcoin_rpc,
            metrics_address: own.jd_server.metrics_address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn shipped_local_config_loads_and_keys_match() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        let own: JdServerConfig =
            hashpool_config::load_with_env(&repo("config/jd-server.config.toml"), vec![]).unwrap();
        let run = JdServerRunConfig::new(&global, own).unwrap();
        assert!(!run.pool_script.is_empty());
        assert_eq!(run.listen_address.port(), 34264);
    }
}
