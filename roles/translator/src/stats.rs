//! Counters of what the translator's miners did, for logs, tests and monitoring.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct TranslatorStats {
    /// SV1 connections open now.
    pub connections: AtomicU64,
    /// Shares that met the miner's difficulty but not the channel's: answered by the
    /// translator, not sent to the pool (aggregated mode only).
    pub shares_below_channel_target: AtomicU64,
    /// Shares sent to the pool.
    pub shares_forwarded: AtomicU64,
    /// Forwarded shares the pool accepted.
    pub shares_accepted_by_pool: AtomicU64,
    /// Forwarded shares the pool refused, or that no pool was there to judge.
    pub shares_refused_upstream: AtomicU64,
    /// Shares refused here: stale, duplicate, low difficulty, malformed, or while no pool is
    /// connected.
    pub shares_refused_here: AtomicU64,
    /// Difficulty changes sent to miners by vardiff.
    pub vardiff_updates: AtomicU64,
    /// 1 while a pool connection is set up, 0 otherwise.
    pub pool_connected: AtomicU64,
    /// Pool connections set up since start.
    pub pool_connections: AtomicU64,
    /// Sum of the authorized miners' hashrate estimates (H/s), as vardiff measures them.
    pub miners_hashrate: AtomicU64,
}

impl TranslatorStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A miner's hashrate estimate moved from `old` to `new` (H/s; 0 = not counted).
    pub(crate) fn rehash(&self, old: f32, new: f32) {
        let (old, new) = (old.max(0.0) as u64, new.max(0.0) as u64);
        if new >= old {
            self.miners_hashrate.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.miners_hashrate.fetch_sub(old - new, Ordering::Relaxed);
        }
    }
}
