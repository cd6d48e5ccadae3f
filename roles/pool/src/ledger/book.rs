//! The writer's copy of every key's accrual, in memory, so a group commit reads nothing: it
//! computes each changed key's new row and writes it. The copy changes only after the
//! transaction that wrote it committed.

use std::collections::HashMap;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use sqlx::{Row, SqliteConnection};

use super::{
    epochs::{self, EpochSizing, OpenEpoch},
    error::LedgerError,
    seen::Seen,
    sqlite::work_from,
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
}

impl Book {
    /// Reads every key's accrual, the log's next seq and the last tip's share hashes.
    pub(super) async fn load(
        conn: &mut SqliteConnection,
        max_seen_per_tip: usize,
        sizing: EpochSizing,
    ) -> Result<Self, LedgerError> {
        let mut keys = HashMap::new();
        let mut next_key_id = 1;
        let rows = sqlx::query(
            "SELECT locking_key, key_id, pending_work, total_work, share_count, chain, \
             unbatched, last_share_at, batch_from_seq, batch_from_chain FROM accruals",
        )
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let key = LockingKey::from_slice(&r.get::<Vec<u8>, _>(0))
                .map_err(|_| LedgerError::Database("corrupt locking key".into()))?;
            let id: i64 = r
                .get::<Option<i64>, _>(1)
                .ok_or_else(|| LedgerError::Database("an accrual without a key id".into()))?;
            let chain = chain_from(r.get(5))?;
            let from_chain = chain_from(r.get(9))?;
            next_key_id = next_key_id.max(id + 1);
            keys.insert(
                key,
                KeyState {
                    id,
                    pending: work_from(r.get(2))?,
                    total: work_from(r.get(3))?,
                    shares: r.get(4),
                    chain,
                    unbatched: r.get(6),
                    batch_from: (r.get(8), from_chain),
                    last_share_ms: r.get(7),
                    minute: None,
                },
            );
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
        })
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
async fn load_seen(conn: &mut SqliteConnection, max: usize) -> Result<Seen, LedgerError> {
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
            "SELECT first_seq, tip, count, records FROM share_log WHERE first_seq < ? \
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
