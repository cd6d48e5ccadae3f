//! Retention: share log rows older than the audit window are pruned, oldest first, and each
//! pass leaves a summary row whose digest is chained over the records it removed. Accruals,
//! batches (with their share counts and commitments) and found blocks are kept: totals stay
//! exact. Per-minute work is kept for a day (the longest hashrate window).

use bitcoin::hashes::{sha256, Hash, HashEngine};
use sqlx::{AnyConnection, Row};

use super::{
    error::LedgerError,
    store::{begin_write, exists, finish, Db},
};

/// Log rows one pass looks at, at most: a pass runs on the writer between share groups.
const ROWS_PER_PASS: i64 = 256;
/// Records one pass removes at most (their bytes are read for the digest).
const SHARES_PER_PASS: i64 = 200_000;
/// Per-minute work is kept this long.
pub(super) const MINUTES_KEPT: i64 = 25 * 60;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rows: u64,
    pub shares: u64,
    /// Rows older than the window are left for the next pass.
    pub more: bool,
}

pub(super) async fn prune(db: &Db, before_ms: i64) -> Result<Pruned, LedgerError> {
    let mut conn = begin_write(db).await?;
    let result = prune_in(&mut conn, before_ms).await;
    finish(conn, result).await
}

async fn prune_in(conn: &mut AnyConnection, before_ms: i64) -> Result<Pruned, LedgerError> {
    let now_minute = hashpool_role::unix_now_ms().div_euclid(60_000);
    sqlx::query("DELETE FROM key_minutes WHERE minute < $1")
        .bind(now_minute - MINUTES_KEPT)
        .execute(&mut *conn)
        .await?;
    let legacy_more = prune_legacy(conn, before_ms).await?;
    // Oldest rows first, stopping at the first one inside the window: what is pruned is
    // always a prefix of the log.
    let rows = sqlx::query(
        "SELECT first_seq, committed_at, count, records FROM share_log \
         ORDER BY first_seq LIMIT $1",
    )
    .bind(ROWS_PER_PASS)
    .fetch_all(&mut *conn)
    .await?;
    let previous: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT digest FROM share_log_pruned ORDER BY through_seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let mut digest: [u8; 32] = previous.and_then(|d| d.try_into().ok()).unwrap_or([0; 32]);
    let mut out = Pruned::default();
    let (mut from, mut through) = (None, 0i64);
    // Rows older than the window may be left: the pass met one of its limits.
    let mut limited = rows.len() as i64 == ROWS_PER_PASS;
    for r in &rows {
        let (seq, at, count): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        if at >= before_ms {
            limited = false;
            break;
        }
        if out.shares as i64 + count > SHARES_PER_PASS && out.rows > 0 {
            limited = true;
            break;
        }
        digest = chain_row(&digest, seq, &r.get::<Vec<u8>, _>(3));
        from.get_or_insert(seq);
        through = seq + count;
        out.rows += 1;
        out.shares += count as u64;
    }
    out.more = legacy_more || limited;
    let Some(from) = from else {
        return Ok(out);
    };
    sqlx::query("DELETE FROM share_log WHERE first_seq < $1")
        .bind(through)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO share_log_pruned (through_seq, from_seq, shares, digest, pruned_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(through)
    .bind(from)
    .bind(out.shares as i64)
    .bind(digest.as_slice())
    .bind(hashpool_role::unix_now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(out)
}

/// The digest after one more pruned row: SHA-256(previous || first_seq || records).
pub fn chain_row(previous: &[u8; 32], first_seq: i64, records: &[u8]) -> [u8; 32] {
    let mut engine = sha256::Hash::engine();
    engine.input(previous);
    engine.input(&first_seq.to_le_bytes());
    engine.input(records);
    sha256::Hash::from_engine(engine).to_byte_array()
}

/// Share rows from before the log (migration 0005) age out under the same window. Returns
/// whether older rows are left for the next pass.
async fn prune_legacy(conn: &mut AnyConnection, before_ms: i64) -> Result<bool, LedgerError> {
    const LEGACY_PER_PASS: i64 = 20_000;
    if !exists(conn, "SELECT 1 FROM shares LIMIT 1").await? {
        return Ok(false);
    }
    let removed = sqlx::query(
        "DELETE FROM shares WHERE share_hash IN \
         (SELECT share_hash FROM shares WHERE accepted_at < $1 LIMIT $2)",
    )
    .bind(before_ms)
    .bind(LEGACY_PER_PASS)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(removed as i64 == LEGACY_PER_PASS)
}
