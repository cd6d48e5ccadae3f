//! The writer's copy of every key's accrual, in memory, so a group commit reads nothing: it
//! computes each changed key's new row and writes it. The copy changes only after the
//! transaction that wrote it committed. Where other pool instances write the same ledger,
//! each write first catches the copy up with theirs ([`Book::catch_up`]).

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use sqlx::{AnyConnection, Row};

use super::{
    epochs::{self, EpochSizing, OpenEpoch},
    error::LedgerError,
    seen::Seen,
    store::work_from,
};

/// One key's accrual as the writer holds it (the `accruals` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyState {
    pub id: i64,
    pub pending: Work,
    pub total: Work,
    pub shares: i64,
    /// Hash chain over every share of the key, in log order.
    pub chain: [u8; 32],
    /// Shares since the key's last batch.
    pub unbatched: i64,
    /// Where the key's next batch starts: log seq and chain value.
    pub batch_from: (i64, [u8; 32]),
    pub last_share_ms: Option<i64>,
    /// The key's work in the minute `minute` (unix minutes), as stored in `key_minutes`.
    pub minute: Option<(i64, Work, i64)>,
}

impl KeyState {
    pub(super) fn new(id: i64) -> Self {
        Self {
            id,
            pending: Work::ZERO,
            total: Work::ZERO,
            shares: 0,
            chain: [0; 32],
            unbatched: 0,
            batch_from: (0, [0; 32]),
            last_share_ms: None,
            minute: None,
        }
    }

    /// Adds one share to the chain.
    pub(super) fn chain_in(&mut self, share_hash: &[u8; 32]) {
        self.chain = chain_step(&self.chain, share_hash);
    }
}

/// One step of a key's share commitment: SHA-256(previous || share hash).
pub fn chain_step(previous: &[u8; 32], share_hash: &[u8; 32]) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    engine.input(previous);
    engine.input(share_hash);
    sha256::Hash::from_engine(engine).to_byte_array()
}

pub(super) struct Book {
    pub keys: HashMap<LockingKey, KeyState>,
    pub next_key_id: i64,
    /// Seq of the next record the log will hold.
    pub next_seq: i64,
    /// The pool's cumulative accepted work: every key's total. A found block records it (its
    /// settlement window ends there).
    pub pool_work: Work,
    pub seen: Seen,
    /// The minute (unix minutes) the ledger was opened in: the only one whose per-key work
    /// may be stored without the book holding it.
    pub opened_minute: i64,
    /// The open epoch (none before the network's work per block was first known).
    pub epoch: Option<OpenEpoch>,
    /// The network's work per block at the latest tip: sizes the next epoch.
    pub network_work: Option<Work>,
    pub sizing: EpochSizing,
    /// The ledger's generation as of this book: every write that changes what the book holds
    /// bumps it (see `store.rs`).
    pub generation: i64,
    /// Keys whose pending work changed since the last batch creation: only they can have a
    /// whole unit to issue. `None` until the first creation, which looks at every key (work
    /// left from before a restart). Without this, one share under each of a million fresh keys
    /// would make every batch tick read a million rows.
    pub dirty: Option<HashSet<LockingKey>>,
}

const ACCRUAL_COLUMNS: &str = "SELECT locking_key, key_id, pending_work, total_work, \
     share_count, chain, unbatched, last_share_at, batch_from_seq, batch_from_chain FROM accruals";

fn accrual_from_row(r: &sqlx::any::AnyRow) -> Result<(LockingKey, KeyState), LedgerError> {
    let key = LockingKey::from_slice(&r.get::<Vec<u8>, _>(0))
        .map_err(|_| LedgerError::Database("corrupt locking key".into()))?;
    let id: i64 = r
        .get::<Option<i64>, _>(1)
        .ok_or_else(|| LedgerError::Database("an accrual without a key id".into()))?;
    Ok((
        key,
        KeyState {
            id,
            pending: work_from(r.get(2))?,
            total: work_from(r.get(3))?,
            shares: r.get(4),
            chain: chain_from(r.get(5))?,
            unbatched: r.get(6),
            batch_from: (r.get(8), chain_from(r.get(9))?),
            last_share_ms: r.get(7),
            minute: None,
        },
    ))
}

