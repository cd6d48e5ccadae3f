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
}

impl TranslatorStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
