//! Pool-wide counters, updated on the share path with atomics only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct PoolStats {
    shares_accepted: AtomicU64,
    shares_rejected: AtomicU64,
    /// Accepted work in milli-difficulty-1 units (atomics hold integers).
    work_accepted_milli: AtomicU64,
    blocks_found: AtomicU64,
    connections: AtomicU64,
    provider_connected: AtomicBool,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub shares_accepted: u64,
    pub shares_rejected: u64,
    pub work_accepted: f64,
    pub blocks_found: u64,
    pub connections: u64,
    pub provider_connected: bool,
}

impl PoolStats {
    pub fn record_accepted(&self, work: f64, block: bool) {
        self.shares_accepted.fetch_add(1, Ordering::Relaxed);
        self.work_accepted_milli
            .fetch_add((work * 1000.0).round() as u64, Ordering::Relaxed);
        if block {
            self.blocks_found.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_rejected(&self) {
        self.shares_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set_provider_connected(&self, up: bool) {
        self.provider_connected.store(up, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            shares_accepted: self.shares_accepted.load(Ordering::Relaxed),
            shares_rejected: self.shares_rejected.load(Ordering::Relaxed),
            work_accepted: self.work_accepted_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            blocks_found: self.blocks_found.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            provider_connected: self.provider_connected.load(Ordering::Relaxed),
        }
    }
}
