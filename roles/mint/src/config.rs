//! The mint's configuration: its own file (`config/mint.config.toml`) plus the shared pool-side
//! topology (`config/shared/pool.toml`: addresses, the pool's and the mint's public keys, unit).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use hashpool_config::PoolGlobalConfig;
use serde::Deserialize;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};

use crate::info::{normalized_url, MintInfoSettings};

/// `config/mint.config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct MintConfig {
    pub mint: MintSettings,
    pub pool_link: PoolLinkSettings,
    /// `[settlement]`: redemption of final epochs' ehash (docs/settlement.md).
    #[serde(default)]
    pub settlement: SettlementSettings,
}

/// `[settlement]` in the mint's config.
#[derive(Debug, Clone, Deserialize)]
pub struct SettlementSettings {
    /// Redeem final epochs' ehash for sats (`hashpool-redeem`). Needs the pool's signed rates:
    /// `rates_url`, or the shared config's `pool.api_address`.
    #[serde(default)]
    pub redeem: bool,
    /// Where the pool's signed rates are read. Default:
    /// `http://<pool.api_address>/api/v1/settlement/rates`.
    #[serde(default)]
    pub rates_url: Option<String>,
    /// Withdraw sats on chain in the pool's coinbases (`hashpool-coinbase`). Needs `redeem`
    /// (sats come from redemptions) and `network`.
    #[serde(default)]
    pub withdraw: bool,
    /// The chain withdrawal addresses are of: `bitcoin`, `testnet4`, `signet` or `regtest`.
    #[serde(default)]
    pub network: Option<String>,
    /// The smallest withdrawal, sats (each is a coinbase output of its own).
    #[serde(default = "default_min_withdrawal_sats")]
    pub min_withdrawal_sats: u64,
    /// The largest withdrawal, sats (one output must fit in one block's reward).
    #[serde(default = "default_max_withdrawal_sats")]
    pub max_withdrawal_sats: u64,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            redeem: false,
            rates_url: None,
            withdraw: false,
            network: None,
            min_withdrawal_sats: default_min_withdrawal_sats(),
            max_withdrawal_sats: default_max_withdrawal_sats(),
        }
    }
}

fn default_min_withdrawal_sats() -> u64 {
    10_000
}

fn default_max_withdrawal_sats() -> u64 {
    100_000_000
}

#[derive(Debug, Clone, Deserialize)]
pub struct MintSettings {
    /// Secret half of the mint key the pool pins (`[mint] authority_public_key` in the shared
    /// config). The mint signs the pool's challenge with it.
    pub authority_secret_key: Secp256k1SecretKey,
    /// CDK mint database (SQLite, created if missing).
    pub database_path: PathBuf,
    /// A `postgres://` URL: the mint's database on PostgreSQL (cdk-postgres) instead of the
    /// SQLite file at `database_path`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The seed the mint's keysets derive from: created on first run (mode 0600), never
    /// overwritten. Back it up with the database.
    pub seed_path: PathBuf,
    /// The older spelling of `mint.info.name` (config files written before `[mint.info]`).
    #[serde(default)]
    pub name: Option<String>,
    /// The older spelling of `mint.info.description`.
    #[serde(default)]
    pub description: Option<String>,
    /// Quote requests from the pool handled at once.
    pub max_concurrent_quotes: usize,
    /// The URL wallets reach this mint by (what they are configured with, and what the tokens
    /// they make name). Quote lookups must be signed for it (or one of `other_urls` or
    /// `info.urls`), so a lookup sent to another mint is useless here. Default:
    /// `http://<mint.http_address>` from the shared config.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Further URLs wallets may use for this mint (e.g. the loopback URL of a wallet on this
    /// machine when `public_url` is the published HTTPS name).
    #[serde(default)]
    pub other_urls: Vec<String>,
    /// Prometheus `/metrics`, apart from the public Cashu API.
    #[serde(default = "default_monitoring_address")]
    pub monitoring_address: SocketAddr,
    /// Lookup nonces remembered at once (each for the 300 s a lookup's time is accepted);
    /// when full, lookups are refused (503) until older nonces expire.
    #[serde(default = "default_lookup_nonce_capacity")]
    pub lookup_nonce_capacity: usize,
    /// `[mint.info]`: what `/v1/info` shows wallets (NUT-06).
    #[serde(default)]
    pub info: MintInfoSettings,
    /// SQLite's soft heap limit in the mint process (MiB; 0: none): the page caches of CDK's
    /// database connections are recycled rather than grown past it.
    #[serde(default = "default_sqlite_memory_limit_mib")]
    pub sqlite_memory_limit_mib: u64,
}