/// Stamps the ledger with the generation a write leaves (in the write's transaction).
pub(super) async fn set_generation(
    conn: &mut AnyConnection,
    generation: i64,
) -> Result<(), LedgerError> {
    sqlx::query("UPDATE ledger_meta SET generation = $1 WHERE id = 1")
        .bind(generation)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Book {
    /// Reads every key's accrual, the log's next seq and the last tip's share hashes.
    pub(super) async fn load(
        conn: &mut AnyConnection,
        max_seen_per_tip: usize,
        sizing: EpochSizing,
    ) -> Result<Self, LedgerError> {
        let mut keys = HashMap::new();
        let mut next_key_id = 1;
        for r in sqlx::query(ACCRUAL_COLUMNS).fetch_all(&mut *conn).await? {
            let (key, state) = accrual_from_row(&r)?;
            next_key_id = next_key_id.max(state.id + 1);
            keys.insert(key, state);
        }
        let next_seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT first_seq + count FROM share_log \
             ORDER BY first_seq DESC LIMIT 1), \
             (SELECT MAX(through_seq) FROM share_log_pruned), 0)",
        )
        .fetch_one(&mut *conn)
        .await?;
        let seen = load_seen(conn, max_seen_per_tip).await?;
        let pool_work = keys
            .values()
            .try_fold(Work::ZERO, |sum, k| sum.checked_add(k.total))
            .ok_or_else(|| LedgerError::Database("the pool's total work overflows".into()))?;
        let epoch = epochs::load_open(conn).await?;
        let generation: i64 = sqlx::query_scalar("SELECT generation FROM ledger_meta WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Self {
            keys,
            next_key_id,
            next_seq,
            pool_work,
            seen,
            opened_minute: hashpool_role::unix_now_ms().div_euclid(60_000),
            epoch,
            network_work: None,
            sizing,
            generation,
            dirty: None,
        })
    }

    /// The generation the write being made leaves: rows it writes carry it.
    pub(super) fn next_generation(&self) -> i64 {
        self.generation + 1
    }

    /// Under the write lock (`store::begin_write`), before anything the book holds is used:
    /// when another pool instance wrote since this book's last write, reads what it changed:
    /// the keys it wrote (their accruals whole), the share log rows it appended (their hashes
    /// join the duplicate filter, so a share credited there is a replay here) and the open
    /// epoch. With one instance the generation never moves under it, and this is one read.
    pub(super) async fn catch_up(&mut self, conn: &mut AnyConnection) -> Result<(), LedgerError> {
        let stored: i64 = sqlx::query_scalar("SELECT generation FROM ledger_meta WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        if stored == self.generation {
            return Ok(());
        }
        let sql = format!("{ACCRUAL_COLUMNS} WHERE gen > $1");
        let rows = sqlx::query(&sql)
            .bind(self.generation)
            .fetch_all(&mut *conn)
            .await?;
        let mut reloaded = Vec::with_capacity(rows.len());
        for r in &rows {
            let (key, state) = accrual_from_row(r)?;
            let before = self.keys.get(&key).map_or(0, |k| k.total.hashes());
            // A key's total only grows; the pool's work is the sum of the totals.
            let grown = state
                .total
                .hashes()
                .checked_sub(before)
                .ok_or_else(|| LedgerError::Database("a key's total work went down".into()))?;
            self.pool_work = self
                .pool_work
                .checked_add(Work::from_hashes(grown))
                .ok_or_else(|| LedgerError::Database("the pool's total work overflows".into()))?;
            self.next_key_id = self.next_key_id.max(state.id + 1);
            if let Some(dirty) = self.dirty.as_mut() {
                dirty.insert(key);
            }
            reloaded.push(key);
            self.keys.insert(key, state);
        }
        if !reloaded.is_empty() {
            self.catch_up_minutes(conn, &reloaded).await?;
        }
        self.catch_up_log(conn).await?;
        self.epoch = epochs::load_open(conn).await?;
        self.generation = stored;
        Ok(())
    }

    /// The current minute's work of the keys just read again, in one query: a group then
    /// adds to what the other instances stored instead of reading each key's figure alone.
    async fn catch_up_minutes(
        &mut self,
        conn: &mut AnyConnection,
        reloaded: &[LockingKey],
    ) -> Result<(), LedgerError> {
        let minute = hashpool_role::unix_now_ms().div_euclid(60_000);
        let stored: HashMap<i64, (Vec<u8>, i64)> = sqlx::query_as::<_, (i64, Vec<u8>, i64)>(
            "SELECT key_id, work, shares FROM key_minutes WHERE minute = $1",
        )
        .bind(minute)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, work, shares)| (id, (work, shares)))
        .collect();
        for key in reloaded {
            if let Some(state) = self.keys.get_mut(key) {
                state.minute = Some(match stored.get(&state.id) {
                    Some((work, shares)) => (minute, work_from(work.clone())?, *shares),
                    // Nothing stored in this minute: the key's figure starts from nothing.
                    None => (minute, Work::ZERO, 0),
                });
            }
        }
        Ok(())
    }

    /// The log rows other instances appended since this book's last: the next seq, and the
    /// hashes of those on the newest two tips (older tips' shares cannot come again).
    async fn catch_up_log(&mut self, conn: &mut AnyConnection) -> Result<(), LedgerError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT first_seq, tip, count FROM share_log WHERE first_seq >= $1 ORDER BY first_seq",
        )
        .bind(self.next_seq)
        .fetch_all(&mut *conn)
        .await?;
        let Some(&(last_seq, _, last_count)) = rows.last() else {
            return Ok(());
        };
        let mut tips: Vec<i64> = Vec::new();
        for (_, tip, _) in rows.iter().rev() {
            if !tips.contains(tip) {
                tips.push(*tip);
                if tips.len() == 2 {
                    break;
                }
            }
        }
        for (seq, tip, count) in rows.iter().filter(|(_, t, _)| tips.contains(t)) {
            let records: Vec<u8> =
                sqlx::query_scalar("SELECT records FROM share_log WHERE first_seq = $1")
                    .bind(seq)
                    .fetch_one(&mut *conn)
                    .await?;
            let n = usize::try_from(*count).unwrap_or(0);
            for record in super::log::decode(&records, n)? {
                self.seen.insert(*tip, &record.hash);
            }
        }
        self.next_seq = last_seq + last_count;
        Ok(())
    }
}

