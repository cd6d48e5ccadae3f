//! Quote batches in the ledger: created from pending work, answered by the mint.
use std::{
    collections::HashSet,
    sync::atomic::{AtomicU64, Ordering},
};

use ext_mint_quote::LockingKey;
use hashpool_ehash::{Accrual, UnitWork, Work};
use sqlx::{AnyConnection, Row};

use super::{
    book::{self, set_generation, Book, KeyState},
    epochs::{self, OpenEpoch},
    error::LedgerError,
    store::{begin_write, finish, work_bytes, work_from, Db},
    AccrualLedger,
};

/// One quote request the pool owes a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: i64,
    pub request_id: [u8; 32],
    pub locking_key: LockingKey,
    pub amount: u64,
    pub share_count: u32,
    pub share_commitment: [u8; 32],
    pub quote_id: Option<String>,
    /// The mint's code when it refused the request for good; the batch's work then went back
    /// to pending, so a refused batch's amount was not issued.
    pub refused_code: Option<String>,
    /// The epoch its ehash belongs to (`None`: work from before the first epoch).
    pub epoch: Option<u32>,
}

const BATCH_COLUMNS: &str = "SELECT id, request_id, locking_key, amount, share_count, \
     share_commitment, quote_id, refused_code, epoch FROM batches";

fn batch_from_row(r: sqlx::any::AnyRow) -> Result<Batch, LedgerError> {
    Ok(Batch {
        id: r.get(0),
        request_id: array32(r.get(1))?,
        locking_key: key_from(r.get(2))?,
        amount: r.get::<i64, _>(3) as u64,
        share_count: r.get::<i64, _>(4) as u32,
        share_commitment: array32(r.get(5))?,
        quote_id: r.get(6),
        refused_code: r.get(7),
        epoch: r
            .get::<Option<i64>, _>(8)
            .map(|e| u32::try_from(e).map_err(|_| LedgerError::Database("corrupt epoch".into())))
            .transpose()?,
    })
}

fn key_from(bytes: Vec<u8>) -> Result<LockingKey, LedgerError> {
    LockingKey::from_slice(&bytes).map_err(|_| LedgerError::Database("corrupt locking key".into()))
}

fn array32(bytes: Vec<u8>) -> Result<[u8; 32], LedgerError> {
    bytes
        .try_into()
        .map_err(|_| LedgerError::Database("corrupt 32-byte field".into()))
}

/// Batch creation, on the writer task (see `AccrualLedger::create_batches`).
/// Looks only at the book's dirty keys (those with new pending work) when it has them, at
/// every key otherwise. A batch covers its key's log records since the key's previous batch:
/// its share count and commitment are the key's running ones, so no share is read or
/// rewritten. Batches belong to the open epoch. Under the write lock, after catching the book
/// up: a key whose work another instance batched has nothing pending here, so each whole unit
/// is batched once whichever instance gets there first.
pub(super) async fn create(
    db: &Db,
    book: &mut Book,
    unit: UnitWork,
    examined: &AtomicU64,
) -> Result<Vec<Batch>, LedgerError> {
    let mut conn = begin_write(db).await?;
    let result = async {
        book.catch_up(&mut conn).await?;
        let mut planned = plan(book, unit, book.dirty.as_ref(), examined);
        if !planned.is_empty() {
            let epoch = book.epoch.map(|e| e.index);
            let generation = book.next_generation();
            insert_batches(&mut conn, &mut planned, book.next_seq, epoch, generation).await?;
            set_generation(&mut conn, generation).await?;
        }
        Ok(planned)
    }
    .await;
    let planned = finish(conn, result).await?;
    book.dirty = Some(Default::default());
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    book.generation = book.next_generation();
    Ok(take_planned(book, planned))
}

/// Closes the open epoch where the pool's work stands and opens the next, in one transaction
/// with a batch of every key's whole units for the closing epoch (what is left of a key's
/// work, under one unit, goes on into the next). Returns the batches.
/// Another instance may have turned it first (the catch-up then finds the next epoch open
/// and short of its end): nothing is written then.
pub(super) async fn turn_epoch(
    db: &Db,
    book: &mut Book,
    unit: UnitWork,
    examined: &AtomicU64,
) -> Result<Vec<Batch>, LedgerError> {
    let mut conn = begin_write(db).await?;
    let result = async {
        book.catch_up(&mut conn).await?;
        let Some(closing) = book.epoch else {
            return Ok(None);
        };
        if book.pool_work.hashes() < closing.planned_end() {
            return Ok(None);
        }
        let mut planned = plan(book, unit, None, examined);
        let network_work = book.network_work.unwrap_or(closing.network_work);
        let next = OpenEpoch {
            index: closing.index + 1,
            start: book.pool_work,
            length: book.sizing.length(network_work),
            network_work,
        };
        let generation = book.next_generation();
        insert_batches(
            &mut conn,
            &mut planned,
            book.next_seq,
            Some(closing.index),
            generation,
        )
        .await?;
        epochs::close(&mut conn, closing.index, book.pool_work).await?;
        epochs::insert(&mut conn, &next).await?;
        set_generation(&mut conn, generation).await?;
        Ok(Some((planned, next)))
    }
    .await;
    let Some((planned, next)) = finish(conn, result).await? else {
        return Ok(Vec::new());
    };
    book.epoch = Some(next);
    book.generation = book.next_generation();
    Ok(take_planned(book, planned))
}

