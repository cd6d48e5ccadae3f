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

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
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
    QueryBuilder, Row, Sqlite, SqlitePool,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::accepted_share::AcceptedShare;

mod batches;
pub use batches::Batch;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shares written in one transaction at most.
const MAX_GROUP: usize = 4096;
/// Commands waiting for the writer at most; `record` waits for room beyond that.
const QUEUE_CAPACITY: usize = MAX_GROUP * 4;
/// Rows per multi-row statement (6 parameters each, well under SQLite's limit of 32,766).
const ROWS_PER_STATEMENT: usize = 500;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Database(String),
    #[error("the ledger writer has stopped")]
    Stopped,
    #[error("stored work value is corrupt")]
    CorruptWork,
    /// This share alone is refused; the rest of its group is credited.
    #[error(
        "share refused: its work ({work} hashes) would overflow the 128-bit work accrued to \
         locking key {key}"
    )]
    AccrualOverflow { key: String, work: u128 },
    #[error(
        "the ledger was written with unit `{stored_unit}` and unit_work {}, but the \
         configuration says unit `{configured_unit}` and unit_work {}; opening it would reprice \
         every key's pending work. Either set `ehash.unit` and `ehash.unit_work` in the shared \
         config back to the stored values, or migrate: run the pool with the stored values until \
         every batch is answered by the mint (work below one unit per key stays pending in this \
         file), then start it with the new values and a new `pool.ledger_path`, keeping this \
         file",
        describe_unit_work(*stored_unit_work),
        describe_unit_work(*configured_unit_work)
    )]
    UnitMismatch {
        stored_unit: String,
        /// Hashes per unit.
        stored_unit_work: u128,
        configured_unit: String,
        configured_unit_work: u128,
    },
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Database(e.to_string())
    }
}

/// Exact, and in the config's terms (difficulty-1 shares, rounded: the hashes are exact).
fn describe_unit_work(hashes: u128) -> String {
    format!(
        "{hashes} hashes (about {:.4e} difficulty-1 shares)",
        Work::from_hashes(hashes).as_difficulty()
    )
}

/// Resolves once the share is durable: `Ok(true)` credited, `Ok(false)` already in the ledger
/// (a replay: not credited twice), `Err(AccrualOverflow)` refused, not stored.
pub type Receipt = oneshot::Receiver<Result<bool, LedgerError>>;

struct Pending {
    share: AcceptedShare,
    done: oneshot::Sender<Result<bool, LedgerError>>,
}

/// What the writer task does, in queue order.
enum Command {
    Share(Pending),
    CreateBatches {
        unit: UnitWork,
        done: oneshot::Sender<Result<Vec<Batch>, LedgerError>>,
    },
    RecordQuote {
        request_id: [u8; 32],
        quote_id: String,
        done: oneshot::Sender<Result<Option<Batch>, LedgerError>>,
    },
    RecordRefusal {
        request_id: [u8; 32],
        code: String,
        done: oneshot::Sender<Result<Option<Batch>, LedgerError>>,
    },
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
    db: SqlitePool,
    queue: mpsc::Sender<Command>,
    unit: Arc<str>,
    unit_work: UnitWork,
    /// Accrual rows batch creation has read since start (it reads only keys with new work).
    keys_examined: Arc<AtomicU64>,
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
        tokio::spawn(writer(db.clone(), rx, keys_examined.clone()));
        Ok(Self {
            db,
            queue,
            unit: unit.into(),
            unit_work,
            keys_examined,
        })
    }

    /// How many keys' accruals batch creation has read since the ledger was opened.
    pub fn keys_examined(&self) -> u64 {
        self.keys_examined.load(Ordering::Relaxed)
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

/// Records `unit` and `unit_work` in a ledger that has none yet, else checks them against the
/// recorded ones.
async fn check_unit(db: &SqlitePool, unit: &str, unit_work: UnitWork) -> Result<(), LedgerError> {
    // One statement: two pools opening the same new file cannot both record different values.
    let recorded = sqlx::query(
        "INSERT INTO ledger_meta (id, unit, unit_work, recorded_at) VALUES (1, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(unit)
    .bind(work_bytes(unit_work.work()))
    .bind(now_millis())
    .execute(db)
    .await?
    .rows_affected();
    if recorded > 0 {
        info!(
            unit,
            unit_work = %describe_unit_work(unit_work.work().hashes()),
            "the ledger records its unit and unit work"
        );
        return Ok(());
    }
    let row = sqlx::query("SELECT unit, unit_work FROM ledger_meta WHERE id = 1")
        .fetch_one(db)
        .await?;
    let stored_unit: String = row.get(0);
    let stored_work = work_from(row.get::<Vec<u8>, _>(1))?;
    if stored_unit != unit || stored_work != unit_work.work() {
        return Err(LedgerError::UnitMismatch {
            stored_unit,
            stored_unit_work: stored_work.hashes(),
            configured_unit: unit.to_string(),
            configured_unit_work: unit_work.work().hashes(),
        });
    }
    Ok(())
}

fn work_bytes(w: Work) -> Vec<u8> {
    w.hashes().to_le_bytes().to_vec()
}

fn work_from(bytes: Vec<u8>) -> Result<Work, LedgerError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| LedgerError::CorruptWork)?;
    Ok(Work::from_hashes(u128::from_le_bytes(array)))
}

