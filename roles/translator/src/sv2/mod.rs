//! The translator's SV2 side: one Noise connection to the pool (its key pinned) carrying either
//! one aggregated extended channel for every SV1 miner behind it or one extended channel per
//! miner. It turns the pool's jobs into the work SV1 miners see, forwards their shares with
//! per-channel sequence numbers, and answers each forwarded share only with the pool's verdict.
//! It reconnects with back-off (reopening every miner's channel); meanwhile miners stay
//! connected with no work and every share is refused.
//!
//! - [`session`]: the connection to the pool (back-off between pools, handshake) and its loop;
//! - [`failover`]: the channels kept across connections, and commands while no pool is there;
//! - [`channel`]: one open channel, and what the pool sends about channels;
//! - [`commands`]: what the SV1 side asks of a connected pool.

mod channel;
mod commands;
mod failover;
mod session;

use std::{collections::HashMap, sync::Arc};

use tokio::sync::{oneshot, watch};

use crate::TranslatorRunConfig;
use channel::Channel;
use failover::Slots;

pub use session::run;

/// Bytes of an aggregated channel's extranonce each SV1 connection owns (its index).
pub const MINER_EXTRANONCE_BYTES: usize = 4;
/// What the SV1 miner rolls itself.
pub const MIN_EXTRANONCE2_BYTES: usize = 4;

/// The job SV1 miners work on.
#[derive(Debug, Clone)]
pub struct ActiveJob {
    pub job_id: u32,
    pub version: u32,
    pub coinbase_prefix: Vec<u8>,
    pub coinbase_suffix: Vec<u8>,
    pub merkle_path: Vec<[u8; 32]>,
    pub prev_hash: [u8; 32],
    pub nbits: u32,
    pub ntime: u32,
    /// A new tip: older jobs are stale.
    pub clean: bool,
    /// The channel's target when the job became active (little-endian). The pool judges the
    /// job's shares by it, whatever SetTarget says later; shares that meet it go to the pool.
    pub channel_target: [u8; 32],
}

/// The channel and its current job, as the downstream side needs them.
#[derive(Debug, Clone)]
pub struct UpstreamWork {
    /// Which opening of a channel this is (unique in the process): a miner's jobs from an
    /// earlier opening are stale even if the pool reuses channel ids and prefixes.
    pub opening: u64,
    pub channel_id: u32,
    pub extranonce_prefix: Vec<u8>,
    pub extranonce_size: usize,
    /// The channel's target (little-endian): shares that meet it go to the pool.
    pub target: [u8; 32],
    /// Shared by every miner (each owns a 4-byte slice of the extranonce), or this miner's own.
    pub aggregated: bool,
    pub job: Option<ActiveJob>,
}

pub type UpstreamState = watch::Sender<Option<Arc<UpstreamWork>>>;

/// What the SV1 side asks of the upstream.
#[derive(Debug)]
pub enum Command {
    Share(ShareToPool),
    /// Channel-per-miner mode: open (and after a reconnect, reopen) a channel for this miner;
    /// public mode: for this key's slot, locked to `key`. Its work is published on `work`.
    Open {
        miner: u32,
        hashrate: f32,
        work: UpstreamState,
        key: Option<ext_mint_quote::LockingKey>,
    },
    /// Channel-per-miner mode: the miner's vardiff estimate, sent to the pool as UpdateChannel.
    Hashrate {
        miner: u32,
        hashrate: f32,
    },
    /// The miner disconnected: its channel is closed.
    Close {
        miner: u32,
    },
}

/// Why a forwarded share was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAccepted {
    /// The pool refused it (`SubmitSharesError`), with the pool's error code.
    #[error("refused by the pool: {0}")]
    Refused(String),
    /// No pool judged it: the connection, the channel or the miner went first (or it could
    /// not be sent at all).
    #[error("{0}")]
    Unjudged(&'static str),
}

/// A share on its way to the pool, with where its verdict goes.
#[derive(Debug)]
pub struct ShareToPool {
    pub channel_id: u32,
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
    /// The part of the extranonce after the channel's prefix.
    pub extranonce: Vec<u8>,
    pub verdict: oneshot::Sender<Result<(), NotAccepted>>,
}

type Verdict = oneshot::Sender<Result<(), NotAccepted>>;

/// A connected pool's channels, and what answering the SV1 side's commands on it needs.
struct Session<'a> {
    conn: hashpool_sv2_io::Connection,
    config: &'a TranslatorRunConfig,
    /// The channels to keep open, whichever pool is connected.
    slots: &'a mut Slots,
    /// The channels open on this connection, by channel id.
    channels: HashMap<u32, Channel>,
    /// Channel ids by slot.
    by_slot: HashMap<u32, u32>,
    group_channel_id: Option<u32>,
    /// The translator's own key, sent with every open request (a key's channel sends its key)
    /// when the pool took the mint-quote extension.
    locking_key: Option<ext_mint_quote::LockingKey>,
    /// The pool took the mint-quote extension: locking-key TLVs may be sent.
    tlv: bool,
    mode: crate::ChannelMode,
    /// The easiest target any channel may have (the translator's floor).
    max_target: [u8; 32],
}