/// Every batch `keys` (or every key) would get now, without touching the book.
fn plan(
    book: &Book,
    unit: UnitWork,
    keys: Option<&HashSet<LockingKey>>,
    examined: &AtomicU64,
) -> Vec<Planned> {
    let epoch = book.epoch.map(|e| e.index);
    let mut planned: Vec<Planned> = Vec::new();
    let mut look = |key: &LockingKey, state: &KeyState| {
        let mut accrual = Accrual::with_pending(state.pending);
        let amount = accrual.take(unit);
        if amount.0 == 0 {
            return;
        }
        let taken = Work::from_hashes(amount.0 as u128 * unit.work().hashes());
        planned.push(Planned {
            batch: Batch {
                id: 0,
                request_id: rand::random(),
                locking_key: *key,
                amount: amount.0,
                share_count: u32::try_from(state.unbatched).unwrap_or(u32::MAX),
                share_commitment: state.chain,
                quote_id: None,
                refused_code: None,
                epoch,
            },
            taken,
            left: accrual.pending(),
            from: state.batch_from,
        });
    };
    let mut looked = 0u64;
    match keys {
        Some(keys) => {
            for key in keys {
                if let Some(state) = book.keys.get(key) {
                    looked += 1;
                    look(key, state);
                }
            }
        }
        None => {
            for (key, state) in &book.keys {
                looked += 1;
                look(key, state);
            }
        }
    }
    examined.fetch_add(looked, Ordering::Relaxed);
    planned
}

/// Applies written batches to the book; returns them.
fn take_planned(book: &mut Book, planned: Vec<Planned>) -> Vec<Batch> {
    let log_until = book.next_seq;
    let mut created = Vec::with_capacity(planned.len());
    for p in planned {
        if let Some(state) = book.keys.get_mut(&p.batch.locking_key) {
            state.pending = p.left;
            state.unbatched = 0;
            state.batch_from = (log_until, p.batch.share_commitment);
        }
        created.push(p.batch);
    }
    created
}

/// A batch about to be written: the work it takes, the work left pending, and where its range
/// of the log starts (seq, chain value).
struct Planned {
    batch: Batch,
    taken: Work,
    left: Work,
    from: (i64, [u8; 32]),
}