async fn writer(db: SqlitePool, mut rx: mpsc::Receiver<Command>, examined: Arc<AtomicU64>) {
    let mut next: Option<Command> = None;
    // Keys whose pending work changed since the last batch creation: only they can have a
    // whole unit to issue. `None` until the first creation, which looks at every key (work
    // left from before a restart). Without this, one share under each of a million fresh
    // keys would make every batch tick read a million rows.
    let mut dirty: Option<HashSet<LockingKey>> = None;
    loop {
        let command = match next.take() {
            Some(c) => c,
            None => match rx.recv().await {
                Some(c) => c,
                None => return,
            },
        };
        match command {
            Command::Share(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Command::Share(p)) => group.push(p),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let credited = commit_group(&db, group).await;
                if let Some(keys) = dirty.as_mut() {
                    keys.extend(credited);
                }
            }
            Command::CreateBatches { unit, done } => {
                let result = batches::create(&db, unit, dirty.as_ref(), &examined).await;
                if result.is_ok() {
                    dirty = Some(HashSet::new());
                }
                let _ = done.send(result);
            }
            Command::RecordQuote {
                request_id,
                quote_id,
                done,
            } => {
                let _ = done.send(batches::record_quote(&db, &request_id, &quote_id).await);
            }
            Command::RecordRefusal {
                request_id,
                code,
                done,
            } => {
                let result = batches::record_refusal(&db, &request_id, &code).await;
                // The returned work is pending again: the next creation must look at its key.
                if let (Ok(Some(batch)), Some(keys)) = (&result, dirty.as_mut()) {
                    keys.insert(batch.locking_key);
                }
                let _ = done.send(result);
            }
        }
    }
}