/// A stored chain value (none yet: the empty chain).
pub(super) fn chain_from(stored: Option<Vec<u8>>) -> Result<[u8; 32], LedgerError> {
    match stored {
        Some(c) => c
            .try_into()
            .map_err(|_| LedgerError::Database("corrupt share chain".into())),
        None => Ok([0; 32]),
    }
}

/// The hashes of the log's last tip, newest rows first, up to the filter's bound.
async fn load_seen(conn: &mut AnyConnection, max: usize) -> Result<Seen, LedgerError> {
    let mut seen = Seen::new(max);
    let last_tip: Option<i64> =
        sqlx::query_scalar("SELECT tip FROM share_log ORDER BY first_seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let Some(tip) = last_tip else {
        return Ok(seen);
    };
    let mut before = i64::MAX;
    let mut held = 0usize;
    'rows: loop {
        let rows = sqlx::query(
            "SELECT first_seq, tip, count, records FROM share_log WHERE first_seq < $1 \
             ORDER BY first_seq DESC LIMIT 256",
        )
        .bind(before)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            break;
        }
        for r in rows {
            before = r.get(0);
            if r.get::<i64, _>(1) != tip {
                break 'rows;
            }
            let count = usize::try_from(r.get::<i64, _>(2)).unwrap_or(0);
            for record in super::log::decode(&r.get::<Vec<u8>, _>(3), count)? {
                seen.insert(tip, &record.hash);
                held += 1;
            }
            if held >= max {
                break 'rows;
            }
        }
    }
    Ok(seen)
}
