//! The translator: SV1 miners mine on the SV2 pool through one aggregated extended channel
//! (each SV1 connection owns a slice of its extranonce space), through one extended channel
//! per miner, or (public mode) through one extended channel per miner key, locked to the key the
//! miner gives as its username. Every miner has its own difficulty (vardiff); every share is
//! checked against its job here, and a share that reaches the pool's target is answered only
//! with the pool's verdict.

pub mod cli;
pub mod config;
pub mod monitoring;
pub mod role;
pub mod stats;
pub mod stats_report;
pub mod sv1;
pub mod sv2;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use hashpool_wallet::api as wallet_api;
pub use stats::{Sv1Limit, TranslatorStats};
pub use sv2::{UpstreamState, UpstreamWork};

/// How SV1 miners map onto channels with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelMode {
    /// One extended channel for every miner: scales to thousands of miners on one channel.
    /// A share that meets the miner's difficulty but not the channel's is valid work the
    /// translator answers itself; shares at the channel's target get the pool's verdict.
    #[default]
    Aggregated,
    /// One extended channel per miner: every share a miner submits goes to the pool, and the
    /// miner's vardiff moves its channel's target (UpdateChannel).
    PerMiner,
    /// Public mode: the SV1 username is the miner's key (`<key>[.<worker>]`), and each key has
    /// one extended channel on the pool, locked to it; the workers of a key share it as miners
    /// share the aggregated channel. The translator holds no wallet: the mint keeps every quote
    /// for the key's owner, who claims it with their own wallet.
    PerKey,
}

impl ChannelMode {
    /// Several miners share each channel, each owning a 4-byte slice of its extranonce.
    pub fn shares_channels(self) -> bool {
        matches!(self, ChannelMode::Aggregated | ChannelMode::PerKey)
    }
}

/// Per-miner difficulty.
#[derive(Debug, Clone, Copy)]
pub struct VardiffSettings {
    /// The hashrate (H/s) a new miner is assumed to have until vardiff has measured it (a
    /// miner's `mining.suggest_difficulty` replaces it).
    pub initial_hashrate: f32,
    /// The share rate each miner's difficulty aims at.
    pub shares_per_minute: f32,
    /// How often each miner's rate is checked (vardiff needs at least 15 s between updates).
    pub interval: Duration,
}

impl Default for VardiffSettings {
    fn default() -> Self {
        VardiffSettings {
            initial_hashrate: 1.0e6,
            shares_per_minute: 10.0,
            interval: Duration::from_secs(20),
        }
    }
}

/// What any one SV1 miner may make the translator do, whatever it sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sv1Limits {
    /// No miner is given an easier difficulty (vardiff, `mining.suggest_difficulty` and the
    /// pool's target are floored to it) and no share under it is accepted: every share costs
    /// its miner at least this many difficulty-1 units of hashing.
    pub min_share_difficulty: f64,
    /// Distinct shares remembered per miner and job to refuse duplicates; past it that job's
    /// further shares are refused until the next job (a hash is never forgotten while its job
    /// can still be submitted to, so a duplicate is never accepted).
    pub max_shares_per_job: usize,
    /// SV1 connections held at once; more are closed on accept.
    pub max_connections: usize,
    /// SV1 connections held at once from one IPv4 address (or IPv6 /64). A farm behind one
    /// NAT address is one source: size it for the largest farm expected.
    pub max_connections_per_address: usize,
    /// Public mode: distinct keys the workers of one IPv4 address (or IPv6 /64) may mine for
    /// at once. Each key is a channel on the pool, whose channels per connection are bounded:
    /// without this, one client authorizing random keys would use up the translator's channels.
    pub max_keys_per_address: usize,
    /// A connection that has not authorized a worker this long after connecting is closed.
    pub authorize_timeout: Duration,
    /// A connection that has sent nothing this long is closed (miners submit shares every few
    /// seconds at the vardiff's rate).
    pub idle_timeout: Duration,
    /// A miner that does not read what it is sent for this long is closed.
    pub write_timeout: Duration,
}

impl Sv1Limits {
    /// 2^32 / 10^6: a share at the default floor costs ~4,300 hashes, three orders of
    /// magnitude more than checking it costs the translator. CPU test miners (tens of kH/s)
    /// still find several shares a second at it.
    pub const DEFAULT_MIN_SHARE_DIFFICULTY: f64 = 1e-6;
    /// Hours of shares at any sane share rate (10 a minute: ~7 h on one job), and at most
    /// ~1 MB of remembered shares per miner across the jobs it may still submit to.
    pub const DEFAULT_MAX_SHARES_PER_JOB: usize = 4096;
    /// Twice the 10,000 connections benchmarked at ~10 KB each (docs/benchmarks.md).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
    /// A large farm behind one address.
    pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;
    /// Every owner in a shared farm behind one address with a key of their own, well under the
    /// pool's channels per connection (256 by default).
    pub const DEFAULT_MAX_KEYS_PER_ADDRESS: usize = 32;
    pub const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(900);
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Refuses limits that could not work: a floor that is not a positive number, or no room
    /// for a single share.
    pub fn check(&self) -> Result<(), LimitsError> {
        let d = self.min_share_difficulty;
        if !(d.is_finite() && d > 0.0) {
            return Err(LimitsError::MinShareDifficulty(d));
        }
        if self.max_shares_per_job == 0 {
            return Err(LimitsError::MaxSharesPerJob);
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err(LimitsError::Connections);
        }
        if self.max_keys_per_address == 0 {
            return Err(LimitsError::MaxKeysPerAddress);
        }
        for (name, t) in [
            ("authorize_timeout_secs", self.authorize_timeout),
            ("idle_timeout_secs", self.idle_timeout),
            ("write_timeout_secs", self.write_timeout),
        ] {
            if t.is_zero() {
                return Err(LimitsError::Timeout(name));
            }
        }
        Ok(())
    }
}