/// Commits a group; returns the keys whose shares were credited.
async fn commit_group(db: &SqlitePool, group: Vec<Pending>) -> Vec<LockingKey> {
    let shares: Vec<&AcceptedShare> = group.iter().map(|p| &p.share).collect();
    match write_group(db, &shares).await {
        Ok(outcomes) => {
            debug!(shares = group.len(), "ledger group committed");
            let mut credited = Vec::new();
            for (p, outcome) in group.into_iter().zip(outcomes) {
                if outcome == Ok(true) {
                    credited.push(p.share.locking_key);
                }
                let _ = p.done.send(outcome);
            }
            credited
        }
        Err(e) => {
            error!(
                "ledger write failed; {} share(s) not acknowledged: {e}",
                group.len()
            );
            for p in group {
                let _ = p.done.send(Err(e.clone()));
            }
            Vec::new()
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

/// Starts a transaction holding the write lock from its first statement. A deferred
/// transaction that reads before it writes fails to upgrade (SQLITE_BUSY, no retry) when
/// another writer committed in between; an immediate one waits for the lock instead.
async fn begin_immediate(
    db: &SqlitePool,
) -> Result<sqlx::pool::PoolConnection<Sqlite>, LedgerError> {
    let mut conn = db.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    Ok(conn)
}

/// Commits on success, rolls back on error.
async fn finish<T>(
    mut conn: sqlx::pool::PoolConnection<Sqlite>,
    result: Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    match result {
        Ok(v) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Per share, in order: credited, a replay, or refused alone. The `Err` of the whole is a
/// database failure (nothing of the group was written).
type GroupOutcome = Vec<Result<bool, LedgerError>>;

async fn write_group(
    db: &SqlitePool,
    shares: &[&AcceptedShare],
) -> Result<GroupOutcome, LedgerError> {
    let mut conn = begin_immediate(db).await?;
    let result = write_group_in(&mut conn, shares).await;
    finish(conn, result).await
}

/// A key's accrual while a group is applied to it.
struct Running {
    pending: Work,
    total: Work,
    shares: i64,
    changed: bool,
}

async fn load_accrual(
    tx: &mut sqlx::SqliteConnection,
    key: &LockingKey,
) -> Result<Running, LedgerError> {
    let row = sqlx::query(
        "SELECT pending_work, total_work, share_count FROM accruals WHERE locking_key = ?",
    )
    .bind(key.as_bytes().as_slice())
    .fetch_optional(&mut *tx)
    .await?;
    let (pending, total, shares) = match row {
        Some(r) => (
            work_from(r.get::<Vec<u8>, _>(0))?,
            work_from(r.get::<Vec<u8>, _>(1))?,
            r.get::<i64, _>(2),
        ),
        None => (Work::ZERO, Work::ZERO, 0),
    };
    Ok(Running {
        pending,
        total,
        shares,
        changed: false,
    })
}

async fn write_group_in(
    tx: &mut sqlx::SqliteConnection,
    shares: &[&AcceptedShare],
) -> Result<GroupOutcome, LedgerError> {
    let now = now_millis();
    // Hashes already in the ledger (a replay) or twice in this group are not credited again.
    let mut known: HashSet<[u8; 32]> = HashSet::new();
    for chunk in shares.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT share_hash FROM shares WHERE share_hash IN ");
        q.push_tuples(chunk, |mut b, s| {
            b.push_bind(s.share_hash.to_vec());
        });
        for row in q.build().fetch_all(&mut *tx).await? {
            if let Ok(h) = <[u8; 32]>::try_from(row.get::<Vec<u8>, _>(0)) {
                known.insert(h);
            }
        }
    }
    // Each share is checked against its key's accrual as it stands after the shares before it,
    // so a share that would overflow is refused alone and the rest of the group commits.
    let mut accruals: HashMap<LockingKey, Running> = HashMap::new();
    let mut outcomes = Vec::with_capacity(shares.len());
    let mut fresh: Vec<&AcceptedShare> = Vec::with_capacity(shares.len());
    for s in shares {
        if known.contains(&s.share_hash) {
            outcomes.push(Ok(false));
            continue;
        }
        let accrual = match accruals.entry(s.locking_key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(load_accrual(&mut *tx, &s.locking_key).await?),
        };
        match (
            accrual.pending.checked_add(s.work),
            accrual.total.checked_add(s.work),
        ) {
            (Some(pending), Some(total)) => {
                accrual.pending = pending;
                accrual.total = total;
                accrual.shares += 1;
                accrual.changed = true;
                known.insert(s.share_hash);
                fresh.push(s);
                outcomes.push(Ok(true));
            }
            _ => {
                warn!(
                    key = %s.locking_key,
                    channel_id = s.channel_id,
                    work = s.work.hashes(),
                    "share refused: its work would overflow its key's accrual"
                );
                outcomes.push(Err(LedgerError::AccrualOverflow {
                    key: s.locking_key.to_hex(),
                    work: s.work.hashes(),
                }));
            }
        }
    }
    // Many rows per statement: each statement is a round trip to SQLite's worker thread.
    for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO shares (share_hash, locking_key, channel_id, work, block_found, accepted_at) ",
        );
        q.push_values(chunk, |mut b, s| {
            b.push_bind(s.share_hash.to_vec())
                .push_bind(s.locking_key.as_bytes().to_vec())
                .push_bind(s.channel_id as i64)
                .push_bind(work_bytes(s.work))
                .push_bind(s.block_found)
                .push_bind(now);
        });
        q.build().execute(&mut *tx).await?;
    }
    for (key, a) in accruals.iter().filter(|(_, a)| a.changed) {
        sqlx::query(
            "INSERT INTO accruals (locking_key, pending_work, total_work, share_count) \
             VALUES (?, ?, ?, ?) \
             ON CONFLICT (locking_key) DO UPDATE SET pending_work = excluded.pending_work, \
             total_work = excluded.total_work, share_count = excluded.share_count",
        )
        .bind(key.as_bytes().as_slice())
        .bind(work_bytes(a.pending))
        .bind(work_bytes(a.total))
        .bind(a.shares)
        .execute(&mut *tx)
        .await?;
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> LockingKey {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
        LockingKey::from_slice(
            &bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize(),
        )
        .unwrap()
    }

    fn share(n: u32, k: u8, work: u128) -> AcceptedShare {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&n.to_le_bytes());
        AcceptedShare {
            channel_id: 1,
            locking_key: key(k),
            share_hash: hash,
            work: Work::from_hashes(work),
            block_found: false,
        }
    }

    /// 1,000 hashes per ehash.
    fn unit() -> UnitWork {
        UnitWork::from_work(Work::from_hashes(1_000)).unwrap()
    }

    async fn open(path: &Path) -> AccrualLedger {
        AccrualLedger::open(path, "hash", unit()).await.unwrap()
    }

    #[tokio::test]
    async fn accruals_survive_reopening_and_match_share_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = open(&path).await;
        let mut receipts = Vec::new();
        for i in 0..1000u32 {
            receipts.push(
                ledger
                    .record(share(i, (i % 3) as u8 + 1, 1_000 + i as u128))
                    .await,
            );
        }
        for r in receipts {
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        drop(ledger);
        let ledger = open(&path).await;
        let mut all = 0u128;
        for k in 1..=3u8 {
            let a = ledger.accrual(&key(k)).await.unwrap().unwrap();
            let (rows, count) = ledger.share_work(&key(k)).await.unwrap();
            assert_eq!(a.total, rows);
            assert_eq!(a.pending, rows);
            assert_eq!(a.shares, count);
            all += a.total.hashes();
        }
        assert_eq!(all, (0..1000u128).map(|i| 1_000 + i).sum::<u128>());
        assert!(ledger.accrual(&key(9)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_replayed_share_is_not_credited_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir.path().join("l.sqlite")).await;
        assert_eq!(
            ledger.record(share(7, 1, 500)).await.await.unwrap(),
            Ok(true)
        );
        assert_eq!(
            ledger.record(share(7, 1, 500)).await.await.unwrap(),
            Ok(false)
        );
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.total.hashes(), 500);
        assert_eq!(a.shares, 1);
    }

    /// Holds SQLite's write lock on a connection of its own, so the writer cannot commit.
    async fn block_writer(ledger: &AccrualLedger) -> sqlx::pool::PoolConnection<Sqlite> {
        let mut lock = ledger.db.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *lock)
            .await
            .unwrap();
        lock
    }

    #[tokio::test]
    async fn record_waits_for_room_when_the_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            AccrualLedger::open_with_queue(&dir.path().join("l.sqlite"), "hash", unit(), 2)
                .await
                .unwrap();
        let mut lock = block_writer(&ledger).await;
        let mut receipts = Vec::new();
        let mut waiting = None;
        for i in 0..50u32 {
            let mut record = Box::pin(ledger.record(share(i, 1, 100)));
            match tokio::time::timeout(Duration::from_millis(200), &mut record).await {
                Ok(receipt) => receipts.push(receipt),
                Err(_) => {
                    waiting = Some(record);
                    break;
                }
            }
        }
        let waiting = waiting.expect("record returned with the queue full");
        // The blocked writer holds one group (at most the queue's 2) and the queue 2 more.
        assert!(receipts.len() <= 4, "{} shares queued", receipts.len());
        sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
        drop(lock);
        // Room again: the waiting share is queued and everything commits.
        receipts.push(waiting.await);
        let queued = receipts.len() as u64;
        for r in receipts {
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.shares, queued);
        assert_eq!(a.total.hashes(), 100 * queued as u128);
    }

    #[test]
    fn a_share_recorded_after_the_writer_stopped_resolves_to_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let first = runtime();
        let ledger = first.block_on(open(&dir.path().join("l.sqlite")));
        // The writer task ends with the runtime it runs on.
        drop(first);
        let outcome =
            runtime().block_on(async move { ledger.record(share(1, 1, 100)).await.await });
        assert_eq!(outcome, Ok(Err(LedgerError::Stopped)));
    }

    #[tokio::test]
    async fn an_overflowing_share_is_refused_alone_and_the_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir.path().join("l.sqlite")).await;
        assert_eq!(
            ledger.record(share(1, 1, 1_000)).await.await.unwrap(),
            Ok(true)
        );
        // One group: honest A, A's overflow, honest B, honest A again.
        let group = [
            share(2, 1, 500),
            share(3, 1, u128::MAX - 1_000),
            share(4, 2, 700),
            share(5, 1, 250),
        ];
        let mut receipts = Vec::new();
        let pending: Vec<Pending> = group
            .iter()
            .map(|s| {
                let (done, receipt) = oneshot::channel();
                receipts.push(receipt);
                Pending { share: *s, done }
            })
            .collect();
        commit_group(&ledger.db, pending).await;
        let mut outcomes = Vec::new();
        for r in receipts {
            outcomes.push(r.await.unwrap());
        }
        assert_eq!(outcomes[0], Ok(true));
        assert_eq!(
            outcomes[1],
            Err(LedgerError::AccrualOverflow {
                key: key(1).to_hex(),
                work: u128::MAX - 1_000
            })
        );
        let message = outcomes[1].clone().unwrap_err().to_string();
        assert!(
            message.contains("overflow") && message.contains(&key(1).to_hex()),
            "{message}"
        );
        assert_eq!(outcomes[2], Ok(true));
        assert_eq!(outcomes[3], Ok(true));
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(
            (a.total.hashes(), a.pending.hashes(), a.shares),
            (1_750, 1_750, 3)
        );
        assert_eq!(ledger.share_work(&key(1)).await.unwrap(), (a.total, 3));
        let b = ledger.accrual(&key(2)).await.unwrap().unwrap();
        assert_eq!(
            (b.total.hashes(), b.pending.hashes(), b.shares),
            (700, 700, 1)
        );
        // The refused share was not stored: sent again, it is refused again, not a replay.
        assert!(matches!(
            ledger
                .record(share(3, 1, u128::MAX - 1_000))
                .await
                .await
                .unwrap(),
            Err(LedgerError::AccrualOverflow { .. })
        ));
    }

    #[tokio::test]
    async fn batches_take_whole_units_and_carry_the_remainder() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir.path().join("l.sqlite")).await;
        for i in 0..10u32 {
            ledger
                .record(share(i, 1, 350))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        ledger
            .record(share(100, 2, 999))
            .await
            .await
            .unwrap()
            .unwrap();
        let batches = ledger.create_batches().await.unwrap();
        // Key 1: 3,500 of work -> 3 ehash, 500 carried; key 2: 999 -> nothing yet.
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].locking_key, key(1));
        assert_eq!(batches[0].amount, 3);
        assert_eq!(batches[0].share_count, 10);
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.pending.hashes(), 500);
        assert_eq!(a.total.hashes(), 3_500);
        // Nothing new: no second batch; the open one is waiting for the mint.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.open_batches().await.unwrap(), batches);
        // The mint answers; a repeated answer changes nothing.
        let answered = ledger
            .record_quote(&batches[0].request_id, "q1")
            .await
            .unwrap();
        assert_eq!(answered.unwrap().quote_id.as_deref(), Some("q1"));
        assert!(ledger
            .record_quote(&batches[0].request_id, "q2")
            .await
            .unwrap()
            .is_none());
        assert!(ledger.open_batches().await.unwrap().is_empty());
        // A refusal after the answer changes nothing either: the quote was issued.
        assert!(ledger
            .record_refusal(&batches[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            500
        );
        // More work tops the carried remainder up past a unit.
        for i in 10..12u32 {
            ledger
                .record(share(i, 1, 250))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        let next = ledger.create_batches().await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].amount, 1);
        assert_eq!(next[0].share_count, 2);
        assert_ne!(next[0].request_id, batches[0].request_id);
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            0
        );
    }

    /// Ehash of the batches of `k` not refused (issued or waiting for the mint).
    async fn issued(ledger: &AccrualLedger, k: u8) -> u64 {
        ledger
            .batches_of(&key(k))
            .await
            .unwrap()
            .iter()
            .filter(|b| b.refused_code.is_none())
            .map(|b| b.amount)
            .sum()
    }

    #[tokio::test]
    async fn a_refused_batch_returns_its_work_to_pending_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let ledger = open(&path).await;
        for i in 0..10u32 {
            ledger
                .record(share(i, 1, 350))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        let first = ledger.create_batches().await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].amount, 3);
        let refused = ledger
            .record_refusal(&first[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .expect("a new refusal");
        assert_eq!(refused.request_id, first[0].request_id);
        assert_eq!(refused.amount, 3);
        assert_eq!(refused.refused_code.as_deref(), Some("amount-out-of-range"));
        // All of it is pending again: the 3,000 taken plus the 500 carried.
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!((a.pending.hashes(), a.total.hashes()), (3_500, 3_500));
        assert!(ledger.open_batches().await.unwrap().is_empty());
        // Refused again (a resent request), answered late, or unknown: nothing changes.
        assert!(ledger
            .record_refusal(&first[0].request_id, "amount-out-of-range")
            .await
            .unwrap()
            .is_none());
        assert!(ledger
            .record_quote(&first[0].request_id, "late")
            .await
            .unwrap()
            .is_none());
        assert!(ledger
            .record_refusal(&[9; 32], "unit-mismatch")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .pending
                .hashes(),
            3_500
        );
        assert_eq!(issued(&ledger, 1).await, 0);
        // The next batch asks for it again, with its shares, under a new request id.
        ledger
            .record(share(10, 1, 600))
            .await
            .await
            .unwrap()
            .unwrap();
        let second = ledger.create_batches().await.unwrap();
        assert_eq!(second.len(), 1);
        assert_ne!(second[0].request_id, first[0].request_id);
        assert_eq!(second[0].amount, 4);
        assert_eq!(second[0].share_count, 11);
        drop(ledger);
        // Durable: reopened, the refusal and the new batch are there, and the ehash issued
        // plus the work pending is all the work.
        let ledger = open(&path).await;
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.pending.hashes(), 100);
        assert_eq!(issued(&ledger, 1).await, 4);
        assert_eq!(
            issued(&ledger, 1).await as u128 * unit().work().hashes() + a.pending.hashes(),
            a.total.hashes()
        );
        assert_eq!(a.total, ledger.share_work(&key(1)).await.unwrap().0);
        let all = ledger.batches_of(&key(1)).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].refused_code.as_deref(), Some("amount-out-of-range"));
        assert_eq!(ledger.open_batches().await.unwrap(), second);
    }

    #[tokio::test]
    async fn the_ledger_opens_only_with_the_unit_and_unit_work_it_was_written_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let ledger = open(&path).await;
        ledger
            .record(share(1, 1, 500))
            .await
            .await
            .unwrap()
            .unwrap();
        drop(ledger);
        // Same values: fine.
        let ledger = open(&path).await;
        assert_eq!(ledger.unit(), "hash");
        assert_eq!(ledger.unit_work(), unit());
        drop(ledger);
        let other = UnitWork::from_work(Work::from_hashes(2_000)).unwrap();
        let err = AccrualLedger::open(&path, "hash", other)
            .await
            .err()
            .expect("another unit_work is refused");
        assert_eq!(
            err,
            LedgerError::UnitMismatch {
                stored_unit: "hash".into(),
                stored_unit_work: 1_000,
                configured_unit: "hash".into(),
                configured_unit_work: 2_000,
            }
        );
        let message = err.to_string();
        for part in [
            "1000 hashes",
            "2000 hashes",
            "ehash.unit_work",
            "pool.ledger_path",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
        let err = AccrualLedger::open(&path, "sat", unit())
            .await
            .err()
            .expect("another unit is refused");
        let message = err.to_string();
        assert!(
            message.contains("unit `hash`") && message.contains("unit `sat`"),
            "{message}"
        );
        // A refused open changed nothing.
        let ledger = open(&path).await;
        assert_eq!(
            ledger
                .accrual(&key(1))
                .await
                .unwrap()
                .unwrap()
                .total
                .hashes(),
            500
        );
    }

    #[tokio::test]
    async fn a_ledger_from_before_the_unit_was_recorded_adopts_the_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            // The schema of the version before `ledger_meta`, with an accrual in it.
            let options = SqliteConnectOptions::from_str("sqlite://")
                .unwrap()
                .filename(&path)
                .create_if_missing(true);
            let db = SqlitePool::connect_with(options).await.unwrap();
            let mut old = sqlx::migrate!("./migrations");
            old.migrations = old
                .migrations
                .iter()
                .filter(|m| m.version < 3)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            old.run(&db).await.unwrap();
            sqlx::query("INSERT INTO accruals VALUES (?, ?, ?, 1)")
                .bind(key(1).as_bytes().as_slice())
                .bind(work_bytes(Work::from_hashes(4_000)))
                .bind(work_bytes(Work::from_hashes(4_000)))
                .execute(&db)
                .await
                .unwrap();
            db.close().await;
        }
        let other = UnitWork::from_work(Work::from_hashes(2_000)).unwrap();
        let ledger = AccrualLedger::open(&path, "hash", other).await.unwrap();
        assert_eq!(ledger.create_batches().await.unwrap()[0].amount, 2);
        drop(ledger);
        // From now on the adopted values are the ledger's.
        assert!(matches!(
            AccrualLedger::open(&path, "hash", unit()).await,
            Err(LedgerError::UnitMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn an_unwritable_ledger_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = AccrualLedger::open(&file.join("ledger.sqlite"), "hash", unit())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[tokio::test]
    async fn batch_creation_reads_only_keys_with_new_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sqlite");
        let unit = hashpool_ehash::UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        let ledger = AccrualLedger::open(&path, "hash", unit).await.unwrap();
        // Many keys with less than a unit each (one share each under fresh keys).
        for k in 1..=200u8 {
            ledger
                .record(share(k as u32, k, 10))
                .await
                .await
                .unwrap()
                .unwrap();
        }
        // The first creation after start reads every key.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
        // Nothing new: nothing read.
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
        // New work for one key: that key alone, and its unit is issued.
        ledger
            .record(share(1_000, 7, 995))
            .await
            .await
            .unwrap()
            .unwrap();
        let batches = ledger.create_batches().await.unwrap();
        assert_eq!(ledger.keys_examined(), 201);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].locking_key, key(7));
        assert_eq!(batches[0].amount, 1);
        // A refusal puts that key back among those to read, and its work is issued again.
        ledger
            .record_refusal(&batches[0].request_id, "amount-out-of-range")
            .await
            .unwrap();
        let again = ledger.create_batches().await.unwrap();
        assert_eq!(ledger.keys_examined(), 202);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].amount, 1);
        // After a restart every key is read once more (work left from before it).
        drop(ledger);
        let ledger = AccrualLedger::open(&path, "hash", unit).await.unwrap();
        assert!(ledger.create_batches().await.unwrap().is_empty());
        assert_eq!(ledger.keys_examined(), 200);
    }
}
