//! The translator: SV1 miners mine on the SV2 pool through one aggregated extended channel
//! (each SV1 connection owns a slice of its extranonce space) or through one extended channel
//! per miner. Every miner has its own difficulty (vardiff); every share is checked against its
//! job here, and a share that reaches the pool's target is answered only with the pool's verdict.

pub mod cli;
pub mod config;
pub mod downstream;
pub mod monitoring;
pub mod stats;
pub mod stats_report;
pub mod upstream;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use hashpool_wallet::api as wallet_api;
pub use stats::TranslatorStats;
pub use upstream::{UpstreamState, UpstreamWork};

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
    /// Mints the quotes the pool announces into the translator's wallet.
    pub minter: Option<hashpool_wallet::Minter>,
    pub channel_mode: ChannelMode,
    pub vardiff: VardiffSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamEndpoint {
    pub address: SocketAddr,
    /// The pool's Noise authority key, pinned.
    pub authority_public_key: Secp256k1PublicKey,
}

pub struct RunningTranslator {
    pub downstream_address: SocketAddr,
    /// The aggregated channel's work (`None` in channel-per-miner mode).
    pub work: Option<watch::Receiver<Option<Arc<UpstreamWork>>>>,
    pub stats: Arc<TranslatorStats>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(
    config: TranslatorRunConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningTranslator> {
    anyhow::ensure!(!config.upstreams.is_empty(), "no upstream pool configured");
    let listener = hashpool_sv2_io::listen(config.downstream_address)?;
    let downstream_address = listener.local_addr()?;
    let (aggregated_tx, work) = match config.channel_mode {
        ChannelMode::Aggregated => {
            let (tx, rx) = watch::channel(None);
            (Some(tx), Some(rx))
        }
        ChannelMode::PerMiner => (None, None),
    };
    let stats = Arc::new(TranslatorStats::default());
    let (commands_tx, commands_rx) = tokio::sync::mpsc::channel(16 * 1024);
    let up = tokio::spawn(upstream::run(
        config.clone(),
        aggregated_tx,
        commands_rx,
        stats.clone(),
        shutdown.clone(),
    ));
    let down = tokio::spawn(downstream::serve(
        listener,
        downstream::Shared {
            aggregated: work.clone(),
            commands: commands_tx,
            vardiff: config.vardiff,
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
