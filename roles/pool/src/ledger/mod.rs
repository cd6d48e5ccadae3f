//! The accrual ledger: every accepted share, and the work it accrued to its locking key, in
//! SQLite. A share is acknowledged to its miner only after the transaction holding it has
//! committed, so a pool killed right after an acknowledgement still pays that share. Every
//! write goes through one task: queued shares are committed in a single transaction (group
//! commit, one fsync per group), and batch creation and quote answers run between groups. With
//! one writer, SQLite's write lock is never contended (a contended lock means busy-wait sleeps
//! and starved writers, measured as seconds of quote latency under share load).
//!
//! The ledger records the currency unit and the work per unit it was written with, and refuses
//! to open with other values: pending work would silently be repriced.

mod batches;
mod error;
mod metrics;
mod reader;
mod share_commit;
mod sqlite;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    path::Path,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ext_mint_quote::LockingKey;
use hashpool_ehash::{UnitWork, Work};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    Row, SqlitePool,
};
use tokio::sync::{mpsc, oneshot};

pub use batches::Batch;
pub use error::LedgerError;
pub use metrics::LedgerMetrics;
pub use reader::{FoundBlock, IssuedQuote, KeyReport, LedgerReader, ReadLimits, WindowWork};
pub use writer::Receipt;

use crate::accepted_share::AcceptedShare;
use sqlite::{check_unit, work_from};
use writer::{writer, Command, Pending, MAX_GROUP};

/// Commands waiting for the writer at most; `record` waits for room beyond that.
const QUEUE_CAPACITY: usize = MAX_GROUP * 4;

/// Work accrued to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccrual {
    pub pending: Work,
    pub total: Work,
    pub shares: u64,
}

#[derive(Clone)]
pub struct AccrualLedger {
    db: SqlitePool,
    queue: mpsc::Sender<Command>,
    unit: Arc<str>,
    unit_work: UnitWork,
    /// Accrual rows batch creation has read since start (it reads only keys with new work).
    keys_examined: Arc<AtomicU64>,
    /// Pending work, open batches, commit latency: kept by the writer for `/metrics`.
    metrics: Arc<LedgerMetrics>,
}

impl AccrualLedger {
    /// Opens (creating if needed) the ledger at `path`, migrates it and starts its writer.
    /// `unit` and `unit_work` must be the values the ledger was written with (a new ledger, or
    /// one from before they were recorded, takes them).
    pub async fn open(path: &Path, unit: &str, unit_work: UnitWork) -> Result<Self, LedgerError> {
        Self::open_with_queue(path, unit, unit_work, QUEUE_CAPACITY).await
    }

    async fn open_with_queue(
        path: &Path,
        unit: &str,
        unit_work: UnitWork,
        queue_capacity: usize,
    ) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| LedgerError::Database(format!("{}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed transaction survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations")
            .run(&db)
            .await
            .map_err(|e| LedgerError::Database(format!("migration: {e}")))?;
        check_unit(&db, unit, unit_work).await?;
        let (queue, rx) = mpsc::channel(queue_capacity);
        let keys_examined = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(LedgerMetrics::read(&db).await?);
        tokio::spawn(writer(
            db.clone(),
            rx,
            keys_examined.clone(),
            unit_work,
            metrics.clone(),
        ));
        Ok(Self {
            db,
            queue,
            unit: unit.into(),
            unit_work,
            keys_examined,
            metrics,
        })
    }

    /// How many keys' accruals batch creation has read since the ledger was opened.
    pub fn keys_examined(&self) -> u64 {
        self.keys_examined.load(Ordering::Relaxed)
    }

    /// The ledger's figures for `/metrics`.
    pub fn metrics(&self) -> &Arc<LedgerMetrics> {
        &self.metrics
    }

    /// The currency unit the ledger's work is priced in.
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// Work per unit of ehash, as recorded in the ledger.
    pub fn unit_work(&self) -> UnitWork {
        self.unit_work
    }

    /// Queues `share` for the next group commit, waiting while the queue is full: a writer
    /// that falls behind slows the share path down instead of piling up tasks and memory.
    /// A share whose future is dropped before it resolves was not queued.
    pub async fn record(&self, share: AcceptedShare) -> Receipt {
        let (done, receipt) = oneshot::channel();
        if let Err(mpsc::error::SendError(Command::Share(p))) = self
            .queue
            .send(Command::Share(Pending { share, done }))
            .await
        {
            let _ = p.done.send(Err(LedgerError::Stopped));
        }
        receipt
    }

    /// What `key` has accrued.
    pub async fn accrual(&self, key: &LockingKey) -> Result<Option<KeyAccrual>, LedgerError> {
        let row = sqlx::query(
            "SELECT pending_work, total_work, share_count FROM accruals WHERE locking_key = ?",
        )
        .bind(key.as_bytes().as_slice())
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(KeyAccrual {
                pending: work_from(r.get::<Vec<u8>, _>(0))?,
                total: work_from(r.get::<Vec<u8>, _>(1))?,
                shares: r.get::<i64, _>(2) as u64,
            })
        })
        .transpose()
    }

    /// Sum of the work of every share recorded for `key`, from the share rows themselves (an
    /// independent check of the accrual totals).
    pub async fn share_work(&self, key: &LockingKey) -> Result<(Work, u64), LedgerError> {
        let rows = sqlx::query("SELECT work FROM shares WHERE locking_key = ?")
            .bind(key.as_bytes().as_slice())
            .fetch_all(&self.db)
            .await?;
        let mut total = Work::ZERO;
        for r in &rows {
            total = total
                .checked_add(work_from(r.get::<Vec<u8>, _>(0))?)
                .ok_or(LedgerError::CorruptWork)?;
        }
        Ok((total, rows.len() as u64))
    }
}

impl AccrualLedger {
    /// Runs `command` on the writer task and waits for its answer.
    async fn on_writer<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Command,
    ) -> Result<T, LedgerError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(command(done))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        answer.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Takes every key's whole units of ehash (at the ledger's unit work) out of its pending
    /// work into a new batch (one per key), in one transaction. The remainder stays pending for
    /// the next batch.
    pub async fn create_batches(&self) -> Result<Vec<Batch>, LedgerError> {
        let unit = self.unit_work;
        self.on_writer(|done| Command::CreateBatches { unit, done })
            .await
    }

    /// Records the mint's quote for a request. Returns the batch if this answer is new (a
    /// repeated answer to a resent request, or an answer to a refused one, changes nothing and
    /// returns `None`).
    pub async fn record_quote(
        &self,
        request_id: &[u8; 32],
        quote_id: &str,
    ) -> Result<Option<Batch>, LedgerError> {
        let (request_id, quote_id) = (*request_id, quote_id.to_string());
        self.on_writer(|done| Command::RecordQuote {
            request_id,
            quote_id,
            done,
        })
        .await
    }

    /// The mint refused a request for good (a retry cannot succeed): the batch is closed and
    /// its work goes back to its key's pending work, in one transaction, to be requested again
    /// by a later batch. Returns the refused batch, or `None` when nothing changed (an unknown
    /// request id, or one already answered or refused: its work is never returned twice).
    pub async fn record_refusal(
        &self,
        request_id: &[u8; 32],
        code: &str,
    ) -> Result<Option<Batch>, LedgerError> {
        let (request_id, code) = (*request_id, code.to_string());
        self.on_writer(|done| Command::RecordRefusal {
            request_id,
            code,
            done,
        })
        .await
    }
}
