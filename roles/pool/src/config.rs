//! The pool's configuration: its own file (`config/pool.config.toml`) plus the shared topology
//! (`config/shared/pool.toml`).

use std::{net::SocketAddr, time::Duration};

use ext_mint_quote::LockingKey;
use hashpool_config::PoolGlobalConfig;
use hashpool_ehash::UnitWork;
use serde::Deserialize;
use stratum_apps::{
    config_helpers::CoinbaseRewardScript,
    key_utils::{Secp256k1PublicKey, Secp256k1SecretKey},
};

/// `config/pool.config.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolConfig {
    pub pool: PoolSettings,
    pub template_provider: TemplateProviderSettings,
    pub quotes: QuoteSettings,
    /// Reporting to stats-pool: on when the section is there.
    #[serde(default)]
    pub stats_reporter: Option<StatsReporterSettings>,
    /// What one miner may cost the pool (every key has a default).
    #[serde(default)]
    pub limits: MinerLimits,
    /// Following found blocks in the node's chain (maturity, reorgs): on when the section is
    /// there (docs/settlement.md).
    #[serde(default)]
    pub settlement: Option<SettlementSettings>,
}

/// `[settlement]`: where the pool follows its found blocks.
#[derive(Debug, Clone, Deserialize)]
pub struct SettlementSettings {
    /// The node's JSON-RPC (Bitcoin Core; the template provider's subset locally): `url`, and
    /// `cookie_file` or `user` and `password`.
    pub node_rpc: hashpool_bitcoin_rpc::RpcSettings,
    /// How often the found blocks still in play are checked against the node's chain.
    #[serde(default = "default_follow_interval_ms")]
    pub follow_interval_ms: u64,
    /// The pool's fee: parts per million of each block's reward.
    #[serde(default = "default_fee_ppm")]
    pub fee_ppm: u32,
    /// `k` in the window `N = k x D` of work each block's reward pays.
    #[serde(default = "default_window_multiplier")]
    pub window_multiplier: u32,
    /// An epoch's planned length: parts per million of the network's work per block.
    #[serde(default = "default_epoch_work_ppm")]
    pub epoch_work_ppm: u32,
    /// No epoch is shorter than this many difficulty-1 shares of work (regtest's blocks are a
    /// couple of hashes; a real chain's are far above any sensible floor).
    #[serde(default)]
    pub min_epoch_difficulty: f64,
    /// Pay the mint's withdrawals in the pool's coinbases (docs/settlement.md).
    #[serde(default)]
    pub pay_withdrawals: bool,
    /// Where the mint's signed withdrawal list is read. Default:
    /// `http://<mint.http_address>/v1/hashpool/withdrawals` from the shared config.
    #[serde(default)]
    pub withdrawals_url: Option<String>,
    /// Withdrawal outputs one coinbase carries at most.
    #[serde(default = "default_max_payouts_per_block")]
    pub max_payouts_per_block: u32,
}

fn default_max_payouts_per_block() -> u32 {
    100
}

fn default_follow_interval_ms() -> u64 {
    10_000
}

fn default_fee_ppm() -> u32 {
    20_000
}

fn default_window_multiplier() -> u32 {
    8
}

fn default_epoch_work_ppm() -> u32 {
    500_000
}

impl SettlementSettings {
    /// Refuses values that would make settlement meaningless or unbounded.
    pub fn check(&self) -> Result<(), String> {
        if self.follow_interval_ms == 0 {
            return Err("`settlement.follow_interval_ms` must be at least 1".into());
        }
        if self.fee_ppm > 1_000_000 {
            return Err(format!(
                "`settlement.fee_ppm` is at most 1000000 (the whole reward), got {}",
                self.fee_ppm
            ));
        }
        if self.window_multiplier == 0 {
            return Err("`settlement.window_multiplier` must be at least 1".into());
        }
        if self.epoch_work_ppm == 0 {
            return Err("`settlement.epoch_work_ppm` must be at least 1".into());
        }
        if self.pay_withdrawals && !(1..=1_000).contains(&self.max_payouts_per_block) {
            return Err(format!(
                "`settlement.max_payouts_per_block` must be from 1 to 1000, got {}",
                self.max_payouts_per_block
            ));
        }
        let d = self.min_epoch_difficulty;
        if !(0.0..=1e18).contains(&d) {
            return Err(format!(
                "`settlement.min_epoch_difficulty` must be a number from 0 to 1e18, got {d}"
            ));
        }
        Ok(())
    }

