//! The jd-client's file (`config/jd-client.config.toml`): where its miners connect, its
//! template provider, the pool and its jd-server, and its wallet.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use hashpool_config::HostPort;
use serde::Deserialize;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

#[derive(Debug, Clone, Deserialize)]
pub struct JdClientConfig {
    pub jd_client: JdClientSettings,
    pub template_provider: Endpoint,
    pub pool: PoolEndpoint,
    pub jd_server: Endpoint,
    pub wallet: WalletSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JdClientSettings {
    /// Where miners (SV2, or a translator for SV1 miners) connect.
    pub listen_address: SocketAddr,
    /// The jd-client's own Noise key for its miners (they pin its public half).
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    /// Prometheus `/metrics` and `/api/v1/status` (none: not served).
    #[serde(default)]
    pub monitoring_address: Option<SocketAddr>,
    /// Shown in every coinbase scriptSig as `Sv2/<pool_tag>/<miner_tag>/`.
    pub miner_tag: String,
    /// The share rate each miner's difficulty aims at.
    #[serde(default = "default_shares_per_minute")]
    pub shares_per_minute: f32,
    /// The largest payout script the jd-server may ask for: the template provider reserves
    /// block space for it.
    #[serde(default = "default_max_pool_script_bytes")]
    pub max_pool_script_bytes: usize,
    /// Withdrawal outputs of the pool's (docs/settlement.md) a declared coinbase may carry:
    /// the template provider reserves room for them; a token asking for more is not used.
    #[serde(default = "default_max_payout_outputs")]
    pub max_payout_outputs: usize,
    /// How often each miner's difficulty is reconsidered (vardiff needs more than 15 s).
    #[serde(default = "default_vardiff_interval_secs")]
    pub vardiff_interval_secs: u64,
}

fn default_vardiff_interval_secs() -> u64 {
    20
}

fn default_shares_per_minute() -> f32 {
    10.0
}

fn default_max_pool_script_bytes() -> usize {
    64
}

fn default_max_payout_outputs() -> usize {
    100
}

/// A Noise endpoint; its key pinned when given.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    /// `host:port`: a host name (resolved at each connect) or an IP address.
    pub address: HostPort,
    #[serde(default)]
    pub authority_public_key: Option<Secp256k1PublicKey>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolEndpoint {
    /// `host:port`: a host name (resolved at each connect) or an IP address.
    pub address: HostPort,
    pub authority_public_key: Secp256k1PublicKey,
    /// The channel's identity on the pool.
    pub user_identity: String,
    /// Hashrate announced for the channel (H/s); the pool's vardiff corrects it.
    pub nominal_hashrate: f32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSettings {
    pub mint_url: String,
    #[serde(default = "default_unit")]
    pub unit: String,
    pub database_path: PathBuf,
    /// Created on first run (0600), never overwritten.
    pub mnemonic_path: PathBuf,
    #[serde(default = "default_recovery_secs")]
    pub recovery_interval_secs: u64,
    /// The wallet's HTTP API (balance, tokens, faucet) for the miner's page; none: not served.
    #[serde(default)]
    pub api_address: Option<SocketAddr>,
    /// Faucet: ehash per token, one token per client address per this many seconds.
    #[serde(default = "default_faucet_amount")]
    pub faucet_amount: u64,
    #[serde(default = "default_faucet_interval_secs")]
    pub faucet_interval_secs: u64,
    /// Bearer token of the wallet API's spending routes (created 0600 on first run); by default
    /// `wallet-api-token` beside the wallet's database. web-proxy reads the same file.
    #[serde(default)]
    pub api_token_path: Option<PathBuf>,
}

fn default_faucet_amount() -> u64 {
    10
}

fn default_faucet_interval_secs() -> u64 {
    60
}

fn default_unit() -> String {
    "hash".into()
}

fn default_recovery_secs() -> u64 {
    60
}

/// Everything the jd-client runs with (the wallet is opened by the caller: its key locks the
/// pool channel, its minter takes the quotes).
#[derive(Debug, Clone)]
pub struct JdClientRunConfig {
    pub listen_address: SocketAddr,
    pub authority_public_key: Secp256k1PublicKey,
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    pub monitoring_address: Option<SocketAddr>,
    pub miner_tag: String,
    pub shares_per_minute: f32,
    pub max_pool_script_bytes: usize,
    pub max_payout_outputs: usize,
    pub vardiff_interval: Duration,
    pub template_provider: Endpoint,
    pub pool: PoolEndpoint,
    pub jd_server: Endpoint,
    pub locking_key: Option<ext_mint_quote::LockingKey>,
    /// First retry after losing an upstream; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl JdClientRunConfig {
    pub fn new(own: &JdClientConfig) -> Result<Self, String> {
        let s = &own.jd_client;
        if !(s.shares_per_minute.is_finite() && s.shares_per_minute > 0.0) {
            return Err("`jd_client.shares_per_minute` must be above 0".into());
        }
        if !(own.pool.nominal_hashrate.is_finite() && own.pool.nominal_hashrate > 0.0) {
            return Err("`pool.nominal_hashrate` must be above 0".into());
        }
        if s.miner_tag.len() > 64 {
            return Err("`jd_client.miner_tag` must be at most 64 bytes".into());
        }
        if s.max_pool_script_bytes == 0 || s.max_pool_script_bytes > 10_000 {
            return Err("`jd_client.max_pool_script_bytes` must be 1 to 10,000".into());
        }
        if s.max_payout_outputs > 1_000 {
            return Err("`jd_client.max_payout_outputs` must be at most 1,000".into());
        }
        Ok(Self {
            listen_address: s.listen_address,
            authority_public_key: s.authority_secret_key.into(),
            authority_secret_key: s.authority_secret_key,
            cert_validity_secs: s.cert_validity_secs,
            monitoring_address: s.monitoring_address,
            miner_tag: s.miner_tag.clone(),
            shares_per_minute: s.shares_per_minute,
            max_pool_script_bytes: s.max_pool_script_bytes,
            max_payout_outputs: s.max_payout_outputs,
            vardiff_interval: Duration::from_secs(s.vardiff_interval_secs.max(1)),
            template_provider: own.template_provider.clone(),
            pool: own.pool.clone(),
            jd_server: own.jd_server.clone(),
            locking_key: None,
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn shipped_configs_load_and_point_at_the_local_and_testnet4_roles() {
        let local: JdClientConfig =
            hashpool_config::load_with_env(&repo("config/jd-client.config.toml"), vec![]).unwrap();
        let run = JdClientRunConfig::new(&local).unwrap();
        assert_eq!(run.pool.address.port(), 34254);
        assert_eq!(run.jd_server.address.port(), 34264);
        assert_eq!(run.monitoring_address.map(|a| a.port()), Some(9110));
        let prod: JdClientConfig = hashpool_config::load_with_env(
            &repo("config/prod/jd-client.config.toml"),
            vec![(
                "HASHPOOL__JD_CLIENT__AUTHORITY_SECRET_KEY".to_string(),
                "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n".to_string(),
            )],
        )
        .unwrap();
        assert!(JdClientRunConfig::new(&prod).is_ok());
    }

    #[test]
    fn upstreams_may_be_host_names() {
        let env = [
            ("HASHPOOL__POOL__ADDRESS", "pool.example.org:34254"),
            ("HASHPOOL__JD_SERVER__ADDRESS", "localhost:34264"),
            ("HASHPOOL__TEMPLATE_PROVIDER__ADDRESS", "[::1]:8442"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c: JdClientConfig =
            hashpool_config::load_with_env(&repo("config/jd-client.config.toml"), env).unwrap();
        let run = JdClientRunConfig::new(&c).unwrap();
        assert_eq!(run.pool.address.to_string(), "pool.example.org:34254");
        assert_eq!(run.jd_server.address.host(), "localhost");
        assert_eq!(run.template_provider.address.to_string(), "[::1]:8442");
    }

    #[test]
    fn bad_numbers_are_refused_with_the_key_named() {
        let mut c: JdClientConfig =
            hashpool_config::load_with_env(&repo("config/jd-client.config.toml"), vec![]).unwrap();
        c.jd_client.shares_per_minute = 0.0;
        assert!(JdClientRunConfig::new(&c)
            .unwrap_err()
            .contains("shares_per_minute"));
        c.jd_client.shares_per_minute = 10.0;
        c.pool.nominal_hashrate = f32::NAN;
        assert!(JdClientRunConfig::new(&c)
            .unwrap_err()
            .contains("nominal_hashrate"));
    }
}
