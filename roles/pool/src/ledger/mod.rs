//! The accrual ledger: every accepted share, and the work it accrued to its locking key, in
//! SQLite. A share is acknowledged to its miner only after the transaction holding it has
//! committed, so a pool killed right after an acknowledgement still pays that share. Every
//! write goes through one task: queued shares are committed in a single transaction (group
//! commit, one fsync per group), and batch creation and quote answers run between groups, ahead
//! of any share still queued (they have a queue of their own). With
//! one writer, SQLite's write lock is never contended (a contended lock means busy-wait sleeps
//! and starved writers, measured as seconds of quote latency under share load).
//!
//! Shares are kept as compact records in an append-only log, many to a row (`log`), not as a
//! row each; the writer holds every key's accrual in memory (`book`) and duplicates are looked
//! for in memory per chain tip (`seen`), so a group commit reads nothing and writes one log row
//! plus one row per changed key. Batches take a key's running share count and commitment, and
//! log rows older than the retention window are pruned (`retention`).
//!
//! The ledger records the currency unit and the work per unit it was written with, and refuses
//! to open with other values: pending work would silently be repriced.

mod batches;
mod book;
mod epochs;
mod error;
mod found_blocks;
#[cfg(test)]
mod instances_tests;
mod legacy;
mod log;
#[cfg(test)]
mod log_tests;
mod metrics;
mod migrate;
mod payouts;
mod quote_feed;
mod reader;
mod retention;
mod seen;
mod share_commit;
mod store;
#[cfg(test)]
mod test_db;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ext_mint_quote::LockingKey;
use hashpool_ehash::{UnitWork, Work};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

pub use batches::Batch;
pub use book::chain_step;
pub use epochs::{EpochQuote, EpochSizing, LedgerEpoch};
pub use error::LedgerError;
pub use found_blocks::{BlockStatus, TrackedBlock};
pub use log::tip_id;
pub use metrics::LedgerMetrics;
pub use migrate::{migrate_ledger, LedgerTotals};
pub use payouts::PayoutRow;
pub use reader::{FoundBlock, IssuedQuote, KeyReport, LedgerReader, ReadLimits, WindowWork};
pub use retention::{chain_row, Pruned};
pub use store::{Backend, LedgerLocation};
pub use writer::{Receipt, Receipts};

use crate::accepted_share::AcceptedShare;
use book::Book;
use store::{check_unit, work_from, Db};
use writer::{writer, Command, Done, Pending, MAX_GROUP};

/// Share entries waiting for the writer at most (one per `record`, or per `record_all` of a
/// connection's burst); `record` waits for room beyond that.
const QUEUE_CAPACITY: usize = MAX_GROUP * 4;

/// Control commands (batches, answers, pruning) waiting at most.
const CONTROL_CAPACITY: usize = 64;

/// How often retention looks for log rows older than the window.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How the ledger keeps its shares.
#[derive(Debug, Clone, Copy)]
pub struct LedgerOptions {
    /// Share log rows are kept this long (the audit window), then pruned.
    pub retention: Duration,
    /// Share hashes the duplicate filter holds per chain tip, at most (16 bytes each).
    pub max_seen_per_tip: usize,
    /// How long epochs are.
    pub epochs: EpochSizing,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
            max_seen_per_tip: 8_000_000,
            epochs: EpochSizing::default(),
        }
    }
}

/// Work accrued to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAccrual {
    pub pending: Work,
    pub total: Work,
    pub shares: u64,
}

#[derive(Clone)]
pub struct AccrualLedger {
    db: Db,
    /// Shares, for group commits.
    queue: mpsc::Sender<Command>,
    /// Everything else the writer does (it goes first).
    control: mpsc::Sender<Command>,
    unit: Arc<str>,
    unit_work: UnitWork,
    /// Accrual rows batch creation has read since start (it reads only keys with new work).
    keys_examined: Arc<AtomicU64>,
    /// Pending work, open batches, commit latency: kept by the writer for `/metrics`.
    metrics: Arc<LedgerMetrics>,
    /// Where the ledger is (the quote feed connects to a PostgreSQL one).
    location: LedgerLocation,
}

impl AccrualLedger {
    /// Opens (creating if needed) the ledger at `location`, migrates it and starts its writer.
    /// `unit` and `unit_work` must be the values the ledger was written with (a new ledger, or
    /// one from before they were recorded, takes them).
    pub async fn open(
        location: impl Into<LedgerLocation>,
        unit: &str,
        unit_work: UnitWork,
    ) -> Result<Self, LedgerError> {
        Self::open_with(location, unit, unit_work, LedgerOptions::default()).await
    }

