//! The accrual ledger: every accepted share, and the work it accrued to its locking key, in
//! SQLite. A share is acknowledged to its miner only after the transaction holding it has
//! committed, so a pool killed right after an acknowledgement still pays that share. Every
//! write goes through one task: queued shares are committed in a single transaction (group
//! commit, one fsync per group), and batch creation and quote answers run between groups. With
//! one writer, SQLite's write lock is never contended (a contended lock means busy-wait sleeps
//! and starved writers, measured as seconds of quote latency under share load).

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    str::FromStr,
    time::Duration,
};

use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    QueryBuilder, Row, Sqlite, SqlitePool,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

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
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        LedgerError::Database(e.to_string())
    }
}

/// Resolves once the share is durable: `Ok(true)` credited, `Ok(false)` already in the ledger
/// (a replay: not credited twice).
pub type Receipt = oneshot::Receiver<Result<bool, LedgerError>>;

struct Pending {
    share: AcceptedShare,
    done: oneshot::Sender<Result<bool, LedgerError>>,
}

/// What the writer task does, in queue order.
enum Command {
    Share(Pending),
    CreateBatches {
        unit: hashpool_ehash::UnitWork,
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
        done: oneshot::Sender<Result<(), LedgerError>>,
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
}

impl AccrualLedger {
    /// Opens (creating if needed) the ledger at `path`, migrates it and starts its writer.
    pub async fn open(path: &Path) -> Result<Self, LedgerError> {
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
        let (queue, rx) = mpsc::channel(MAX_GROUP * 4);
        tokio::spawn(writer(db.clone(), rx));
        Ok(Self { db, queue })
    }

    /// Queues `share` for the next group commit.
    pub fn record(&self, share: AcceptedShare) -> Receipt {
        let (done, receipt) = oneshot::channel();
        if let Err(e) = self.queue.try_send(Command::Share(Pending { share, done })) {
            let pending = match e {
                mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
            };
            // Full: wait for room on a task of its own, keeping the caller synchronous.
            let queue = self.queue.clone();
            tokio::spawn(async move {
                if let Err(mpsc::error::SendError(Command::Share(p))) = queue.send(pending).await {
                    let _ = p.done.send(Err(LedgerError::Stopped));
                }
            });
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

fn work_bytes(w: Work) -> Vec<u8> {
    w.hashes().to_le_bytes().to_vec()
}

fn work_from(bytes: Vec<u8>) -> Result<Work, LedgerError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| LedgerError::CorruptWork)?;
    Ok(Work::from_hashes(u128::from_le_bytes(array)))
}

async fn writer(db: SqlitePool, mut rx: mpsc::Receiver<Command>) {
    let mut next: Option<Command> = None;
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
                commit_group(&db, group).await;
            }
            Command::CreateBatches { unit, done } => {
                let _ = done.send(batches::create(&db, unit).await);
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
                let _ = done.send(batches::record_refusal(&db, &request_id, &code).await);
            }
        }
    }
}