/// The mint's monitoring port: next to the pool's (9108), the translator's (9109) and the
/// jd-client's (9110).
pub const DEFAULT_MONITORING_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9111);

/// Enough for ~330 lookups a second sustained over the 300 s window (a few MB at most).
pub const DEFAULT_LOOKUP_NONCE_CAPACITY: usize = 100_000;

/// Room for the page caches of eight busy connections (2 MB each).
pub const DEFAULT_SQLITE_MEMORY_LIMIT_MIB: u64 = 16;

fn default_sqlite_memory_limit_mib() -> u64 {
    DEFAULT_SQLITE_MEMORY_LIMIT_MIB
}

fn default_monitoring_address() -> SocketAddr {
    DEFAULT_MONITORING_ADDRESS
}

fn default_lookup_nonce_capacity() -> usize {
    DEFAULT_LOOKUP_NONCE_CAPACITY
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolLinkSettings {
    /// The pool's mint link as this mint dials it (`host:port`, a name resolved at each
    /// connect), when it is not the shared config's `pool.mint_link_address` (the pool on
    /// another host).
    #[serde(default)]
    pub address: Option<hashpool_config::HostPort>,
    /// Reconnect back-off: starts at `reconnect_initial_ms`, doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

/// Everything a running mint needs, checked.
#[derive(Debug, Clone)]
pub struct MintRunConfig {
    pub http_address: SocketAddr,
    /// The pool's mint link, dialed: a host name is resolved at each connect.
    pub pool_address: hashpool_config::HostPort,
    pub pool_authority_public_key: Secp256k1PublicKey,
    pub secret_key: Secp256k1SecretKey,
    pub unit: String,
    pub database_path: PathBuf,
    /// PostgreSQL instead of `database_path`, when set.
    pub database_url: Option<String>,
    pub seed_path: PathBuf,
    /// `[mint.info]`, checked (with `mint.name`/`mint.description` folded in).
    pub info: MintInfoSettings,
    pub max_concurrent_quotes: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// See [`MintSettings::public_url`]; `None`: `http://` and the bound HTTP address.
    pub public_url: Option<String>,
    pub other_urls: Vec<String>,
    pub monitoring_address: SocketAddr,
    pub lookup_nonce_capacity: usize,
    /// Bytes; 0: no limit.
    pub sqlite_memory_limit: u64,
    /// Redemption, when `[settlement] redeem` is on.
    pub redeem: Option<crate::redeem::RedeemConfig>,
    /// Withdrawals, when `[settlement] withdraw` is on.
    pub withdraw: Option<crate::withdraw::WithdrawConfig>,
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
        if own.mint.lookup_nonce_capacity == 0 {
            return Err("`mint.lookup_nonce_capacity` must be at least 1".into());
        }
        if let Some(url) = &own.mint.database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err("`mint.database_url` must be a postgres:// URL".into());
            }
        }
        if let Some(url) = &own.mint.public_url {
            normalized_url(url).map_err(|e| format!("`mint.public_url`: {e}"))?;
        }
        for url in &own.mint.other_urls {
            normalized_url(url).map_err(|e| format!("`mint.other_urls`: {e}"))?;
        }
        let info = own
            .mint
            .info
            .with_legacy(own.mint.name, own.mint.description)
            .and_then(MintInfoSettings::checked)
            .map_err(|e| e.to_string())?;
        if own.mint.public_url.is_none() && global.mint.http_address.ip().is_unspecified() {
            return Err(format!(
                "`mint.public_url` is required: the HTTP API listens on {}, which is no address \
                 wallets can use",
                global.mint.http_address
            ));
        }
        if own.mint.monitoring_address == global.mint.http_address {
            return Err(
                "`mint.monitoring_address` must differ from the Cashu API's `mint.http_address`"
                    .into(),
            );
        }
        let redeem = if own.settlement.redeem {
            let rates_url =
                match (&own.settlement.rates_url, global.pool.api_address) {
                    (Some(url), _) => url.clone(),
                    (None, Some(api)) if !api.ip().is_unspecified() => {
                        format!("http://{api}/api/v1/settlement/rates")
                    }
                    _ => return Err(
                        "`settlement.redeem` needs `settlement.rates_url`, or `pool.api_address` \
                         (not 0.0.0.0) in the shared config"
                            .into(),
                    ),
                };
            reqwest::Url::parse(&rates_url)
                .map_err(|e| format!("`settlement.rates_url` `{rates_url}`: {e}"))?;
            Some(crate::redeem::RedeemConfig {
                rates_url,
                pool_key: global.pool.authority_public_key.into_bytes(),
            })
        } else {
            None
        };
        let withdraw = if own.settlement.withdraw {
            if redeem.is_none() {
                return Err(
                    "`settlement.withdraw` needs `settlement.redeem`: the sats withdrawn \
                            come from redemptions"
                        .into(),
                );
            }
            let network = own
                .settlement
                .network
                .as_deref()
                .ok_or("`settlement.withdraw` needs `settlement.network`")?;
            let network = bitcoin::Network::from_core_arg(network)
                .or_else(|_| network.parse())
                .map_err(|_| format!("`settlement.network` `{network}`: not a bitcoin network"))?;
            let (min_sats, max_sats) = (
                own.settlement.min_withdrawal_sats,
                own.settlement.max_withdrawal_sats,
            );
            // Below this an output is dust whatever its script (a P2PKH output's limit).
            if min_sats < 546 || max_sats < min_sats {
                return Err(
                    "`settlement.min_withdrawal_sats` must be at least 546 and at most \
                     `max_withdrawal_sats`"
                        .into(),
                );
            }
            Some(crate::withdraw::WithdrawConfig {
                network,
                min_sats,
                max_sats,
            })
        } else {
            None
        };
        Ok(Self {
            redeem,
            withdraw,
            http_address: global.mint.http_address,
            pool_address: own
                .pool_link
                .address
                .clone()
                .unwrap_or_else(|| global.pool.mint_link_address.into()),
            pool_authority_public_key: global.pool.authority_public_key,
            secret_key: own.mint.authority_secret_key,
            unit: global.ehash.unit.clone(),
            database_path: own.mint.database_path,
            database_url: own.mint.database_url,
            seed_path: own.mint.seed_path,
            info,
            max_concurrent_quotes: own.mint.max_concurrent_quotes,
            reconnect_initial: Duration::from_millis(own.pool_link.reconnect_initial_ms),
            reconnect_max: Duration::from_millis(own.pool_link.reconnect_max_ms),
            public_url: own.mint.public_url,
            other_urls: own.mint.other_urls,
            monitoring_address: own.mint.monitoring_address,
            lookup_nonce_capacity: own.mint.lookup_nonce_capacity,
            sqlite_memory_limit: own.mint.sqlite_memory_limit_mib.saturating_mul(1 << 20),
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
        assert_eq!(run.monitoring_address, DEFAULT_MONITORING_ADDRESS);
        assert_ne!(run.monitoring_address.port(), run.http_address.port());
        // Unset: `http://` and the bound address, so an address override moves the URL too.
        assert_eq!(run.public_url, None);
    }

    #[test]
    fn the_pool_is_dialed_by_name_when_the_pool_link_names_it() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        let own: MintConfig = hashpool_config::load_with_env(
            &repo("config/mint.config.toml"),
            vec![(
                "HASHPOOL__POOL_LINK__ADDRESS".to_string(),
                "pool.example.org:34260".to_string(),
            )],
        )
        .unwrap();
        let run = MintRunConfig::new(&global, own).unwrap();
        assert_eq!(run.pool_address.to_string(), "pool.example.org:34260");
        assert!(run.pool_address.is_name());
    }

    #[test]
    fn a_wildcard_api_address_needs_a_public_url() {
        let (mut global, mut own) = shipped();
        global.mint.http_address = "0.0.0.0:3338".parse().unwrap();
        own.mint.public_url = None;
        let err = MintRunConfig::new(&global, own.clone()).unwrap_err();
        assert!(err.contains("`mint.public_url` is required"), "{err}");
        own.mint.public_url = Some("https://Mint.Example.org/".into());
        let run = MintRunConfig::new(&global, own.clone()).unwrap();
        assert_eq!(
            normalized_url(run.public_url.as_deref().unwrap()).unwrap(),
            "https://mint.example.org"
        );
        own.mint.other_urls = vec!["not a url".into()];
        assert!(MintRunConfig::new(&global, own).is_err());
    }

    #[test]
    fn shipped_configs_fill_mint_info() {
        let (global, own) = shipped();
        let run = MintRunConfig::new(&global, own).unwrap();
        assert_eq!(run.info.name.as_deref(), Some("Hashpool mint (local)"));
        assert!(run.info.urls.is_empty(), "default: the public URL");

        // Production: the public URL is the placeholder the operator must replace (the mint
        // warns), and the loopback URL stays usable for lookups from this machine.
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/prod/shared/pool.toml"), vec![]).unwrap();
        let env = vec![(
            "HASHPOOL__MINT__AUTHORITY_SECRET_KEY".to_string(),
            "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n".to_string(),
        )];
        let own: MintConfig =
            hashpool_config::load_with_env(&repo("config/prod/mint.config.toml"), env).unwrap();
        let run = MintRunConfig::new(&global, own).unwrap();
        let public_url = run.public_url.as_deref().unwrap();
        assert!(crate::info::is_placeholder_url(public_url), "{public_url}");
        assert_eq!(run.other_urls, vec!["http://127.0.0.1:3338"]);
        assert_eq!(run.info.name.as_deref(), Some("Hashpool testnet4 mint"));

        // The wallets a deployment runs reach the mint by its public URL: the one their tokens
        // name and their lookups are signed for.
        for file in [
            "config/prod/shared/proxy.toml",
            "config/prod/jd-client.config.toml",
        ] {
            let text = std::fs::read_to_string(repo(file)).unwrap();
            let file_value: toml::Value = toml::from_str(&text).unwrap();
            assert_eq!(
                file_value["wallet"]["mint_url"].as_str(),
                Some(public_url),
                "{file}"
            );
        }
    }

    fn with_file(text: &str) -> Result<MintRunConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mint.config.toml");
        std::fs::write(&path, text).unwrap();
        let own: MintConfig =
            hashpool_config::load_with_env(&path, vec![]).map_err(|e| e.to_string())?;
        MintRunConfig::new(&shipped().0, own)
    }

    fn local_file() -> String {
        std::fs::read_to_string(repo("config/mint.config.toml")).unwrap()
    }

    #[test]
    fn mint_info_from_the_file_is_checked_with_clear_errors() {
        let text = local_file().replace(
            "# tos_url = \"https://...\"",
            "tos_url = \"https://pool.example.org/terms\"\n\
             icon_url = \"https://pool.example.org/icon.png\"\n\
             motd = \"maintenance at 12:00 UTC\"\n\
             urls = [\"https://Mint.Example.org/\", \"http://127.0.0.1:3338\"]\n\
             contact = [{ method = \"email\", info = \"ops@example.org\" }]\n\
             pubkey = \"02a9acc1e48c25eeeb9289b5031cc57da9fe72f3fe2861d264bdc074209b107ba2\"",
        );
        let run = with_file(&text).unwrap();
        assert_eq!(
            run.info.urls,
            vec!["https://mint.example.org", "http://127.0.0.1:3338"]
        );
        assert_eq!(run.info.motd.as_deref(), Some("maintenance at 12:00 UTC"));
        assert_eq!(run.info.contact.len(), 1);

        for (bad, expected) in [
            (
                "tos_url = \"terms.html\"",
                "`mint.info.tos_url`: `terms.html` is not an http(s) URL",
            ),
            ("icon_url = \"javascript:alert(1)\"", "`mint.info.icon_url`"),
            ("urls = [\"mint\"]", "`mint.info.urls`: `mint`"),
            (
                "pubkey = \"npub1xyz\"",
                "`mint.info.pubkey`: `npub1xyz` is not a public key",
            ),
            (
                "contact = [{ method = \"\", info = \"x\" }]",
                "`mint.info.contact` entry 0",
            ),
            ("motd = \"\"", "`mint.info.motd` is empty"),
        ] {
            let text = local_file().replace("# tos_url = \"https://...\"", bad);
            let err = with_file(&text).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
        // A misspelled key is named by the loader.
        let text = local_file().replace("# tos_url = \"https://...\"", "tos = \"x\"");
        let err = with_file(&text).unwrap_err();
        assert!(err.contains("mint.info.tos"), "{err}");
    }

    #[test]
    fn the_older_name_keys_still_load_but_not_beside_the_new_ones() {
        let old = local_file()
            .replace(
                "\n[mint.info]\nname = \"Hashpool mint (local)\"",
                "\n[mint.info]",
            )
            .replace(
                "max_concurrent_quotes = 4",
                "max_concurrent_quotes = 4\nname = \"old name\"",
            );
        assert_eq!(
            with_file(&old).unwrap().info.name.as_deref(),
            Some("old name")
        );
        let both = local_file().replace(
            "max_concurrent_quotes = 4",
            "max_concurrent_quotes = 4\nname = \"old name\"",
        );
        let err = with_file(&both).unwrap_err();
        assert!(
            err.contains("`mint.name` and `mint.info.name` are both set"),
            "{err}"
        );
    }

    #[test]
    fn mint_urls_must_be_http() {
        let (global, mut own) = shipped();
        own.mint.public_url = Some("ftp://mint.example.org".into());
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(
            err.contains("`mint.public_url`") && err.contains("ftp"),
            "{err}"
        );
    }

    #[test]
    fn metrics_never_share_the_public_port() {
        let (global, mut own) = shipped();
        own.mint.monitoring_address = global.mint.http_address;
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("monitoring_address"), "{err}");
    }

    #[test]
    fn a_database_url_is_postgresql_or_refused_and_withdrawals_need_their_keys() {
        let (global, mut own) = shipped();
        own.mint.database_url = Some("mysql://db/mint".into());
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("mint.database_url"), "{err}");
        let (global, mut own) = shipped();
        own.mint.database_url = Some("postgres://hashpool@db/mint".into());
        assert!(MintRunConfig::new(&global, own)
            .unwrap()
            .database_url
            .is_some());
        // Withdrawals need a chain, redemption, and a sane minimum.
        let (global, mut own) = shipped();
        own.settlement.network = None;
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("settlement.network"), "{err}");
        let (global, mut own) = shipped();
        own.settlement.network = Some("moon".into());
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("not a bitcoin network"), "{err}");
        let (global, mut own) = shipped();
        own.settlement.min_withdrawal_sats = 100;
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("min_withdrawal_sats"), "{err}");
        let (global, mut own) = shipped();
        own.settlement.redeem = false;
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("needs `settlement.redeem`"), "{err}");
    }

    #[test]
    fn a_key_the_pool_does_not_expect_is_refused_at_start() {
        let (global, mut own) = shipped();
        own.mint.authority_secret_key = bitcoin::base58::encode_check(&[7; 32]).parse().unwrap();
        let err = MintRunConfig::new(&global, own).unwrap_err();
        assert!(err.contains("would refuse this mint"), "{err}");
    }
}