    /// [`AccrualLedger::open`] with a retention window and duplicate filter bound of choice.
    pub async fn open_with(
        location: impl Into<LedgerLocation>,
        unit: &str,
        unit_work: UnitWork,
        options: LedgerOptions,
    ) -> Result<Self, LedgerError> {
        Self::open_with_queue(&location.into(), unit, unit_work, options, QUEUE_CAPACITY).await
    }

    async fn open_with_queue(
        location: &LedgerLocation,
        unit: &str,
        unit_work: UnitWork,
        ledger_options: LedgerOptions,
        queue_capacity: usize,
    ) -> Result<Self, LedgerError> {
        // Writes go through one writer task; the rest are reads (the API, audits, metrics).
        let db = Db::connect(location, 4, false).await?;
        db.migrate().await?;
        check_unit(&db.pool, unit, unit_work).await?;
        let recent_legacy = match db.backend {
            Backend::Sqlite => legacy::convert(&db).await?,
            // A PostgreSQL ledger is new or moved from a converted SQLite one (`pool
            // migrate-ledger`): nothing from before the share log.
            Backend::Postgres => Vec::new(),
        };
        let mut book = Book::load(
            &mut *db.pool.acquire().await?,
            ledger_options.max_seen_per_tip,
            ledger_options.epochs,
        )
        .await?;
        for hash in &recent_legacy {
            book.seen.insert(0, hash);
        }
        let (queue, rx) = mpsc::channel(queue_capacity);
        let (control, control_rx) = mpsc::channel(CONTROL_CAPACITY);
        let keys_examined = Arc::new(AtomicU64::new(0));
        let metrics = Arc::new(LedgerMetrics::read(&db.pool).await?);
        tokio::spawn(writer(
            db.clone(),
            book,
            control_rx,
            rx,
            keys_examined.clone(),
            unit_work,
            metrics.clone(),
        ));
        tokio::spawn(prune_periodically(
            control.downgrade(),
            ledger_options.retention,
        ));
        Ok(Self {
            db,
            queue,
            control,
            unit: unit.into(),
            unit_work,
            keys_examined,
            metrics,
            location: location.clone(),
        })
    }

    /// The quotes other pool instances record on this ledger, as they are recorded (each
    /// instance announces the quotes it records; a key's miner may be on another). `None` on
    /// SQLite: one instance. Listening has started when this returns.
    pub async fn quotes_of_other_instances(
        &self,
    ) -> Result<Option<mpsc::Receiver<Batch>>, LedgerError> {
        let LedgerLocation::Postgres(url) = &self.location else {
            return Ok(None);
        };
        let listener = quote_feed::listen(url).await?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(quote_feed::follow(
            listener,
            self.db.pool.clone(),
            self.db.instance,
            tx,
        ));
        Ok(Some(rx))
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
        self.queue_shares(vec![share], Done::One(done)).await;
        receipt
    }

    /// [`AccrualLedger::record`] for several shares at once (a miner's burst of frames): one
    /// queue entry, and one answer with every share's outcome in order.
    pub async fn record_all(&self, shares: Vec<AcceptedShare>) -> Receipts {
        let (done, receipts) = oneshot::channel();
        self.queue_shares(shares, Done::Many(done)).await;
        receipts
    }

    async fn queue_shares(&self, shares: Vec<AcceptedShare>, done: Done) {
        let pending = Pending { shares, done };
        if let Err(mpsc::error::SendError(Command::Shares(p))) =
            self.queue.send(Command::Shares(pending)).await
        {
            let stopped = vec![Err(LedgerError::Stopped); p.shares.len()];
            p.done.send(stopped);
        }
    }