async fn commit_group(db: &SqlitePool, group: Vec<Pending>) {
    let shares: Vec<&AcceptedShare> = group.iter().map(|p| &p.share).collect();
    match write_group(db, &shares).await {
        Ok(credited) => {
            debug!(shares = group.len(), "ledger group committed");
            for (p, c) in group.into_iter().zip(credited) {
                let _ = p.done.send(Ok(c));
            }
        }
        Err(e) => {
            error!(
                "ledger write failed; {} share(s) not acknowledged: {e}",
                group.len()
            );
            for p in group {
                let _ = p.done.send(Err(e.clone()));
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
        self.queue
            .send(command(done))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        answer.await.map_err(|_| LedgerError::Stopped)?
    }

    /// Takes every key's whole units of ehash out of its pending work into a new batch (one
    /// per key), in one transaction. The remainder stays pending for the next batch.
    pub async fn create_batches(
        &self,
        unit: hashpool_ehash::UnitWork,
    ) -> Result<Vec<Batch>, LedgerError> {
        self.on_writer(|done| Command::CreateBatches { unit, done })
            .await
    }

    /// Records the mint's quote for a request. Returns the batch if this answer is new (a
    /// repeated answer to a resent request changes nothing and returns `None`).
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

    /// The mint refused a request for good (a retry cannot succeed).
    pub async fn record_refusal(
        &self,
        request_id: &[u8; 32],
        code: &str,
    ) -> Result<(), LedgerError> {
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

async fn write_group(db: &SqlitePool, shares: &[&AcceptedShare]) -> Result<Vec<bool>, LedgerError> {
    let mut conn = begin_immediate(db).await?;
    let result = write_group_in(&mut conn, shares).await;
    finish(conn, result).await
}

async fn write_group_in(
    tx: &mut sqlx::SqliteConnection,
    shares: &[&AcceptedShare],
) -> Result<Vec<bool>, LedgerError> {
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
    let credited: Vec<bool> = shares.iter().map(|s| known.insert(s.share_hash)).collect();
    let fresh: Vec<&&AcceptedShare> = shares
        .iter()
        .zip(&credited)
        .filter_map(|(s, c)| c.then_some(s))
        .collect();
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
    let mut per_key: HashMap<LockingKey, (Work, u64)> = HashMap::new();
    for s in &fresh {
        let entry = per_key.entry(s.locking_key).or_insert((Work::ZERO, 0));
        entry.0 = entry
            .0
            .checked_add(s.work)
            .ok_or(LedgerError::CorruptWork)?;
        entry.1 += 1;
    }
    for (key, (work, count)) in per_key {
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
        let overflow = || LedgerError::Database("accrued work overflows 128 bits".into());
        sqlx::query(
            "INSERT INTO accruals (locking_key, pending_work, total_work, share_count) \
             VALUES (?, ?, ?, ?) \
             ON CONFLICT (locking_key) DO UPDATE SET pending_work = excluded.pending_work, \
             total_work = excluded.total_work, share_count = excluded.share_count",
        )
        .bind(key.as_bytes().as_slice())
        .bind(work_bytes(pending.checked_add(work).ok_or_else(overflow)?))
        .bind(work_bytes(total.checked_add(work).ok_or_else(overflow)?))
        .bind(shares + count as i64)
        .execute(&mut *tx)
        .await?;
    }
    Ok(credited)
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

    #[tokio::test]
    async fn accruals_survive_reopening_and_match_share_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let ledger = AccrualLedger::open(&path).await.unwrap();
        let receipts: Vec<_> = (0..1000u32)
            .map(|i| ledger.record(share(i, (i % 3) as u8 + 1, 1_000 + i as u128)))
            .collect();
        for r in receipts {
            assert_eq!(r.await.unwrap(), Ok(true));
        }
        drop(ledger);
        let ledger = AccrualLedger::open(&path).await.unwrap();
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
        let ledger = AccrualLedger::open(&dir.path().join("l.sqlite"))
            .await
            .unwrap();
        assert_eq!(ledger.record(share(7, 1, 500)).await.unwrap(), Ok(true));
        assert_eq!(ledger.record(share(7, 1, 500)).await.unwrap(), Ok(false));
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.total.hashes(), 500);
        assert_eq!(a.shares, 1);
    }

    #[tokio::test]
    async fn batches_take_whole_units_and_carry_the_remainder() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = AccrualLedger::open(&dir.path().join("l.sqlite"))
            .await
            .unwrap();
        let unit = hashpool_ehash::UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        for i in 0..10u32 {
            ledger.record(share(i, 1, 350)).await.unwrap().unwrap();
        }
        ledger.record(share(100, 2, 999)).await.unwrap().unwrap();
        let batches = ledger.create_batches(unit).await.unwrap();
        // Key 1: 3,500 of work -> 3 ehash, 500 carried; key 2: 999 -> nothing yet.
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].locking_key, key(1));
        assert_eq!(batches[0].amount, 3);
        assert_eq!(batches[0].share_count, 10);
        let a = ledger.accrual(&key(1)).await.unwrap().unwrap();
        assert_eq!(a.pending.hashes(), 500);
        assert_eq!(a.total.hashes(), 3_500);
        // Nothing new: no second batch; the open one is waiting for the mint.
        assert!(ledger.create_batches(unit).await.unwrap().is_empty());
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
        // More work tops the carried remainder up past a unit.
        for i in 10..12u32 {
            ledger.record(share(i, 1, 250)).await.unwrap().unwrap();
        }
        let next = ledger.create_batches(unit).await.unwrap();
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

    #[tokio::test]
    async fn an_unwritable_ledger_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = AccrualLedger::open(&file.join("ledger.sqlite"))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
