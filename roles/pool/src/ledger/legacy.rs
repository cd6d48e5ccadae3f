//! The first open of a ledger written before the share log (migration 0005): its keys get ids,
//! each key's shares not yet in a batch are chained into its running commitment (so its next
//! batch covers them), and the old share rows give the found blocks, the last day's per-minute
//! work and the recent hashes for the duplicate filter. The old rows stay, read-only, until
//! retention prunes them.

use std::collections::HashMap;

use hashpool_ehash::Work;
use sqlx::{AnyConnection, Row};
use tracing::info;

use super::{
    book::chain_step,
    error::LedgerError,
    retention::MINUTES_KEPT,
    store::{begin_write, exists, finish, work_bytes, work_from, Db},
};

/// Hashes of old shares accepted within this long before the upgrade seed the duplicate filter.
const RECENT_MS: i64 = 3_600_000;

/// Converts the ledger if it needs it; returns the recent old share hashes.
pub(super) async fn convert(db: &Db) -> Result<Vec<[u8; 32]>, LedgerError> {
    let needed = exists(
        &mut *db.pool.acquire().await?,
        "SELECT 1 FROM accruals WHERE key_id IS NULL OR chain IS NULL LIMIT 1",
    )
    .await?;
    if !needed {
        return Ok(Vec::new());
    }
    let mut conn = begin_write(db).await?;
    let result = convert_in(&mut conn).await;
    finish(conn, result).await
}

async fn convert_in(conn: &mut AnyConnection) -> Result<Vec<[u8; 32]>, LedgerError> {
    let mut next_id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(key_id), 0) + 1 FROM accruals")
        .fetch_one(&mut *conn)
        .await?;
    let keys: Vec<(Vec<u8>, Option<i64>)> = sqlx::query_as(
        "SELECT locking_key, key_id FROM accruals WHERE key_id IS NULL OR chain IS NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut chained = 0u64;
    for (key, id) in &keys {
        let id = match id {
            Some(id) => *id,
            None => {
                next_id += 1;
                next_id - 1
            }
        };
        // The order the old batches committed to their shares in.
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT share_hash FROM shares WHERE locking_key = $1 AND batch_id IS NULL \
             ORDER BY accepted_at, share_hash",
        )
        .bind(key)
        .fetch_all(&mut *conn)
        .await?;
        let mut chain = [0u8; 32];
        for h in &hashes {
            let h: [u8; 32] = h
                .as_slice()
                .try_into()
                .map_err(|_| LedgerError::Database("corrupt share hash".into()))?;
            chain = chain_step(&chain, &h);
        }
        chained += hashes.len() as u64;
        sqlx::query(
            "UPDATE accruals SET key_id = $1, chain = $2, unbatched = $3 WHERE locking_key = $4",
        )
        .bind(id)
        .bind(chain.as_slice())
        .bind(hashes.len() as i64)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT OR IGNORE INTO found_blocks (hash, key_id, channel_id, found_at) \
         SELECT s.share_hash, a.key_id, s.channel_id, s.accepted_at \
         FROM shares s JOIN accruals a ON a.locking_key = s.locking_key WHERE s.block_found = 1",
    )
    .execute(&mut *conn)
    .await?;
    let now = hashpool_role::unix_now_ms();
    let since = now - MINUTES_KEPT * 60_000;
    let rows = sqlx::query(
        "SELECT a.key_id, s.accepted_at, s.work, s.share_hash FROM shares s \
         JOIN accruals a ON a.locking_key = s.locking_key WHERE s.accepted_at >= $1",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    let mut minutes: HashMap<(i64, i64), (Work, i64)> = HashMap::new();
    let mut recent = Vec::new();
    for r in rows {
        let at: i64 = r.get(1);
        let work = work_from(r.get(2))?;
        let entry = minutes
            .entry((r.get(0), at.div_euclid(60_000)))
            .or_insert((Work::ZERO, 0));
        entry.0 = entry.0.checked_add(work).unwrap_or(entry.0);
        entry.1 += 1;
        if at >= now - RECENT_MS {
            if let Ok(h) = <[u8; 32]>::try_from(r.get::<Vec<u8>, _>(3)) {
                recent.push(h);
            }
        }
    }
    for ((key_id, minute), (work, count)) in &minutes {
        sqlx::query(
            "INSERT OR REPLACE INTO key_minutes (key_id, minute, work, shares) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(minute)
        .bind(work_bytes(*work))
        .bind(count)
        .execute(&mut *conn)
        .await?;
    }
    info!(
        keys = keys.len(),
        unbatched_shares = chained,
        "ledger converted to the share log; share rows from before stay until retention prunes them"
    );
    Ok(recent)
}