    /// What `key` has accrued.
    pub async fn accrual(&self, key: &LockingKey) -> Result<Option<KeyAccrual>, LedgerError> {
        let row = sqlx::query(
            "SELECT pending_work, total_work, share_count FROM accruals WHERE locking_key = $1",
        )
        .bind(key.as_bytes().as_slice())
        .fetch_optional(&self.db.pool)
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

    /// Sum of the work of every share of `key` the ledger still holds (the log within its
    /// retention window, and share rows from before the log): an independent check of the
    /// accrual totals. Reads the whole log: for audits and tests, not the share path.
    pub async fn share_work(&self, key: &LockingKey) -> Result<(Work, u64), LedgerError> {
        let mut conn = self.db.pool.acquire().await?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT key_id FROM accruals WHERE locking_key = $1")
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
        let mut total = Work::ZERO;
        let mut count = 0u64;
        let mut add = |w: Work| -> Result<(), LedgerError> {
            total = total.checked_add(w).ok_or(LedgerError::CorruptWork)?;
            count += 1;
            Ok(())
        };
        if let Some(id) = id.and_then(|i| u64::try_from(i).ok()) {
            let rows = sqlx::query("SELECT count, records FROM share_log ORDER BY first_seq")
                .fetch_all(&mut *conn)
                .await?;
            for r in rows {
                let n = usize::try_from(r.get::<i64, _>(0)).unwrap_or(0);
                for record in log::decode(&r.get::<Vec<u8>, _>(1), n)? {
                    if record.key_id == id {
                        add(record.work)?;
                    }
                }
            }
        }
        let legacy = sqlx::query("SELECT work FROM shares WHERE locking_key = $1")
            .bind(key.as_bytes().as_slice())
            .fetch_all(&mut *conn)
            .await?;
        for r in &legacy {
            add(work_from(r.get::<Vec<u8>, _>(0))?)?;
        }
        Ok((total, count))
    }

    /// Prunes log rows committed before `before_ms` (unix ms); returns what one pass removed.
    /// The ledger runs this itself every minute with its retention window.
    pub async fn prune(&self, before_ms: i64) -> Result<Pruned, LedgerError> {
        self.on_writer(|done| Command::Prune { before_ms, done })
            .await
    }

    /// Which backend the ledger is on.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Size of the ledger's database file (its pages; the write-ahead log is checkpointed
    /// into it first), bytes; on PostgreSQL, the database's size.
    pub async fn bytes_on_disk(&self) -> Result<u64, LedgerError> {
        if self.db.backend == Backend::Postgres {
            return self.live_bytes().await;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.db.pool)
            .await?;
        let bytes: i64 = sqlx::query_scalar(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
        )
        .fetch_one(&self.db.pool)
        .await?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// Bytes of the ledger's pages in use (the file minus its free pages, which SQLite reuses
    /// before it grows the file).
    pub async fn live_bytes(&self) -> Result<u64, LedgerError> {
        let sql = match self.db.backend {
            Backend::Sqlite => {
                "SELECT (page_count - freelist_count) * page_size \
                 FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
            }
            Backend::Postgres => "SELECT pg_database_size(current_database())",
        };
        let bytes: i64 = sqlx::query_scalar(sql).fetch_one(&self.db.pool).await?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}

/// Asks the writer to prune every [`PRUNE_EVERY`], again at once while a pass leaves more;
/// stops with the ledger (it holds no sender of its own).
async fn prune_periodically(queue: mpsc::WeakSender<Command>, retention: Duration) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let Some(queue) = queue.upgrade() else {
                return;
            };
            let (done, answer) = oneshot::channel();
            let before_ms = hashpool_role::unix_now_ms().saturating_sub(retention_ms);
            if queue
                .send(Command::Prune { before_ms, done })
                .await
                .is_err()
            {
                return;
            }
            drop(queue);
            match answer.await {
                Ok(Ok(p)) if p.more => continue,
                Ok(Ok(p)) => {
                    if p.rows > 0 {
                        tracing::info!(rows = p.rows, shares = p.shares, "share log pruned");
                    }
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!("share log retention: {e}");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

impl AccrualLedger {
    /// Runs `command` on the writer task and waits for its answer.
    async fn on_writer<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Command,
    ) -> Result<T, LedgerError> {
        let (done, answer) = oneshot::channel();
        self.control
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

    /// The found blocks whose standing can still change with the node's tip at `tip_height`
    /// (pending; orphaned within `maturity` blocks of the tip), oldest first.
    pub async fn blocks_to_follow(
        &self,
        tip_height: u32,
        maturity: u32,
    ) -> Result<Vec<TrackedBlock>, LedgerError> {
        found_blocks::to_follow(&self.db.pool, tip_height, maturity).await
    }

    /// Every found block, newest first, at most `limit`.
    pub async fn found_blocks(&self, limit: u32) -> Result<Vec<TrackedBlock>, LedgerError> {
        found_blocks::newest(&self.db.pool, limit).await
    }

    /// Records where a found block stands (through the writer); `true` when that changed.
    pub async fn set_block_status(
        &self,
        hash: bitcoin::BlockHash,
        status: BlockStatus,
        confirmations: i64,
    ) -> Result<bool, LedgerError> {
        self.on_writer(|done| Command::BlockStatus {
            hash,
            status,
            confirmations,
            done,
        })
        .await
    }

    /// Runs `write` on the writer (its queue order, the single SQLite writer).
    async fn write<T, F, Fut>(&self, write: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LedgerError>> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: writer::Job = Box::new(move |db| {
            Box::pin(async move {
                let _ = done.send(write(db).await);
            })
        });
        self.control
            .send(Command::Run(job))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        answer.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Adds the mint's withdrawals not held yet as queued payouts; returns how many were new.
    pub async fn record_withdrawals(
        &self,
        list: Vec<hashpool_settlement::withdrawals::Withdrawal>,
    ) -> Result<usize, LedgerError> {
        self.write(move |db| async move { payouts::record(&db, &list).await })
            .await
    }

    /// The payouts a template at `height` leaving `value` sats pays, at most `max`; each is
    /// offered at `height` (durably) before this returns.
    pub async fn offer_payouts(
        &self,
        height: u32,
        value: u64,
        max: usize,
    ) -> Result<Vec<PayoutRow>, LedgerError> {
        self.write(move |db| async move { payouts::offer(&db, height, value, max).await })
            .await
    }

    /// Settles the payouts offered at `height` by the chain's block there; returns (paid,
    /// queued again).
    pub async fn settle_offered_payouts(
        &self,
        height: u32,
        hash: bitcoin::BlockHash,
        coinbase: bitcoin::Transaction,
    ) -> Result<(usize, usize), LedgerError> {
        self.write(
            move |db| async move { payouts::settle_offered(&db, height, hash, &coinbase).await },
        )
        .await
    }

    /// The payouts of block `hash` mature, or (`matured` false: it left the best chain) are
    /// queued again. Returns how many changed.
    pub async fn settle_block_payouts(
        &self,
        hash: bitcoin::BlockHash,
        matured: bool,
    ) -> Result<usize, LedgerError> {
        self.write(move |db| async move { payouts::block_settled(&db, hash, matured).await })
            .await
    }

    /// Payouts in `states`, oldest first, at most `limit`.
    pub async fn payouts_in(
        &self,
        states: &[hashpool_settlement::withdrawals::PayoutState],
        limit: u32,
    ) -> Result<Vec<PayoutRow>, LedgerError> {
        payouts::in_states(&self.db.pool, states, limit).await
    }

    /// Every payout, newest first, at most `limit`.
    pub async fn payouts(&self, limit: u32) -> Result<Vec<PayoutRow>, LedgerError> {
        payouts::newest(&self.db.pool, limit).await
    }

    /// Payouts and their sats, by state.
    pub async fn payout_totals(
        &self,
    ) -> Result<Vec<(hashpool_settlement::withdrawals::PayoutState, u64, u64)>, LedgerError> {
        payouts::totals(&self.db.pool).await
    }

    /// The payout of withdrawal melt `quote_id`.
    pub async fn payout(&self, quote_id: &str) -> Result<Option<PayoutRow>, LedgerError> {
        payouts::one(&self.db.pool, quote_id).await
    }

    /// The network's work per block at a new tip (the pool tells the ledger at each one): the
    /// next epoch is sized from it, and the first epoch opens with it.
    pub async fn observe_network_work(&self, work: Work) -> Result<(), LedgerError> {
        self.control
            .send(Command::NetworkWork(work))
            .await
            .map_err(|_| LedgerError::Stopped)
    }

    /// Every epoch, oldest first.
    pub async fn epochs(&self) -> Result<Vec<LedgerEpoch>, LedgerError> {
        epochs::all(&self.db.pool).await
    }

    /// Epoch `index`'s quotes in quote id order; `None` when it has more than `limit`.
    pub async fn epoch_quotes(
        &self,
        index: u32,
        limit: u32,
    ) -> Result<Option<Vec<EpochQuote>>, LedgerError> {
        epochs::quotes_of(&self.db.pool, index, limit).await
    }

    /// The epoch of the batch quoted as `quote_id` (`None`: no such quote; `Some(None)`: from
    /// before the first epoch).
    pub async fn epoch_of_quote(&self, quote_id: &str) -> Result<Option<Option<u32>>, LedgerError> {
        epochs::epoch_of_quote(&self.db.pool, quote_id).await
    }

    /// Batches of epoch `index` the mint has neither answered nor refused.
    pub async fn epoch_unanswered(&self, index: u32) -> Result<u64, LedgerError> {
        epochs::unanswered(&self.db.pool, index).await
    }

    /// Ehash the mint quoted per epoch (`(epoch, amount)`), over answered batches.
    pub async fn quoted_per_epoch(&self) -> Result<Vec<(u32, u64)>, LedgerError> {
        epochs::quoted(&self.db.pool).await
    }
}
