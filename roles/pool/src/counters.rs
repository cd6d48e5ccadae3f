//! Pool-wide counters, updated with atomics only: written by the template receiver, the miners
//! and the mint link, read by observability.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Mutex,
};

use hashpool_ehash::Work;

#[derive(Debug, Default)]
pub struct PoolStats {
    shares_accepted: AtomicU64,
    shares_rejected: AtomicU64,
    /// Accepted work, exact (no 128-bit atomics on stable).
    work_accepted: Mutex<Work>,
    blocks_found: AtomicU64,
    connections: AtomicU64,
    provider_connected: AtomicBool,
    /// Accepted shares whose job target was not pinned (credited at the channel's target).
    shares_without_job_target: AtomicU64,
    /// Quote batches the mint refused for good, by its error code.
    batches_refused: BatchesRefusedCounters,
}

#[derive(Debug, Default)]
struct BatchesRefusedCounters {
    invalid_locking_key: AtomicU64,
    amount_out_of_range: AtomicU64,
    unit_mismatch: AtomicU64,
    other: AtomicU64,
}

/// Quote batches the mint refused for good, by the mint's error code. Their work went back to
/// pending and was requested again; any of these above 0 needs an operator's look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchesRefused {
    pub invalid_locking_key: u64,
    pub amount_out_of_range: u64,
    pub unit_mismatch: u64,
    /// Codes the extension does not define (a fixed set of counters: the mint picks the code).
    pub other: u64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub shares_accepted: u64,
    pub shares_rejected: u64,
    /// Exact accepted work in hashes.
    pub work_accepted_hashes: u128,
    /// The same in difficulty-1 shares.
    pub work_accepted: f64,
    pub blocks_found: u64,
    pub connections: u64,
    pub provider_connected: bool,
    /// Should stay 0: accepted shares credited without their job's target.
    pub shares_without_job_target: u64,
    pub batches_refused: BatchesRefused,
}

impl PoolStats {
    pub fn record_accepted(&self, work: Work, block: bool) {
        self.shares_accepted.fetch_add(1, Ordering::Relaxed);
        {
            let mut total = self.work_accepted.lock().unwrap_or_else(|p| p.into_inner());
            *total = total
                .checked_add(work)
                .unwrap_or(Work::from_hashes(u128::MAX));
        }
        if block {
            self.blocks_found.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_without_job_target(&self) {
        self.shares_without_job_target
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A quote batch the mint refused for good with `code`.
    pub fn record_batch_refused(&self, code: &str) {
        use ext_mint_quote::error_code;
        let c = &self.batches_refused;
        let counter = match code {
            error_code::INVALID_LOCKING_KEY => &c.invalid_locking_key,
            error_code::AMOUNT_OUT_OF_RANGE => &c.amount_out_of_range,
            error_code::UNIT_MISMATCH => &c.unit_mismatch,
            _ => &c.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        let work = *self.work_accepted.lock().unwrap_or_else(|p| p.into_inner());
        let refused = &self.batches_refused;
        StatsSnapshot {
            shares_accepted: self.shares_accepted.load(Ordering::Relaxed),
            shares_rejected: self.shares_rejected.load(Ordering::Relaxed),
            work_accepted_hashes: work.hashes(),
            work_accepted: work.as_difficulty(),
            blocks_found: self.blocks_found.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            provider_connected: self.provider_connected.load(Ordering::Relaxed),
            shares_without_job_target: self.shares_without_job_target.load(Ordering::Relaxed),
            batches_refused: BatchesRefused {
                invalid_locking_key: refused.invalid_locking_key.load(Ordering::Relaxed),
                amount_out_of_range: refused.amount_out_of_range.load(Ordering::Relaxed),
                unit_mismatch: refused.unit_mismatch.load(Ordering::Relaxed),
                other: refused.other.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_batches_are_counted_by_the_mints_code() {
        let stats = PoolStats::default();
        stats.record_batch_refused(ext_mint_quote::error_code::AMOUNT_OUT_OF_RANGE);
        stats.record_batch_refused(ext_mint_quote::error_code::AMOUNT_OUT_OF_RANGE);
        stats.record_batch_refused(ext_mint_quote::error_code::UNIT_MISMATCH);
        stats.record_batch_refused(ext_mint_quote::error_code::INVALID_LOCKING_KEY);
        stats.record_batch_refused("made-up-code");
        assert_eq!(
            stats.snapshot().batches_refused,
            BatchesRefused {
                invalid_locking_key: 1,
                amount_out_of_range: 2,
                unit_mismatch: 1,
                other: 1,
            }
        );
    }
}
