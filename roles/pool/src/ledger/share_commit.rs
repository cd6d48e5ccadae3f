//! One group of accepted shares written in one transaction: replays are not credited again,
//! each share is added to its key's accrual, and a share that would overflow it is refused
//! alone.

use std::collections::{hash_map::Entry, HashMap, HashSet};

use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tracing::warn;

use super::{
    error::LedgerError,
    sqlite::{begin_immediate, finish, now_millis, work_bytes, work_from},
};
use crate::accepted_share::AcceptedShare;

/// Rows per multi-row statement (6 parameters each, well under SQLite's limit of 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Per share, in order: credited, a replay, or refused alone. The `Err` of the whole is a
/// database failure (nothing of the group was written).
type GroupOutcome = Vec<Result<bool, LedgerError>>;

pub(super) async fn write_group(
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
