//! The ledger's figures for `/metrics`, kept by the writer task as it goes (no query per
//! scrape): pending work, open batches, the oldest open batch and group commit latency.

use std::sync::{
    atomic::{AtomicI64, AtomicU64, Ordering},
    Arc, Mutex,
};

use hashpool_metrics::Histogram;
use sqlx::{AnyPool, Row};

use super::{error::LedgerError, store::work_from};

/// What the ledger holds now, as its writer last left it.
#[derive(Debug)]
pub struct LedgerMetrics {
    /// Work accrued and not yet in a batch, every key's (hashes).
    pending_work: Mutex<u128>,
    /// The pool's cumulative accepted work (hashes): where settlement's windows stand.
    pool_work: Mutex<u128>,
    /// Batches the mint has neither answered nor refused.
    open_batches: AtomicU64,
    /// Creation time (unix ms) of the oldest open batch; 0 when none is open.
    oldest_open_ms: AtomicI64,
    /// Group commits, seconds from the transaction's start to its commit.
    pub commit_seconds: Arc<Histogram>,
}

/// The oldest open batch's creation time (the `batches_open` partial index: one row read).
const OLDEST_OPEN: &str = "SELECT created_at FROM batches \
     WHERE quote_id IS NULL AND refused_code IS NULL ORDER BY id LIMIT 1";

impl LedgerMetrics {
    /// The figures of the ledger in `db` (read once, when the ledger opens: every key's
    /// pending work, and the open batches through their index).
    pub(super) async fn read(db: &AnyPool) -> Result<Self, LedgerError> {
        let (mut pending, mut total) = (0u128, 0u128);
        for row in sqlx::query("SELECT pending_work, total_work FROM accruals")
            .fetch_all(db)
            .await?
        {
            pending = pending.saturating_add(work_from(row.get(0))?.hashes());
            total = total.saturating_add(work_from(row.get(1))?.hashes());
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM batches WHERE quote_id IS NULL AND refused_code IS NULL",
        )
        .fetch_one(db)
        .await?;
        let metrics = Self {
            pending_work: Mutex::new(pending),
            pool_work: Mutex::new(total),
            open_batches: AtomicU64::new(u64::try_from(open).unwrap_or(0)),
            oldest_open_ms: AtomicI64::new(0),
            commit_seconds: Arc::new(Histogram::new(Histogram::LATENCY_SECONDS)),
        };
        metrics.refresh_oldest(db).await?;
        Ok(metrics)
    }

    fn with_pending(&self, change: impl FnOnce(u128) -> u128) {
        let mut pending = self.pending_work.lock().unwrap_or_else(|e| e.into_inner());
        *pending = change(*pending);
    }

    /// Shares credited `hashes` of work.
    pub(super) fn credited(&self, hashes: u128) {
        self.with_pending(|p| p.saturating_add(hashes));
    }

    /// `count` batches took `hashes` of pending work.
    pub(super) fn batched(&self, count: usize, hashes: u128, created_ms: i64) {
        self.with_pending(|p| p.saturating_sub(hashes));
        if count > 0 {
            self.open_batches.fetch_add(count as u64, Ordering::Relaxed);
            let _ = self.oldest_open_ms.compare_exchange(
                0,
                created_ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// An open batch was answered, or refused (`returned`: its work, back to pending).
    pub(super) async fn closed(&self, db: &AnyPool, returned: u128) {
        self.with_pending(|p| p.saturating_add(returned));
        let _ = self
            .open_batches
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if let Err(e) = self.refresh_oldest(db).await {
            tracing::debug!("ledger metrics: oldest open batch: {e}");
        }
    }

    async fn refresh_oldest(&self, db: &AnyPool) -> Result<(), LedgerError> {
        let oldest: Option<i64> = sqlx::query_scalar(OLDEST_OPEN).fetch_optional(db).await?;
        self.oldest_open_ms
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn set_pool_work(&self, hashes: u128) {
        *self.pool_work.lock().unwrap_or_else(|e| e.into_inner()) = hashes;
    }

    /// The pool's cumulative accepted work, hashes.
    pub fn pool_work(&self) -> u128 {
        *self.pool_work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pending work of every key, hashes.
    pub fn pending_work(&self) -> u128 {
        *self.pending_work.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Batches waiting for the mint's answer.
    pub fn open_batches(&self) -> u64 {
        self.open_batches.load(Ordering::Relaxed)
    }

    /// Age of the oldest open batch at `now_ms` (unix ms), seconds; 0 when none is open.
    pub fn oldest_open_batch_age(&self, now_ms: i64) -> f64 {
        match self.oldest_open_ms.load(Ordering::Relaxed) {
            0 => 0.0,
            created => (now_ms.saturating_sub(created)).max(0) as f64 / 1000.0,
        }
    }
}
