//! One group of accepted shares written in one transaction: a row of compact records per chain
//! tip in the share log, and each changed key's accrual, per-minute work and found blocks. A
//! replay is not credited again, and a share that would overflow its key's accrual is refused
//! alone. Nothing is read: the writer's [`Book`] knows every key's accrual (caught up first if
//! another pool instance wrote since), and the group goes to the database as one batch of
//! statements.

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    fmt::Write as _,
};

use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;
use sqlx::{AnyConnection, Executor as _};
use tracing::warn;

use super::{
    book::{Book, KeyState},
    error::LedgerError,
    log::Record,
    store::{begin_write, blob, finish, work_bytes, work_from, Backend, Db},
};
use crate::accepted_share::{AcceptedShare, BlockFacts};

/// Per share, in order: credited, a replay, or refused alone. The `Err` of the whole is a
/// database failure (nothing of the group was written).
type GroupOutcome = Vec<Result<bool, LedgerError>>;

/// What a group write did: the outcomes of the shares it wrote, and where it stopped when a
/// share starts the next epoch (the open one must close first; the shares from there are not
/// written).
pub(super) struct Written {
    pub outcomes: GroupOutcome,
    pub epoch_ends_at: Option<usize>,
}

/// What one group changes, applied to the book once it committed.
struct Changes {
    keys: HashMap<LockingKey, KeyState>,
    new_keys: usize,
    /// Records per tip, in order of first appearance.
    rows: Vec<(i64, Vec<u8>, i64)>,
    credited: Vec<(i64, [u8; 32])>,
    blocks: Vec<BlockRow>,
    /// The pool's cumulative work after the group.
    pool_work: Work,
}

/// A found block as the group writes it.
struct BlockRow {
    hash: [u8; 32],
    key_id: i64,
    channel_id: u32,
    facts: Option<BlockFacts>,
    /// The pool's cumulative work including the share that found it.
    pool_work: Work,
}

pub(super) async fn write_group(
    db: &Db,
    book: &mut Book,
    shares: &[&AcceptedShare],
) -> Result<Written, LedgerError> {
    let now = hashpool_role::unix_now_ms();
    let mut conn = begin_write(db).await?;
    let result = async {
        book.catch_up(&mut conn).await?;
        let (mut changes, outcomes, epoch_ends_at) = apply(book, shares, now);
        if !changes.credited.is_empty() {
            merge_stored_minutes(&mut conn, book, &mut changes).await?;
            // The whole group in one batch of statements: one round trip to SQLite's worker
            // thread (or to PostgreSQL) instead of one per statement.
            let batch = group_sql(db.backend, book, &changes, now);
            conn.execute(batch.as_str()).await?;
        }
        Ok((changes, outcomes, epoch_ends_at))
    }
    .await;
    // A statement failed inside the transaction: nothing of the group stays.
    let (changes, outcomes, epoch_ends_at) = finish(conn, result).await?;
    if changes.credited.is_empty() {
        return Ok(Written {
            outcomes,
            epoch_ends_at,
        });
    }
    book.generation = book.next_generation();
    book.next_key_id += changes.new_keys as i64;
    for (_, _, count) in &changes.rows {
        book.next_seq += count;
    }
    for (tip, hash) in &changes.credited {
        book.seen.insert(*tip, hash);
    }
    book.pool_work = changes.pool_work;
    book.keys.extend(changes.keys);
    Ok(Written {
        outcomes,
        epoch_ends_at,
    })
}

