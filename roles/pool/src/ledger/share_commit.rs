//! One group of accepted shares written in one transaction: a row of compact records per chain
//! tip in the share log, and each changed key's accrual, per-minute work and found blocks. A
//! replay is not credited again, and a share that would overflow its key's accrual is refused
//! alone. Nothing is read: the writer's [`Book`] knows every key's accrual.

use std::collections::{hash_map::Entry, HashMap, HashSet};

use ext_mint_quote::LockingKey;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tracing::warn;

use super::{
    book::{Book, KeyState},
    error::LedgerError,
    log::Record,
    sqlite::{begin_immediate, finish, now_millis, work_bytes, work_from},
};
use crate::accepted_share::AcceptedShare;

/// Rows per multi-row statement (at most 8 parameters each, well under SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Per share, in order: credited, a replay, or refused alone. The `Err` of the whole is a
/// database failure (nothing of the group was written).
type GroupOutcome = Vec<Result<bool, LedgerError>>;

/// What one group changes, applied to the book once it committed.
struct Changes {
    keys: HashMap<LockingKey, KeyState>,
    new_keys: usize,
    /// Records per tip, in order of first appearance.
    rows: Vec<(i64, Vec<u8>, i64)>,
    credited: Vec<(i64, [u8; 32])>,
    blocks: Vec<([u8; 32], i64, u32)>,
}

pub(super) async fn write_group(
    db: &SqlitePool,
    book: &mut Book,
    shares: &[&AcceptedShare],
) -> Result<GroupOutcome, LedgerError> {
    let now = now_millis();
    let (mut changes, outcomes) = apply(book, shares, now);
    let mut conn = begin_immediate(db).await?;
    let result = write(&mut conn, book, &mut changes, now).await;
    finish(conn, result).await?;
    book.next_key_id += changes.new_keys as i64;
    for (_, _, count) in &changes.rows {
        book.next_seq += count;
    }
    for (tip, hash) in &changes.credited {
        book.seen.insert(*tip, hash);
    }
    book.keys.extend(changes.keys);
    Ok(outcomes)
}

/// Works out the group's outcome and every changed row, without touching the book.
fn apply(book: &Book, shares: &[&AcceptedShare], now: i64) -> (Changes, GroupOutcome) {
    let minute = now.div_euclid(60_000);
    let mut changes = Changes {
        keys: HashMap::new(),
        new_keys: 0,
        rows: Vec::new(),
        credited: Vec::with_capacity(shares.len()),
        blocks: Vec::new(),
    };
    let mut in_group: HashSet<[u8; 32]> = HashSet::with_capacity(shares.len());
    let mut outcomes = Vec::with_capacity(shares.len());
    for s in shares {
        if book.seen.contains(&s.share_hash) || in_group.contains(&s.share_hash) {
            outcomes.push(Ok(false));
            continue;
        }
        let state = match changes.keys.entry(s.locking_key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => match book.keys.get(&s.locking_key) {
                Some(known) => e.insert(known.clone()),
                None => {
                    let id = book.next_key_id + changes.new_keys as i64;
                    changes.new_keys += 1;
                    e.insert(KeyState::new(id))
                }
            },
        };
        let (Some(pending), Some(total)) = (
            state.pending.checked_add(s.work),
            state.total.checked_add(s.work),
        ) else {
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
            continue;
        };
        state.pending = pending;
        state.total = total;
        state.shares += 1;
        state.unbatched += 1;
        state.chain_in(&s.share_hash);
        state.last_share_ms = Some(now);
        // The minute's figure saturates rather than refuse a share: it only draws a chart.
        state.minute = Some(match state.minute {
            Some((m, work, count)) if m == minute => {
                (m, work.checked_add(s.work).unwrap_or(work), count + 1)
            }
            _ => (minute, s.work, 1),
        });
        let record = Record {
            hash: s.share_hash,
            key_id: u64::try_from(state.id).unwrap_or(0),
            channel_id: s.channel_id,
            work: s.work,
        };
        let row = match changes.rows.iter_mut().find(|(tip, _, _)| *tip == s.tip) {
            Some(row) => row,
            None => {
                changes
                    .rows
                    .push((s.tip, Vec::with_capacity(40 * shares.len()), 0));
                changes.rows.last_mut().expect("just pushed")
            }
        };
        record.encode(&mut row.1);
        row.2 += 1;
        if s.block_found {
            changes.blocks.push((s.share_hash, state.id, s.channel_id));
        }
        in_group.insert(s.share_hash);
        changes.credited.push((s.tip, s.share_hash));
        outcomes.push(Ok(true));
    }
    (changes, outcomes)
}