impl Default for Sv1Limits {
    fn default() -> Self {
        Sv1Limits {
            min_share_difficulty: Self::DEFAULT_MIN_SHARE_DIFFICULTY,
            max_shares_per_job: Self::DEFAULT_MAX_SHARES_PER_JOB,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: Self::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_keys_per_address: Self::DEFAULT_MAX_KEYS_PER_ADDRESS,
            authorize_timeout: Self::DEFAULT_AUTHORIZE_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsError {
    #[error("`translator.min_share_difficulty` must be a positive number, not {0}")]
    MinShareDifficulty(f64),
    #[error("`translator.max_shares_per_job` must be at least 1")]
    MaxSharesPerJob,
    #[error("`translator.max_connections` and `translator.max_connections_per_address` must be at least 1")]
    Connections,
    #[error("`translator.max_keys_per_address` must be at least 1")]
    MaxKeysPerAddress,
    #[error("`translator.{0}` must be at least 1")]
    Timeout(&'static str),
}

#[derive(Debug, Clone)]
pub struct TranslatorRunConfig {
    pub downstream_address: SocketAddr,
    /// Pools in order of preference: the first that answers is used; after losing a pool the
    /// translator starts again from the first.
    pub upstreams: Vec<UpstreamEndpoint>,
    pub user_identity: String,
    pub nominal_hashrate: f32,
    /// Locking key sent with the channel (mint-quote TLV) when set.
    pub locking_key: Option<ext_mint_quote::LockingKey>,
    pub channel_mode: ChannelMode,
    /// Public mode: whose channel a miner whose username holds no key mines on. `None`: such
    /// a miner is refused at `mining.authorize`.
    pub default_key: Option<ext_mint_quote::LockingKey>,
    pub vardiff: VardiffSettings,
}

#[derive(Debug, Clone)]
pub struct UpstreamEndpoint {
    /// A host name (resolved at each connect) or an IP address, and the port.
    pub address: hashpool_sv2_io::HostPort,
    /// The pool's Noise authority key, pinned.
    pub authority_public_key: Secp256k1PublicKey,
}

pub struct RunningTranslator {
    pub downstream_address: SocketAddr,
    /// The aggregated channel's work (`None` in the other modes).
    pub work: Option<watch::Receiver<Option<Arc<UpstreamWork>>>>,
    pub stats: Arc<TranslatorStats>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the translator with the default [`Sv1Limits`].
pub async fn start(
    config: TranslatorRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningTranslator> {
    start_with_limits(config, Sv1Limits::default(), None, shutdown).await
}

/// Starts the translator: SV1 miners on `config.downstream_address`, the pool upstream;
/// `minter` mints the quotes the pool announces (into the wallet whose key is
/// `config.locking_key`).
pub async fn start_with_limits(
    config: TranslatorRunConfig,
    limits: Sv1Limits,
    minter: Option<hashpool_wallet::Minter>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningTranslator> {
    anyhow::ensure!(!config.upstreams.is_empty(), "no upstream pool configured");
    limits.check()?;
    // The easiest target any channel or miner may have: the pool is asked never to go past it.
    let floor_target = hashpool_sv1::difficulty_to_target(limits.min_share_difficulty);
    let listener = hashpool_sv2_io::listen(config.downstream_address)?;
    let downstream_address = listener.local_addr()?;
    let (aggregated_tx, work) = match config.channel_mode {
        ChannelMode::Aggregated => {
            let (tx, rx) = watch::channel(None);
            (Some(tx), Some(rx))
        }
        ChannelMode::PerMiner | ChannelMode::PerKey => (None, None),
    };
    anyhow::ensure!(
        config.default_key.is_none() || config.channel_mode == ChannelMode::PerKey,
        "a default key is for public mode (channel_mode = per_key) only"
    );
    anyhow::ensure!(
        config.channel_mode != ChannelMode::PerKey || minter.is_none(),
        "a public translator (channel_mode = per_key) holds no wallet: miners claim their own ehash"
    );
    let stats = Arc::new(TranslatorStats::default());
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16 * 1024);
    let up = tokio::spawn(sv2::run(
        config.clone(),
        aggregated_tx,
        commands_rx,
        floor_target,
        minter,
        stats.clone(),
        shutdown.clone(),
    ));
    let down = tokio::spawn(sv1::serve(
        listener,
        sv1::Shared {
            mode: config.channel_mode,
            aggregated: work.clone(),
            keys: (config.channel_mode == ChannelMode::PerKey)
                .then(|| sv1::KeyChannels::new(config.default_key, limits.max_keys_per_address)),
            commands: commands_tx,
            vardiff: config.vardiff,
            limits,
            stats: stats.clone(),
        },
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let _ = up.await;
        let _ = down.await;
    });
    tracing::info!(%downstream_address, upstreams = config.upstreams.len(), mode = ?config.channel_mode, "translator running");
    Ok(RunningTranslator {
        downstream_address,
        work,
        stats,
        task,
    })
}
