//! Quote batches in the ledger: created from pending work, answered by the mint.
use std::{
    collections::HashSet,
    sync::atomic::{AtomicU64, Ordering},
};

use bitcoin::hashes::{sha256, Hash, HashEngine};
use ext_mint_quote::LockingKey;
use hashpool_ehash::{Accrual, UnitWork, Work};
use sqlx::{Row, SqlitePool};

use super::{
    error::LedgerError,
    sqlite::{begin_immediate, finish, now_millis, work_bytes, work_from},
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
}

const BATCH_COLUMNS: &str = "SELECT id, request_id, locking_key, amount, share_count, \
     share_commitment, quote_id, refused_code FROM batches";

fn batch_from_row(r: sqlx::sqlite::SqliteRow) -> Result<Batch, LedgerError> {
    Ok(Batch {
        id: r.get(0),
        request_id: array32(r.get(1))?,
        locking_key: key_from(r.get(2))?,
        amount: r.get::<i64, _>(3) as u64,
        share_count: r.get::<i64, _>(4) as u32,
        share_commitment: array32(r.get(5))?,
        quote_id: r.get(6),
        refused_code: r.get(7),
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
/// Looks only at `keys` (those with new pending work) when given, at every key otherwise.
pub(super) async fn create(
    db: &SqlitePool,
    unit: UnitWork,
    keys: Option<&HashSet<LockingKey>>,
    examined: &AtomicU64,
) -> Result<Vec<Batch>, LedgerError> {
    // Reads before it writes: the write lock is taken up front (see `begin_immediate`).
    let mut conn = begin_immediate(db).await?;
    let result = take_batches(&mut conn, unit, keys, examined).await;
    finish(conn, result).await
}

/// (key, pending work) of `keys`, or of every key.
async fn pending_of(
    tx: &mut sqlx::SqliteConnection,
    keys: Option<&HashSet<LockingKey>>,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, LedgerError> {
    let Some(keys) = keys else {
        let rows = sqlx::query("SELECT locking_key, pending_work FROM accruals")
            .fetch_all(&mut *tx)
            .await?;
        return Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect());
    };
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let pending: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT pending_work FROM accruals WHERE locking_key = ?")
                .bind(key.as_bytes().as_slice())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(pending) = pending {
            out.push((key.as_bytes().to_vec(), pending));
        }
    }
    Ok(out)
}

async fn take_batches(
    tx: &mut sqlx::SqliteConnection,
    unit: UnitWork,
    keys: Option<&HashSet<LockingKey>>,
    examined: &AtomicU64,
) -> Result<Vec<Batch>, LedgerError> {
    let rows = pending_of(tx, keys).await?;
    examined.fetch_add(rows.len() as u64, Ordering::Relaxed);
    let mut created = Vec::new();
    for (key_bytes, pending) in rows {
        let mut accrual = Accrual::with_pending(work_from(pending)?);
        let amount = accrual.take(unit);
        if amount.0 == 0 {
            continue;
        }
        let taken = Work::from_hashes(amount.0 as u128 * unit.work().hashes());
        let hashes = sqlx::query(
            "SELECT share_hash FROM shares WHERE locking_key = ? AND batch_id IS NULL \
                 ORDER BY accepted_at, share_hash",
        )
        .bind(&key_bytes)
        .fetch_all(&mut *tx)
        .await?;
        let mut commitment = sha256::Hash::engine();
        for h in &hashes {
            commitment.input(&h.get::<Vec<u8>, _>(0));
        }
        let commitment = sha256::Hash::from_engine(commitment).to_byte_array();
        let request_id: [u8; 32] = rand::random();
        let id = sqlx::query(
            "INSERT INTO batches (request_id, locking_key, amount, work, share_count, \
                 share_commitment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(request_id.as_slice())
        .bind(&key_bytes)
        .bind(amount.0 as i64)
        .bind(work_bytes(taken))
        .bind(hashes.len() as i64)
        .bind(commitment.as_slice())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        sqlx::query("UPDATE shares SET batch_id = ? WHERE locking_key = ? AND batch_id IS NULL")
            .bind(id)
            .bind(&key_bytes)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE accruals SET pending_work = ? WHERE locking_key = ?")
            .bind(work_bytes(accrual.pending()))
            .bind(&key_bytes)
            .execute(&mut *tx)
            .await?;
        created.push(Batch {
            id,
            request_id,
            locking_key: key_from(key_bytes)?,
            amount: amount.0,
            share_count: hashes.len() as u32,
            share_commitment: commitment,
            quote_id: None,
            refused_code: None,
        });
    }
    Ok(created)
}

impl AccrualLedger {
    /// Batches still waiting for the mint, oldest first.
    pub async fn open_batches(&self) -> Result<Vec<Batch>, LedgerError> {
        self.batches_where("quote_id IS NULL AND refused_code IS NULL", None)
            .await
    }

    /// Every batch of `key` (answered or not).
    pub async fn batches_of(&self, key: &LockingKey) -> Result<Vec<Batch>, LedgerError> {
        self.batches_where("locking_key = ?", Some(key)).await
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
        q.fetch_all(&self.db)
            .await?
            .into_iter()
            .map(batch_from_row)
            .collect()
    }
}

/// On the writer task (see `AccrualLedger::record_quote`).
pub(super) async fn record_quote(
    db: &SqlitePool,
    request_id: &[u8; 32],
    quote_id: &str,
) -> Result<Option<Batch>, LedgerError> {
    let updated = sqlx::query(
        "UPDATE batches SET quote_id = ?, answered_at = ? \
         WHERE request_id = ? AND quote_id IS NULL AND refused_code IS NULL",
    )
    .bind(quote_id)
    .bind(now_millis())
    .bind(request_id.as_slice())
    .execute(db)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    let sql = format!("{BATCH_COLUMNS} WHERE request_id = ?");
    sqlx::query(&sql)
        .bind(request_id.as_slice())
        .fetch_optional(db)
        .await?
        .map(batch_from_row)
        .transpose()
}

/// On the writer task (see `AccrualLedger::record_refusal`).
pub(super) async fn record_refusal(
    db: &SqlitePool,
    request_id: &[u8; 32],
    code: &str,
) -> Result<Option<Batch>, LedgerError> {
    let mut conn = begin_immediate(db).await?;
    let result = refuse(&mut conn, request_id, code).await;
    finish(conn, result).await
}

async fn refuse(
    tx: &mut sqlx::SqliteConnection,
    request_id: &[u8; 32],
    code: &str,
) -> Result<Option<Batch>, LedgerError> {
    let sql = format!("{BATCH_COLUMNS} WHERE request_id = ?");
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
    let work: Vec<u8> = sqlx::query_scalar("SELECT work FROM batches WHERE id = ?")
        .bind(batch.id)
        .fetch_one(&mut *tx)
        .await?;
    let work = work_from(work)?;
    let key = batch.locking_key.as_bytes().to_vec();
    let pending: Vec<u8> =
        sqlx::query_scalar("SELECT pending_work FROM accruals WHERE locking_key = ?")
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?;
    // Pending plus what was taken from it never exceeds the key's total: an overflow means
    // the stored values are corrupt.
    let pending = work_from(pending)?
        .checked_add(work)
        .ok_or(LedgerError::CorruptWork)?;
    sqlx::query("UPDATE accruals SET pending_work = ? WHERE locking_key = ?")
        .bind(work_bytes(pending))
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE batches SET refused_code = ?, refused_at = ? WHERE id = ?")
        .bind(code)
        .bind(now_millis())
        .bind(batch.id)
        .execute(&mut *tx)
        .await?;
    // Its shares go with their work into the next batch (its share count and commitment).
    sqlx::query("UPDATE shares SET batch_id = NULL WHERE batch_id = ?")
        .bind(batch.id)
        .execute(&mut *tx)
        .await?;
    batch.refused_code = Some(code.to_string());
    Ok(Some(batch))
}