async fn write(
    conn: &mut SqliteConnection,
    book: &Book,
    changes: &mut Changes,
    now: i64,
) -> Result<(), LedgerError> {
    let mut seq = book.next_seq;
    for (tip, records, count) in &changes.rows {
        sqlx::query(
            "INSERT INTO share_log (first_seq, tip, committed_at, count, records) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(tip)
        .bind(now)
        .bind(count)
        .bind(records.as_slice())
        .execute(&mut *conn)
        .await?;
        seq += count;
    }
    let keys: Vec<(&LockingKey, &KeyState)> = changes.keys.iter().collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO accruals (locking_key, key_id, pending_work, total_work, share_count, \
             chain, unbatched, last_share_at) ",
        );
        q.push_values(chunk, |mut b, (key, s)| {
            b.push_bind(key.as_bytes().to_vec())
                .push_bind(s.id)
                .push_bind(work_bytes(s.pending))
                .push_bind(work_bytes(s.total))
                .push_bind(s.shares)
                .push_bind(s.chain.to_vec())
                .push_bind(s.unbatched)
                .push_bind(s.last_share_ms);
        });
        q.push(
            " ON CONFLICT (locking_key) DO UPDATE SET pending_work = excluded.pending_work, \
             total_work = excluded.total_work, share_count = excluded.share_count, \
             chain = excluded.chain, unbatched = excluded.unbatched, \
             last_share_at = excluded.last_share_at",
        );
        q.build().execute(&mut *conn).await?;
    }
    write_minutes(conn, book, changes).await?;
    for (hash, key_id, channel_id) in &changes.blocks {
        sqlx::query(
            "INSERT OR IGNORE INTO found_blocks (hash, key_id, channel_id, found_at) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(hash.as_slice())
        .bind(key_id)
        .bind(i64::from(*channel_id))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Each changed key's work in the current minute. A key the book holds no figure for in this
/// minute (the first share of the minute, or the first since a restart) may have one stored:
/// that one is read once and added to.
async fn write_minutes(
    conn: &mut SqliteConnection,
    book: &Book,
    changes: &mut Changes,
) -> Result<(), LedgerError> {
    let mut rows = Vec::with_capacity(changes.keys.len());
    for (key, state) in changes.keys.iter_mut() {
        let Some((minute, mut work, mut count)) = state.minute else {
            continue;
        };
        let held = book
            .keys
            .get(key)
            .and_then(|k| k.minute)
            .is_some_and(|(m, _, _)| m == minute);
        if !held {
            let stored: Option<(Vec<u8>, i64)> = sqlx::query_as(
                "SELECT work, shares FROM key_minutes WHERE key_id = ? AND minute = ?",
            )
            .bind(state.id)
            .bind(minute)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((w, c)) = stored {
                work = work.checked_add(work_from(w)?).unwrap_or(work);
                count += c;
                state.minute = Some((minute, work, count));
            }
        }
        rows.push((state.id, minute, work, count));
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO key_minutes (key_id, minute, work, shares) ");
        q.push_values(chunk, |mut b, (id, minute, work, count)| {
            b.push_bind(*id)
                .push_bind(*minute)
                .push_bind(work_bytes(*work))
                .push_bind(*count);
        });
        q.push(
            " ON CONFLICT (key_id, minute) DO UPDATE SET work = excluded.work, \
             shares = excluded.shares",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}
