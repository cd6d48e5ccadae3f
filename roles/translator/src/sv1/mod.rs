//! The translator's SV1 side: one task per miner connection. In aggregated mode a miner gets the
//! channel's extranonce prefix plus its own 4-byte index as extranonce1; in channel-per-miner
//! mode its channel's prefix. In public mode its username names its key ([`username`]), and it
//! mines on its key's channel ([`key_channels`]) with its 4-byte index as extranonce1 (the
//! channel's prefix rides in coinbase1), so what it is told at subscribe, before its key is
//! known, never changes. Each miner has its own difficulty (vardiff). Its shares are
//! rebuilt and checked against their job here (stale, duplicate, low difficulty are answered at
//! once); a share that reaches the channel's target goes to the pool and is answered with the
//! pool's verdict, and with no pool connected every share is refused. No miner is given a
//! difficulty under `Sv1Limits::min_share_difficulty`, and the shares a miner has sent on a job
//! are remembered (to refuse duplicates) up to `Sv1Limits::max_shares_per_job`.
//!
//! - [`serve`]: the listener, one task per accepted miner;
//! - [`connection`]: a miner's task, its line loop;
//! - [`miner`]: what the translator knows of one miner, and the work it is sent;
//! - [`requests`]: answers to subscribe, authorize, configure and the like;
//! - [`username`]: public mode's `<key>[.<worker>]`;
//! - [`key_channels`]: public mode's channel per key;
//! - [`shares`]: `mining.submit`, checked with [`hashpool_shares`];
//! - [`vardiff`]: each miner's difficulty.

mod connection;
mod key_channels;
mod miner;
mod requests;
mod serve;
mod shares;
pub mod username;
mod vardiff;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bitcoin::Target;
use tokio::sync::{mpsc, watch};

use crate::{
    stats::TranslatorStats,
    sv2::{Command, UpstreamWork},
    Sv1Limits, VardiffSettings,
};

pub use key_channels::KeyChannels;
pub use serve::serve;

/// Jobs a miner may still submit to.
const RECENT_JOBS: usize = 8;

type Work = watch::Receiver<Option<Arc<UpstreamWork>>>;

/// What every miner connection shares.
pub struct Shared {
    pub mode: crate::ChannelMode,
    /// The aggregated channel's work; `None` in the other modes.
    pub aggregated: Option<Work>,
    /// Public mode's channels, one per key.
    pub keys: Option<KeyChannels>,
    pub commands: mpsc::Sender<Command>,
    pub vardiff: VardiffSettings,
    pub limits: Sv1Limits,
    pub stats: Arc<TranslatorStats>,
}

/// The harder (lower) of two little-endian targets.
fn harder(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    if Target::from_le_bytes(a) <= Target::from_le_bytes(b) {
        a
    } else {
        b
    }
}