async fn insert_batches(
    tx: &mut AnyConnection,
    planned: &mut [Planned],
    log_until: i64,
    epoch: Option<u32>,
    generation: i64,
) -> Result<(), LedgerError> {
    let now = hashpool_role::unix_now_ms();
    for p in planned.iter_mut() {
        let key = p.batch.locking_key.as_bytes().to_vec();
        p.batch.id = sqlx::query_scalar(
            "INSERT INTO batches (request_id, locking_key, amount, work, share_count, \
                 share_commitment, created_at, log_from, log_until, chain_from, epoch) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(p.batch.request_id.as_slice())
        .bind(&key)
        .bind(p.batch.amount as i64)
        .bind(work_bytes(p.taken))
        .bind(i64::from(p.batch.share_count))
        .bind(p.batch.share_commitment.as_slice())
        .bind(now)
        .bind(p.from.0)
        .bind(log_until)
        .bind(p.from.1.as_slice())
        .bind(epoch.map(i64::from))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE accruals SET pending_work = $1, unbatched = 0, batch_from_seq = $2, \
             batch_from_chain = $3, gen = $4 WHERE locking_key = $5",
        )
        .bind(work_bytes(p.left))
        .bind(log_until)
        .bind(p.batch.share_commitment.as_slice())
        .bind(generation)
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

impl AccrualLedger {
    /// Batches still waiting for the mint, oldest first.
    pub async fn open_batches(&self) -> Result<Vec<Batch>, LedgerError> {
        self.batches_where("quote_id IS NULL AND refused_code IS NULL", None)
            .await
    }

    /// Every batch of `key` (answered or not).
    pub async fn batches_of(&self, key: &LockingKey) -> Result<Vec<Batch>, LedgerError> {
        self.batches_where("locking_key = $1", Some(key)).await
    }

    async fn batches_where(
        &self,
        condition: &str,
        key: Option<&LockingKey>,
    ) -> Result<Vec<Batch>, LedgerError> {
        let sql = format!("{BATCH_COLUMNS} WHERE {condition} ORDER BY id");
        let mut q = sqlx::query(&sql);
        if let Some(k) = key {
            q = q.bind(k.as_bytes().as_slice());
        }
        q.fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .map(batch_from_row)
            .collect()
    }
}

/// The batch with id `id`.
pub(super) async fn batch_by_id(db: &sqlx::AnyPool, id: i64) -> Result<Option<Batch>, LedgerError> {
    let sql = format!("{BATCH_COLUMNS} WHERE id = $1");
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(batch_from_row)
        .transpose()
}

/// On the writer task (see `AccrualLedger::record_quote`).
pub(super) async fn record_quote(
    db: &sqlx::AnyPool,
    request_id: &[u8; 32],
    quote_id: &str,
) -> Result<Option<Batch>, LedgerError> {
    let updated = sqlx::query(
        "UPDATE batches SET quote_id = $1, answered_at = $2 \
         WHERE request_id = $3 AND quote_id IS NULL AND refused_code IS NULL",
    )
    .bind(quote_id)
    .bind(hashpool_role::unix_now_ms())
    .bind(request_id.as_slice())
    .execute(db)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    let sql = format!("{BATCH_COLUMNS} WHERE request_id = $1");
    sqlx::query(&sql)
        .bind(request_id.as_slice())
        .fetch_optional(db)
        .await?
        .map(batch_from_row)
        .transpose()
}

/// On the writer task (see `AccrualLedger::record_refusal`).
pub(super) async fn record_refusal(
    db: &Db,
    book: &mut Book,
    request_id: &[u8; 32],
    code: &str,
) -> Result<Option<Batch>, LedgerError> {
    let mut conn = begin_write(db).await?;
    let result = async {
        book.catch_up(&mut conn).await?;
        let generation = book.next_generation();
        let refused = refuse(&mut conn, book, request_id, code, generation).await?;
        if refused.is_some() {
            set_generation(&mut conn, generation).await?;
        }
        Ok(refused)
    }
    .await;
    let refused = finish(conn, result).await?;
    Ok(refused.map(|(batch, state)| {
        book.generation = book.next_generation();
        book.keys.insert(batch.locking_key, state);
        batch
    }))
}

/// A batch's `log_from`, `log_until` and `chain_from` (all NULL for a batch from before the
/// log).
type LogRange = (Option<i64>, Option<i64>, Option<Vec<u8>>);

/// The refused batch, and its key's state with the batch's work back in pending.
async fn refuse(
    tx: &mut AnyConnection,
    book: &Book,
    request_id: &[u8; 32],
    code: &str,
    generation: i64,
) -> Result<Option<(Batch, KeyState)>, LedgerError> {
    let sql = format!("{BATCH_COLUMNS} WHERE request_id = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(request_id.as_slice())
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let mut batch = batch_from_row(row)?;
    // Answered: the quote exists, its work was issued. Refused: its work is back already.
    if batch.quote_id.is_some() || batch.refused_code.is_some() {
        return Ok(None);
    }
    let work: Vec<u8> = sqlx::query_scalar("SELECT work FROM batches WHERE id = $1")
        .bind(batch.id)
        .fetch_one(&mut *tx)
        .await?;
    let work = work_from(work)?;
    let key = batch.locking_key.as_bytes().to_vec();
    let state = book
        .keys
        .get(&batch.locking_key)
        .ok_or_else(|| LedgerError::Database("a batch of a key with no accrual".into()))?;
    let mut state = state.clone();
    // Pending plus what was taken from it never exceeds the key's total: an overflow means
    // the stored values are corrupt.
    state.pending = state
        .pending
        .checked_add(work)
        .ok_or(LedgerError::CorruptWork)?;
    // The key's latest batch hands its shares on to the next one, which then covers them (the
    // same range start, count and commitment). An earlier batch keeps them: a later batch
    // already starts where it ended.
    let range: Option<LogRange> =
        sqlx::query_as("SELECT log_from, log_until, chain_from FROM batches WHERE id = $1")
            .bind(batch.id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((Some(from), Some(until), chain_from)) = range {
        if until == state.batch_from.0 {
            state.batch_from = (from, book::chain_from(chain_from)?);
            state.unbatched += i64::from(batch.share_count);
        }
    }
    sqlx::query(
        "UPDATE accruals SET pending_work = $1, unbatched = $2, batch_from_seq = $3, \
         batch_from_chain = $4, gen = $5 WHERE locking_key = $6",
    )
    .bind(work_bytes(state.pending))
    .bind(state.unbatched)
    .bind(state.batch_from.0)
    .bind(state.batch_from.1.as_slice())
    .bind(generation)
    .bind(&key)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE batches SET refused_code = $1, refused_at = $2 WHERE id = $3")
        .bind(code)
        .bind(hashpool_role::unix_now_ms())
        .bind(batch.id)
        .execute(&mut *tx)
        .await?;
    batch.refused_code = Some(code.to_string());
    Ok(Some((batch, state)))
}