    /// The shortest epoch, in hashes.
    pub fn min_epoch_work(&self) -> hashpool_ehash::Work {
        let hashes = self.min_epoch_difficulty * hashpool_ehash::DIFFICULTY_1_WORK.hashes() as f64;
        hashpool_ehash::Work::from_hashes(hashes as u128)
    }
}

/// Bounds on what a miner controls: the difficulty it mines at, how many connections it holds
/// and how long it may keep one without doing its part. A hostile miner meets one of these
/// before it costs honest miners anything; each refusal is counted by reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MinerLimits {
    /// No channel's target is easier than this difficulty, whatever hashrate or maximum target
    /// the miner asks for: a share always costs at least this many difficulty-1 shares of work.
    /// (A network easier than this, as on regtest, sets targets at the network target instead.)
    pub min_share_difficulty: f64,
    /// Miner connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Miner connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// From TCP accept to SetupConnection (the Noise handshake included).
    pub setup_timeout_secs: u64,
    /// From accept to the first channel opened. (A proxy that opens channels only for its own
    /// miners, as the translator in `per_miner` mode, reconnects while it has none.)
    pub first_channel_timeout_secs: u64,
    /// A connection that sends nothing for this long is closed. Vardiff aims every channel at
    /// `shares_per_minute`, so only a miner too slow for the minimum difficulty meets it.
    pub idle_timeout_secs: u64,
    /// A write to a miner that cannot complete in this long (a peer that stopped reading)
    /// closes the connection.
    pub write_timeout_secs: u64,
}

impl Default for MinerLimits {
    fn default() -> Self {
        Self {
            min_share_difficulty: 1.0,
            max_connections: 20_000,
            max_connections_per_address: 256,
            setup_timeout_secs: 10,
            first_channel_timeout_secs: 60,
            idle_timeout_secs: 900,
            write_timeout_secs: 10,
        }
    }
}

