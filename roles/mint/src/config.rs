//! The mint's configuration: its own file (`config/mint.config.toml`) plus the shared pool-side
//! topology (`config/shared/pool.toml`: addresses, the pool's and the mint's public keys, unit).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use hashpool_config::PoolGlobalConfig;
use serde::Deserialize;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

/// `config/mint.config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct MintConfig {
    pub mint: MintSettings,
    pub pool_link: PoolLinkSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MintSettings {
    /// Secret half of the mint key the pool pins (`[mint] authority_public_key` in the shared
    /// config). The mint signs the pool's challenge with it.
    pub authority_secret_key: Secp256k1SecretKey,
    /// CDK mint database (SQLite, created if missing).
    pub database_path: PathBuf,
    /// The seed the mint's keysets derive from: created on first run (mode 0600), never
    /// overwritten. Back it up with the database.
    pub seed_path: PathBuf,
    pub name: String,
    pub description: String,
    /// Quote requests from the pool handled at once.
    pub max_concurrent_quotes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolLinkSettings {
    /// Reconnect back-off: starts at `reconnect_initial_ms`, doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

/// Everything a running mint needs, checked.
#[derive(Debug, Clone)]
pub struct MintRunConfig {
    pub http_address: SocketAddr,
    pub pool_address: SocketAddr,
    pub pool_authority_public_key: Secp256k1PublicKey,
    pub secret_key: Secp256k1SecretKey,
    pub unit: String,
    pub database_path: PathBuf,
    pub seed_path: PathBuf,
    pub name: String,
    pub description: String,
    pub max_concurrent_quotes: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

impl MintRunConfig {
    pub fn new(global: &PoolGlobalConfig, own: MintConfig) -> Result<Self, String> {
        let ours: Secp256k1PublicKey = own.mint.authority_secret_key.into();
        if ours.into_bytes() != global.mint.authority_public_key.into_bytes() {
            return Err(
                "`mint.authority_secret_key` does not match `[mint] authority_public_key` in the \
                 shared config: the pool would refuse this mint"
                    .into(),
            );
        }
        if global.ehash.unit.is_empty() {
            return Err("`ehash.unit` is empty".into());
        }
        if own.mint.max_concurrent_quotes == 0 {
            return Err("`mint.max_concurrent_quotes` must be at least 1".into());
        }
        if own.pool_link.reconnect_initial_ms == 0
            || own.pool_link.reconnect_max_ms < own.pool_link.reconnect_initial_ms
        {
            return Err(
                "`pool_link.reconnect_initial_ms` must be > 0 and <= `reconnect_max_ms`".into(),
            );
        }
        Ok(Self {
            http_address: global.mint.http_address,
            pool_address: global.pool.mint_link_address,
            pool_authority_public_key: global.pool.authority_public_key,
            secret_key: own.mint.authority_secret_key,
            unit: global.ehash.unit.clone(),
            database_path: own.mint.database_path,
            seed_path: own.mint.seed_path,
            name: own.mint.name,
            description: own.mint.description,
            max_concurrent_quotes: own.mint.max_concurrent_quotes,
            reconnect_initial: Duration::from_millis(own.pool_link.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(own.pool_link.reconnect_max_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    fn shipped() -> (PoolGlobalConfig, MintConfig) {
        (
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap(),
            hashpool_config::load_with_env(&repo("config/mint.config.toml"), vec![]).unwrap(),
        )
    }

    #[test]
    fn shipped_local_config_loads_and_matches_the_pinned_key() {
        let (global, own) = shipped();
        let run = MintRunConfig::new(&global, own).unwrap();
        assert_eq!(run.unit, "hash");
        assert_eq!(run.pool_address, global.pool.mint_link_address);
    }

    #[test]
    fn a_key_the_pool_does_not_expect_is_refused_at_start() {
        let (global, mut own) = shipped();
        own.mint.authority_secret_key = bitcoin::base58::encode_check(&[7; 32]).parse().unwrap();
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("would refuse this mint"), "{err}");
    }
}
