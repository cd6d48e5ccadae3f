//! The translator's configuration: its own file (`config/translator.config.toml`) plus the
//! miner-side topology (`config/shared/proxy.toml`).

use std::path::PathBuf;

use hashpool_config::ProxyGlobalConfig;
use serde::Deserialize;

/// `config/translator.config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct TranslatorConfig {
    pub translator: TranslatorSettings,
    pub wallet: WalletSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TranslatorSettings {
    /// User identity of the translator's channel on the pool.
    pub user_identity: String,
    /// Hashrate announced for the channel (H/s); the pool's vardiff corrects it.
    pub nominal_hashrate: f32,
    /// Pools tried, in order, when the shared config's upstream does not answer.
    #[serde(default)]
    pub fallback_upstreams: Vec<FallbackUpstream>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FallbackUpstream {
    pub address: std::net::SocketAddr,
    pub authority_public_key: stratum_apps::key_utils::Secp256k1PublicKey,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WalletSettings {
    /// Earn ehash: without a wallet the translator mines without a locking key (the pool
    /// then needs a default key, or refuses the channel).
    pub enabled: bool,
    pub unit: String,
    pub database_path: PathBuf,
    /// The mnemonic file, created (mode 0600) on first run if missing.
    pub mnemonic_path: PathBuf,
    /// How often missed quotes are looked up at the mint.
    pub recovery_interval_secs: u64,
    /// ehash in each faucet token.
    pub faucet_amount: u64,
    /// One faucet token per client address per this many seconds.
    pub faucet_interval_secs: u64,
}

impl TranslatorConfig {
    /// The run config (without the wallet, which `cli` opens) from both files.
    pub fn run_config(
        &self,
        global: &ProxyGlobalConfig,
    ) -> Result<crate::TranslatorRunConfig, String> {
        if self.translator.user_identity.is_empty() {
            return Err("`translator.user_identity` is empty".into());
        }
        if !(self.translator.nominal_hashrate.is_finite() && self.translator.nominal_hashrate > 0.0)
        {
            return Err("`translator.nominal_hashrate` must be a positive number".into());
        }
        Ok(crate::TranslatorRunConfig {
            downstream_address: global.translator.downstream_address,
            upstreams: std::iter::once(crate::UpstreamEndpoint {
                address: global.translator.upstream_address,
                authority_public_key: global.translator.upstream_authority_public_key,
            })
            .chain(
                self.translator
                    .fallback_upstreams
                    .iter()
                    .map(|f| crate::UpstreamEndpoint {
                        address: f.address,
                        authority_public_key: f.authority_public_key,
                    }),
            )
            .collect(),
            user_identity: self.translator.user_identity.clone(),
            nominal_hashrate: self.translator.nominal_hashrate,
            locking_key: None,
            minter: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn shipped_local_config_loads() {
        let global: ProxyGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/proxy.toml"), vec![]).unwrap();
        let own: TranslatorConfig =
            hashpool_config::load_with_env(&repo("config/translator.config.toml"), vec![]).unwrap();
        let run = own.run_config(&global).unwrap();
        assert_eq!(run.upstreams[0].address, global.translator.upstream_address);
        assert!(own.wallet.enabled);
    }
}