impl MinerLimits {
    /// Refuses values that would switch a limit off by accident.
    pub fn check(&self) -> Result<(), String> {
        let d = self.min_share_difficulty;
        if !d.is_finite() || d <= 0.0 {
            return Err(format!(
                "`limits.min_share_difficulty` must be a positive number, got {d}"
            ));
        }
        for (key, value) in [
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
            ),
            ("setup_timeout_secs", self.setup_timeout_secs),
            (
                "first_channel_timeout_secs",
                self.first_channel_timeout_secs,
            ),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("write_timeout_secs", self.write_timeout_secs),
        ] {
            if value == 0 {
                return Err(format!("`limits.{key}` must be at least 1"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuoteSettings {
    /// Accrued work becomes one quote request per locking key this often.
    pub batch_interval_ms: u64,
    /// Unanswered requests are sent again this often (same request id).
    pub retry_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PoolSettings {
    /// Secret half of the authority key whose public half is in the shared config.
    pub authority_secret_key: Secp256k1SecretKey,
    /// Validity of the Noise certificate handed to each miner.
    pub cert_validity_secs: u64,
    /// Where block rewards go: an output descriptor (`addr(...)`, `raw(...)`, `tr(...)`...).
    pub coinbase_reward_script: CoinbaseRewardScript,
    /// Tag in every coinbase scriptSig (`Sv2/<tag>/`).
    pub pool_signature: String,
    /// Distinguishes this instance's extranonce space from other pool instances'.
    pub server_id: u16,
    /// Vardiff aims every channel at this share rate.
    pub shares_per_minute: f32,
    /// Accepted shares acknowledged together in one SubmitShares.Success.
    pub share_batch_size: usize,
    /// A batch not yet full is acknowledged after at most this long, so a slow channel's
    /// miners (and the SV1 miners behind a translator, who wait for the verdict) are not kept
    /// waiting for shares that are yet to come.
    #[serde(default = "default_share_ack_interval_ms")]
    pub share_ack_interval_ms: u64,
    /// How often each channel's share rate is checked for a difficulty change.
    pub vardiff_interval_secs: u64,
    /// Channels one connection may open.
    pub max_channels_per_connection: usize,
    /// Offer the mint-quote extension (ehash) to miners.
    pub mint_quote_extension: bool,
    /// SQLite database of accepted shares and the work they accrued (created if missing).
    /// Not used when `ledger_database_url` is set.
    pub ledger_path: std::path::PathBuf,
    /// The ledger on PostgreSQL (`postgres://user:password@host:5432/db`) instead of the
    /// SQLite file: several pool instances (each its own `server_id`) share one database.
    #[serde(default)]
    pub ledger_database_url: Option<String>,
    /// Share records are kept this long for audit, then pruned (accruals, batches with their
    /// share commitments, and found blocks are kept). At least 1.
    #[serde(default = "default_ledger_retention_hours")]
    pub ledger_retention_hours: u64,
    /// The monitoring API and its Prometheus series show at most this many connections one by
    /// one (those with the most nominal hashrate); its totals count every connection. Each
    /// shown channel costs a dozen Prometheus series and about 15 KiB of pool memory.
    #[serde(default = "default_monitoring_max_clients")]
    pub monitoring_max_clients: usize,
    /// Prometheus `/metrics` of the pool's own counters (limits met, refused batches, open
    /// connections), beside the channel metrics of the monitoring address. Off when unset.
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    /// Key that channels without one of their own accrue ehash to (66 hex characters). Without
    /// it, a channel that names no key (locking-key TLV or a key as user identity) is refused.
    #[serde(default, deserialize_with = "optional_locking_key")]
    pub default_locking_key: Option<LockingKey>,
}

fn default_share_ack_interval_ms() -> u64 {
    1000
}

fn default_monitoring_max_clients() -> usize {
    1000
}

fn default_ledger_retention_hours() -> u64 {
    30 * 24
}

fn optional_locking_key<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<LockingKey>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    LockingKey::from_hex(&text)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
}

impl PoolSettings {
    /// Where the ledger is: the PostgreSQL URL when set, else the SQLite file.
    pub fn ledger_location(&self) -> crate::ledger::LedgerLocation {
        match &self.ledger_database_url {
            Some(url) => crate::ledger::LedgerLocation::Postgres(url.clone()),
            None => crate::ledger::LedgerLocation::File(self.ledger_path.clone()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateProviderSettings {
    /// `host:port`: a host name (resolved at each connect) or an IP address.
    pub address: hashpool_config::HostPort,
    /// Pinned when set; without it any provider key is accepted (only for local setups).
    #[serde(default)]
    pub authority_public_key: Option<Secp256k1PublicKey>,
    /// Reconnect back-off: starts at `reconnect_initial_ms`, doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

/// `[stats_reporter]` in the pool's file: reporting is on when the section is there.
#[derive(Debug, Clone, Deserialize)]
pub struct StatsReporterSettings {
    /// stats-pool's ingest address as the pool dials it (`host:port`, a name resolved at each
    /// connect), when it is not the shared config's `stats.ingest_address` (another host).
    #[serde(default)]
    pub address: Option<hashpool_config::HostPort>,
    /// A snapshot this often.
    pub interval_secs: u64,
    /// Reports kept while stats-pool is away (the oldest dropped beyond).
    pub buffer: usize,
}

/// Where and how often the pool reports.
#[derive(Debug, Clone)]
pub struct StatsReporting {
    pub reporter: hashpool_stats::ReporterConfig,
    pub interval: Duration,
}

/// Everything the pool needs to run, from both files.
#[derive(Debug, Clone)]
pub struct PoolRunConfig {
    pub listen_address: SocketAddr,
    pub monitoring_address: SocketAddr,
    /// The per-key miner API (`/api/v1/miners/{key}`), if served.
    pub api_address: Option<SocketAddr>,
    pub authority_public_key: Secp256k1PublicKey,
    pub pool: PoolSettings,
    pub template_provider: TemplateProviderSettings,
    pub quotes: QuoteSettings,
    /// The mint connects here.
    pub mint_link_address: SocketAddr,
    /// Only the holder of this key may be the mint.
    pub mint_public_key: Secp256k1PublicKey,
    /// Currency unit of ehash (`hash`).
    pub unit: String,
    /// Work that earns one ehash.
    pub unit_work: UnitWork,
    /// Where stats go, if anywhere.
    pub stats_reporting: Option<StatsReporting>,
    /// The jd-server whose job tokens `SetCustomMiningJob` must carry; without it, custom
    /// jobs are refused.
    pub jd_server_public_key: Option<Secp256k1PublicKey>,
    /// Bounds on what each miner may cost.
    pub limits: MinerLimits,
    /// Where found blocks are followed to maturity, if anywhere.
    pub settlement: Option<SettlementSettings>,
}

impl PoolRunConfig {
    /// Combines both files; fails naming the key when a value is unusable.
    pub fn new(global: &PoolGlobalConfig, mut own: PoolConfig) -> Result<Self, String> {
        let ours: Secp256k1PublicKey = own.pool.authority_secret_key.into();
        if ours.into_bytes() != global.pool.authority_public_key.into_bytes() {
            return Err(
                "`pool.authority_secret_key` does not match `[pool] authority_public_key` in the \
                 shared config: miners pinning that key would refuse this pool"
                    .into(),
            );
        }
        own.limits.check()?;
        if let Some(settlement) = &mut own.settlement {
            settlement.check()?;
            if settlement.pay_withdrawals && settlement.withdrawals_url.is_none() {
                let mint = global.mint.http_address;
                if mint.ip().is_unspecified() {
                    return Err(format!(
                        "`settlement.pay_withdrawals` needs `settlement.withdrawals_url`: the \
                         mint's `http_address` {mint} is no address to reach it by"
                    ));
                }
                settlement.withdrawals_url =
                    Some(format!("http://{mint}{}", ext_mint_quote::WITHDRAWALS_PATH));
            }
        }
        if let Some(url) = &own.pool.ledger_database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(format!(
                    "`pool.ledger_database_url` must be a postgres:// URL (got {})",
                    hashpool_config::database_url::redact(url)
                ));
            }
        }
        if own.pool.ledger_retention_hours == 0 {
            return Err("`pool.ledger_retention_hours` must be at least 1".into());
        }
        let unit_work = UnitWork::from_difficulty(global.ehash.unit_work)
            .map_err(|e| format!("shared config key `ehash.unit_work`: {e}"))?;
        let stats_reporting = own.stats_reporter.as_ref().map(|s| StatsReporting {
            reporter: hashpool_stats::ReporterConfig {
                address: s
                    .address
                    .clone()
                    .unwrap_or_else(|| global.stats.ingest_address.into()),
                service_public_key: global.stats.authority_public_key,
                // The pool proves itself with its authority key.
                secret_key: own.pool.authority_secret_key,
                role: hashpool_stats::Role::Pool,
                name: format!("pool-{}", own.pool.server_id),
                buffer: s.buffer.max(1),
            },
            interval: Duration::from_secs(s.interval_secs.max(1)),
        });
        Ok(Self {
            listen_address: global.pool.listen_address,
            monitoring_address: global.pool.monitoring_address,
            api_address: global.pool.api_address,
            authority_public_key: global.pool.authority_public_key,
            pool: own.pool,
            template_provider: own.template_provider,
            quotes: own.quotes,
            mint_link_address: global.pool.mint_link_address,
            mint_public_key: global.mint.authority_public_key,
            unit: global.ehash.unit.clone(),
            unit_work,
            stats_reporting,
            jd_server_public_key: global.jd_server.as_ref().map(|j| j.authority_public_key),
            limits: own.limits,
            settlement: own.settlement,
        })
    }
}

/// The shipped local configuration (`config/shared/pool.toml`, `config/pool.config.toml`), for
/// unit tests that need a whole [`PoolRunConfig`].
#[cfg(test)]
pub(crate) fn shipped_for_tests() -> PoolRunConfig {
    let global: PoolGlobalConfig =
        hashpool_config::load_with_env(&tests::repo("config/shared/pool.toml"), vec![]).unwrap();
    let own: PoolConfig =
        hashpool_config::load_with_env(&tests::repo("config/pool.config.toml"), vec![]).unwrap();
    PoolRunConfig::new(&global, own).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(super) fn repo(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    #[test]
    fn stats_pool_is_dialed_by_name_when_the_reporter_names_it() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        let load = |env: Vec<(String, String)>| -> PoolRunConfig {
            let own: PoolConfig =
                hashpool_config::load_with_env(&repo("config/pool.config.toml"), env).unwrap();
            PoolRunConfig::new(&global, own).unwrap()
        };
        let run = load(vec![]);
        let reporter = run.stats_reporting.unwrap().reporter;
        assert_eq!(reporter.address, global.stats.ingest_address);
        let run = load(vec![(
            "HASHPOOL__STATS_REPORTER__ADDRESS".to_string(),
            "stats.example.org:34290".to_string(),
        )]);
        let reporter = run.stats_reporting.unwrap().reporter;
        assert_eq!(reporter.address.to_string(), "stats.example.org:34290");
    }

    #[test]
    fn shipped_local_configs_load_and_keys_match() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        let own: PoolConfig =
            hashpool_config::load_with_env(&repo("config/pool.config.toml"), vec![]).unwrap();
        let run = PoolRunConfig::new(&global, own).unwrap();
        // The secret in the role file must be the half of the public key every peer pins.
        let derived: Secp256k1PublicKey = run.pool.authority_secret_key.into();
        assert_eq!(derived.to_string(), run.authority_public_key.to_string());
        assert!(run.pool.shares_per_minute > 0.0);
    }

    #[test]
    fn a_secret_key_not_matching_the_pinned_public_key_is_refused() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        // A valid key, but not the half of the pinned public key.
        let other = bitcoin::base58::encode_check(&[7u8; 32]);
        let own: PoolConfig = hashpool_config::load_with_env(
            &repo("config/pool.config.toml"),
            vec![("HASHPOOL__POOL__AUTHORITY_SECRET_KEY".to_string(), other)],
        )
        .unwrap();
        let err = PoolRunConfig::new(&global, own).err().unwrap();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn bad_descriptor_is_refused_naming_the_key() {
        let text = std::fs::read_to_string(repo("config/pool.config.toml")).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("coinbase_reward_script") {
                    "coinbase_reward_script = \"nonsense(\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.toml");
        std::fs::write(&path, text).unwrap();
        let err = hashpool_config::load_with_env::<PoolConfig, _>(&path, vec![]).unwrap_err();
        assert!(
            err.to_string().contains("pool.coinbase_reward_script"),
            "{err}"
        );
    }

    #[test]
    fn settlement_values_that_would_break_it_are_refused_naming_the_key() {
        let global: PoolGlobalConfig =
            hashpool_config::load_with_env(&repo("config/shared/pool.toml"), vec![]).unwrap();
        let load = |key: &str, value: &str| {
            let own: PoolConfig = hashpool_config::load_with_env(
                &repo("config/pool.config.toml"),
                vec![(format!("HASHPOOL__SETTLEMENT__{key}"), value.to_string())],
            )
            .unwrap();
            PoolRunConfig::new(&global, own)
        };
        let shipped = load("FEE_PPM", "20000").unwrap();
        assert!(shipped.settlement.is_some());
        for (key, value, names) in [
            ("FEE_PPM", "1000001", "settlement.fee_ppm"),
            ("WINDOW_MULTIPLIER", "0", "settlement.window_multiplier"),
            ("EPOCH_WORK_PPM", "0", "settlement.epoch_work_ppm"),
            ("FOLLOW_INTERVAL_MS", "0", "settlement.follow_interval_ms"),
            (
                "MIN_EPOCH_DIFFICULTY",
                "-1",
                "settlement.min_epoch_difficulty",
            ),
        ] {
            let refused = load(key, value).unwrap_err();
            assert!(refused.contains(names), "{key}={value}: {refused}");
        }
    }
}