/// Works out the group's outcome and every changed row, without touching the book. Stops
/// before the first share to be credited that starts at or past the open epoch's planned end,
/// and says where.
fn apply(
    book: &Book,
    shares: &[&AcceptedShare],
    now: i64,
) -> (Changes, GroupOutcome, Option<usize>) {
    let minute = now.div_euclid(60_000);
    let mut changes = Changes {
        keys: HashMap::new(),
        new_keys: 0,
        rows: Vec::new(),
        credited: Vec::with_capacity(shares.len()),
        blocks: Vec::new(),
        pool_work: book.pool_work,
    };
    let mut in_group: HashSet<[u8; 32]> = HashSet::with_capacity(shares.len());
    let mut outcomes = Vec::with_capacity(shares.len());
    let planned_end = book.epoch.map(|e| e.planned_end());
    for (i, s) in shares.iter().enumerate() {
        if book.seen.contains(&s.share_hash) || in_group.contains(&s.share_hash) {
            outcomes.push(Ok(false));
            continue;
        }
        if planned_end.is_some_and(|end| changes.pool_work.hashes() >= end) {
            return (changes, outcomes, Some(i));
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
        let (Some(pending), Some(total), Some(pool_work)) = (
            state.pending.checked_add(s.work),
            state.total.checked_add(s.work),
            changes.pool_work.checked_add(s.work),
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
        changes.pool_work = pool_work;
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
            changes.blocks.push(BlockRow {
                hash: s.share_hash,
                key_id: state.id,
                channel_id: s.channel_id,
                facts: s.block,
                pool_work,
            });
        }
        in_group.insert(s.share_hash);
        changes.credited.push((s.tip, s.share_hash));
        outcomes.push(Ok(true));
    }
    (changes, outcomes, None)
}

/// The group's transaction as one batch of statements. Every value is the ledger's own
/// (integers, and bytes written as hex literals): nothing a peer sends reaches it as text.
fn group_sql(backend: Backend, book: &Book, changes: &Changes, now: i64) -> String {
    let blob = |out: &mut String, bytes: &[u8]| blob(backend, out, bytes);
    let records: usize = changes.rows.iter().map(|(_, r, _)| r.len()).sum();
    let mut sql = String::with_capacity(records * 2 + changes.keys.len() * 300 + 512);
    let generation = book.next_generation();
    let _ = writeln!(
        sql,
        "UPDATE ledger_meta SET generation = {generation} WHERE id = 1;"
    );
    if !changes.rows.is_empty() {
        sql.push_str(
            "INSERT INTO share_log (first_seq, tip, committed_at, count, records) VALUES ",
        );
        let mut seq = book.next_seq;
        for (i, (tip, records, count)) in changes.rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "({seq}, {tip}, {now}, {count}, ");
            blob(&mut sql, records);
            sql.push(')');
            seq += count;
        }
        sql.push_str(";\n");
    }
    if !changes.keys.is_empty() {
        sql.push_str(
            "INSERT INTO accruals (locking_key, key_id, pending_work, total_work, share_count, \
             chain, unbatched, last_share_at, gen) VALUES ",
        );
        for (i, (key, s)) in changes.keys.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            blob(&mut sql, key.as_bytes());
            let _ = write!(sql, ", {}, ", s.id);
            blob(&mut sql, &work_bytes(s.pending));
            sql.push_str(", ");
            blob(&mut sql, &work_bytes(s.total));
            let _ = write!(sql, ", {}, ", s.shares);
            blob(&mut sql, &s.chain);
            match s.last_share_ms {
                Some(at) => {
                    let _ = write!(sql, ", {}, {at}, {generation})", s.unbatched);
                }
                None => {
                    let _ = write!(sql, ", {}, NULL, {generation})", s.unbatched);
                }
            }
        }
        sql.push_str(
            " ON CONFLICT (locking_key) DO UPDATE SET pending_work = excluded.pending_work, \
             total_work = excluded.total_work, share_count = excluded.share_count, \
             chain = excluded.chain, unbatched = excluded.unbatched, \
             last_share_at = excluded.last_share_at, gen = excluded.gen;\n",
        );
        let minutes: Vec<_> = changes
            .keys
            .values()
            .filter_map(|s| s.minute.map(|m| (s.id, m)))
            .collect();
        if !minutes.is_empty() {
            sql.push_str("INSERT INTO key_minutes (key_id, minute, work, shares) VALUES ");
            for (i, (id, (minute, work, count))) in minutes.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                let _ = write!(sql, "({id}, {minute}, ");
                blob(&mut sql, &work_bytes(*work));
                let _ = write!(sql, ", {count})");
            }
            sql.push_str(
                " ON CONFLICT (key_id, minute) DO UPDATE SET work = excluded.work, \
                 shares = excluded.shares;\n",
            );
        }
    }
    for b in &changes.blocks {
        sql.push_str(
            "INSERT INTO found_blocks (hash, key_id, channel_id, found_at, height, \
             value_sats, network_work, pool_work) VALUES (",
        );
        blob(&mut sql, &b.hash);
        let _ = write!(sql, ", {}, {}, {now}, ", b.key_id, b.channel_id);
        match &b.facts {
            Some(f) => {
                let _ = write!(sql, "{}, {}, ", f.height, f.value_sats);
                blob(&mut sql, &work_bytes(f.network_work));
            }
            None => sql.push_str("NULL, NULL, NULL"),
        }
        sql.push_str(", ");
        blob(&mut sql, &work_bytes(b.pool_work));
        sql.push_str(") ON CONFLICT (hash) DO NOTHING;\n");
    }
    sql
}

/// A key's work in the current minute is written whole each group. Only in the minute the
/// ledger was opened in can a figure be stored that the book does not hold (written before a
/// restart): that one is read once and added to. Later minutes are the writer's alone, or
/// were read with the keys another instance wrote (`Book::catch_up`).
async fn merge_stored_minutes(
    conn: &mut AnyConnection,
    book: &Book,
    changes: &mut Changes,
) -> Result<(), LedgerError> {
    for (key, state) in changes.keys.iter_mut() {
        let Some((minute, work, count)) = state.minute else {
            continue;
        };
        let held = book
            .keys
            .get(key)
            .and_then(|k| k.minute)
            .is_some_and(|(m, _, _)| m == minute);
        if held || minute != book.opened_minute {
            continue;
        }
        let stored: Option<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT work, shares FROM key_minutes WHERE key_id = $1 AND minute = $2",
        )
        .bind(state.id)
        .bind(minute)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((w, c)) = stored {
            let work = work.checked_add(work_from(w)?).unwrap_or(work);
            state.minute = Some((minute, work, count + c));
        }
    }
    Ok(())
}
