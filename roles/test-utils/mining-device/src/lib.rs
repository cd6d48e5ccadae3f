//! SV2 CPU miner on a standard channel, for local runs and tests. Hashing runs on OS threads;
//! the connection runs on tokio and reconnects with back-off when the pool goes away.

pub mod cli;
pub mod hasher;
mod session;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use stratum_apps::key_utils::Secp256k1PublicKey;
use tokio_util::sync::CancellationToken;

pub use session::run;

#[derive(Debug, Clone)]
pub struct MinerOptions {
    pub pool_address: SocketAddr,
    /// Pool authority key to pin; `None` accepts any (local use only).
    pub pool_authority_key: Option<Secp256k1PublicKey>,
    pub user_identity: String,
    pub device_id: String,
    pub threads: usize,
    /// Hashrate announced to the pool (H/s). With `limit_hashrate`, also the pace of hashing.
    pub nominal_hashrate: f32,
    pub limit_hashrate: bool,
    /// Hash at this pace whatever is announced (tests of difficulty: a miner announcing less
    /// or more than it has); overrides `limit_hashrate`.
    pub hash_pace: Option<f32>,
    /// Key the channel's ehash is locked to, sent as the mint-quote locking-key TLV when the
    /// pool offers the extension.
    pub locking_key: Option<ext_mint_quote::LockingKey>,
    /// Mints announced quotes into the miner's wallet (whose key is `locking_key`).
    pub minter: Option<hashpool_wallet::Minter>,
}

/// What the miner has done so far (read by tests and logged).
#[derive(Debug, Default)]
pub struct MinerStats {
    pub hashes: AtomicU64,
    pub shares_submitted: AtomicU64,
    pub shares_acknowledged: AtomicU64,
    pub shares_rejected: AtomicU64,
    pub set_targets: AtomicU64,
    pub jobs: AtomicU64,
    pub connections: AtomicU64,
    pub connected: AtomicBool,
    /// The pool agreed to the mint-quote extension on the current connection.
    pub mint_quote_negotiated: AtomicBool,
    /// Quote announcements received (ehash ready to mint).
    pub quotes_announced: AtomicU64,
    pub ehash_announced: AtomicU64,
}

impl MinerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A running miner.
pub struct Miner {
    pub stats: Arc<MinerStats>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts mining in the background until `shutdown`.
pub fn start(options: MinerOptions, shutdown: CancellationToken) -> Miner {
    let stats = Arc::new(MinerStats::default());
    let task = tokio::spawn(run(options, stats.clone(), shutdown));
    Miner { stats, task }
}
