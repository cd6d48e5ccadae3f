//! Moving a SQLite ledger into PostgreSQL (`pool migrate-ledger`), checked: the ledger's totals
//! (every key's work and shares, batches and their ehash, quotes, refusals, the share log's
//! records, found blocks, epochs, payouts) are read from the file, the rows copied in one
//! PostgreSQL transaction, and the same totals read back inside it before it commits. Any
//! difference rolls the copy back. The destination must hold no ledger yet. The pool must be
//! stopped while it runs (the file is read as it stands).

use std::fmt;

use sqlx::{AnyConnection, Row};

use super::{
    error::LedgerError,
    legacy,
    store::{begin_write, finish, work_from, Db, LedgerLocation},
};

/// What the ledger adds up to; equal before and after a move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub keys: u64,
    pub total_work: u128,
    pub pending_work: u128,
    pub shares: u64,
    pub batches: u64,
    pub batched_ehash: u64,
    pub quotes: u64,
    pub quoted_ehash: u64,
    pub refused: u64,
    pub log_rows: u64,
    pub log_records: u64,
    pub pruned_passes: u64,
    pub found_blocks: u64,
    pub epochs: u64,
    pub payouts: u64,
    pub payout_sats: u64,
    pub key_minutes: u64,
    pub legacy_shares: u64,
}

impl fmt::Display for LedgerTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys, {} hashes accrued ({} pending), {} shares; {} batches ({} ehash), {} \
             quoted ({} ehash), {} refused; share log {} rows / {} records, {} pruning passes; \
             {} found blocks, {} epochs, {} payouts ({} sats), {} key-minutes, {} pre-log shares",
            self.keys,
            self.total_work,
            self.pending_work,
            self.shares,
            self.batches,
            self.batched_ehash,
            self.quotes,
            self.quoted_ehash,
            self.refused,
            self.log_rows,
            self.log_records,
            self.pruned_passes,
            self.found_blocks,
            self.epochs,
            self.payouts,
            self.payout_sats,
            self.key_minutes,
            self.legacy_shares
        )
    }
}

/// A column's kind (every column is copied as nullable).
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Bytes,
    Text,
}

use Kind::{Bytes, Int, Text};

/// Every table of the ledger and its columns, in an order that respects nothing but itself
/// (the schema has no foreign keys on PostgreSQL).
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "ledger_meta",
        &[
            ("id", Int),
            ("unit", Text),
            ("unit_work", Bytes),
            ("recorded_at", Int),
            ("generation", Int),
        ],
    ),
    (
        "accruals",
        &[
            ("locking_key", Bytes),
            ("pending_work", Bytes),
            ("total_work", Bytes),
            ("share_count", Int),
            ("key_id", Int),
            ("chain", Bytes),
            ("unbatched", Int),
            ("last_share_at", Int),
            ("batch_from_seq", Int),
            ("batch_from_chain", Bytes),
            ("gen", Int),
        ],
    ),
    (
        "batches",
        &[
            ("id", Int),
            ("request_id", Bytes),
            ("locking_key", Bytes),
            ("amount", Int),
            ("work", Bytes),
            ("share_count", Int),
            ("share_commitment", Bytes),
            ("created_at", Int),
            ("quote_id", Text),
            ("answered_at", Int),
            ("refused_code", Text),
            ("refused_at", Int),
            ("log_from", Int),
            ("log_until", Int),
            ("chain_from", Bytes),
            ("epoch", Int),
        ],
    ),
    (
        "shares",
        &[
            ("share_hash", Bytes),
            ("locking_key", Bytes),
            ("channel_id", Int),
            ("work", Bytes),
            ("block_found", Int),
            ("accepted_at", Int),
            ("batch_id", Int),
        ],
    ),
    (
        "share_log",
        &[
            ("first_seq", Int),
            ("tip", Int),
            ("committed_at", Int),
            ("count", Int),
            ("records", Bytes),
        ],
    ),
    (
        "share_log_pruned",
        &[
            ("through_seq", Int),
            ("from_seq", Int),
            ("shares", Int),
            ("digest", Bytes),
            ("pruned_at", Int),
        ],
    ),
    (
        "key_minutes",
        &[
            ("key_id", Int),
            ("minute", Int),
            ("work", Bytes),
            ("shares", Int),
        ],
    ),
    (
        "found_blocks",
        &[
            ("hash", Bytes),
            ("key_id", Int),
            ("channel_id", Int),
            ("found_at", Int),
            ("height", Int),
            ("value_sats", Int),
            ("network_work", Bytes),
            ("pool_work", Bytes),
            ("status", Text),
            ("confirmations", Int),
            ("status_at", Int),
        ],
    ),
    (
        "epochs",
        &[
            ("idx", Int),
            ("start_work", Bytes),
            ("length", Bytes),
            ("network_work", Bytes),
            ("end_work", Bytes),
            ("opened_at", Int),
            ("closed_at", Int),
        ],
    ),
    (
        "payouts",
        &[
            ("quote_id", Text),
            ("sats", Int),
            ("address", Text),
            ("script", Bytes),
            ("recorded_at", Int),
            ("state", Text),
            ("height", Int),
            ("block_hash", Bytes),
            ("txid", Bytes),
            ("vout", Int),
            ("changed_at", Int),
        ],
    ),
];

/// Rows copied per statement.
const ROWS_PER_INSERT: usize = 200;

/// Moves the SQLite ledger at `from` into the empty PostgreSQL database `to`; returns the
/// totals, equal on both sides.
pub async fn migrate_ledger(from: &std::path::Path, to: &str) -> Result<LedgerTotals, LedgerError> {
    if !from.is_file() {
        return Err(LedgerError::Database(format!(
            "{}: no such ledger file",
            from.display()
        )));
    }
    let source = Db::connect(&LedgerLocation::File(from.to_path_buf()), 1, false).await?;
    // The file is brought up to the current schema first (as the pool would on its next
    // start), so what is copied is what a pool would read.
    source.migrate().await?;
    legacy::convert(&source).await?;
    let dest = Db::connect(&LedgerLocation::Postgres(to.to_string()), 1, false).await?;
    dest.migrate().await?;
    let mut src = source.pool.acquire().await?;
    let before = totals(&mut src).await?;
    let mut tx = begin_write(&dest).await?;
    let result = async {
        let held: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM ledger_meta) + (SELECT COUNT(*) FROM accruals) \
             + (SELECT COUNT(*) FROM batches) + (SELECT COUNT(*) FROM share_log)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if held > 0 {
            return Err(LedgerError::Database(
                "the destination already holds a ledger; migrate into an empty database".into(),
            ));
        }
        for (table, columns) in TABLES {
            copy_table(&mut src, &mut tx, table, columns).await?;
        }
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('batches', 'id'), \
             COALESCE((SELECT MAX(id) FROM batches), 0) + 1, false)",
        )
        .execute(&mut *tx)
        .await?;
        let after = totals(&mut tx).await?;
        if after != before {
            return Err(LedgerError::Database(format!(
                "the totals differ after the copy, nothing kept: before {before}; after {after}"
            )));
        }
        Ok(after)
    }
    .await;
    finish(tx, result).await
}

async fn copy_table(
    src: &mut AnyConnection,
    dest: &mut AnyConnection,
    table: &str,
    columns: &[(&str, Kind)],
) -> Result<(), LedgerError> {
    let names = columns
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!("SELECT {names} FROM {table}"))
        .fetch_all(&mut *src)
        .await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..columns.len() {
                if c > 0 {
                    sql.push(',');
                }
                n += 1;
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for (c, (_, kind)) in columns.iter().enumerate() {
                q = match kind {
                    Int => q.bind(row.try_get::<Option<i64>, _>(c)?),
                    Bytes => q.bind(row.try_get::<Option<Vec<u8>>, _>(c)?),
                    Text => q.bind(row.try_get::<Option<String>, _>(c)?),
                };
            }
        }
        q.execute(&mut *dest).await?;
    }
    Ok(())
}

/// The ledger's totals, read on `conn`.
pub async fn totals(conn: &mut AnyConnection) -> Result<LedgerTotals, LedgerError> {
    let mut t = LedgerTotals::default();
    for r in sqlx::query("SELECT total_work, pending_work, share_count FROM accruals")
        .fetch_all(&mut *conn)
        .await?
    {
        t.keys += 1;
        t.total_work = t
            .total_work
            .checked_add(work_from(r.get(0))?.hashes())
            .ok_or(LedgerError::CorruptWork)?;
        t.pending_work = t
            .pending_work
            .checked_add(work_from(r.get(1))?.hashes())
            .ok_or(LedgerError::CorruptWork)?;
        t.shares += u64::try_from(r.get::<i64, _>(2)).unwrap_or(0);
    }
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    let (batches, ehash): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM batches")
            .fetch_one(&mut *conn)
            .await?;
    (t.batches, t.batched_ehash) = (count(batches), count(ehash));
    let (quotes, quoted): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM batches \
         WHERE quote_id IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    (t.quotes, t.quoted_ehash) = (count(quotes), count(quoted));
    t.refused = count(
        sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE refused_code IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?,
    );
    let (rows, records): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM share_log")
            .fetch_one(&mut *conn)
            .await?;
    (t.log_rows, t.log_records) = (count(rows), count(records));
    let simple = [
        (
            "SELECT COUNT(*) FROM share_log_pruned",
            &mut t.pruned_passes,
        ),
        ("SELECT COUNT(*) FROM found_blocks", &mut t.found_blocks),
        ("SELECT COUNT(*) FROM epochs", &mut t.epochs),
        ("SELECT COUNT(*) FROM payouts", &mut t.payouts),
        (
            "SELECT CAST(COALESCE(SUM(sats), 0) AS BIGINT) FROM payouts",
            &mut t.payout_sats,
        ),
        ("SELECT COUNT(*) FROM key_minutes", &mut t.key_minutes),
        ("SELECT COUNT(*) FROM shares", &mut t.legacy_shares),
    ];
    for (sql, field) in simple {
        *field = count(sqlx::query_scalar(sql).fetch_one(&mut *conn).await?);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        accepted_share::{AcceptedShare, BlockFacts},
        ledger::{
            test_db::{key, unit, TestDb},
            AccrualLedger,
        },
    };
    use hashpool_ehash::Work;

    fn share(n: u32, k: u8, work: u128, block: bool) -> AcceptedShare {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&n.to_le_bytes());
        AcceptedShare {
            channel_id: 4,
            locking_key: key(k),
            share_hash: hash,
            work: Work::from_hashes(work),
            block_found: block,
            block: block.then_some(BlockFacts {
                height: 120,
                value_sats: 5_000_000_000,
                network_work: Work::from_hashes(1 << 40),
            }),
            tip: 3,
        }
    }

    #[tokio::test]
    async fn a_sqlite_ledger_moves_into_postgresql_with_equal_totals() {
        let Some(pg) = TestDb::postgres().await else {
            return;
        };
        let file = TestDb::sqlite();
        let LedgerLocation::File(path) = file.location() else {
            unreachable!()
        };
        // Shares, batches (quoted, refused, open), a found block, epochs, a payout.
        let ledger = AccrualLedger::open(&path, "hash", unit()).await.unwrap();
        ledger
            .observe_network_work(Work::from_hashes(3_000))
            .await
            .unwrap();
        let mut shares: Vec<_> = (0..300u32)
            .map(|n| share(n, (n % 4) as u8 + 1, 100 + u128::from(n), false))
            .collect();
        shares.push(share(1_000, 2, 77, true));
        let r = ledger.record_all(shares).await;
        assert!(r.await.unwrap().iter().all(|o| *o == Ok(true)));
        ledger.create_batches().await.unwrap();
        // Epoch turns batched some of them as the shares came in.
        let made = ledger.open_batches().await.unwrap();
        assert!(made.len() >= 3, "{} batches", made.len());
        ledger
            .record_quote(&made[0].request_id, "q0")
            .await
            .unwrap();
        ledger
            .record_refusal(&made[1].request_id, "refused")
            .await
            .unwrap();
        ledger
            .record_withdrawals(vec![hashpool_settlement::withdrawals::Withdrawal {
                quote_id: "w1".into(),
                sats: 25_000,
                address: "bcrt1qexample".into(),
                script: "0014".to_string() + &"ab".repeat(20),
                recorded_at: 1,
            }])
            .await
            .unwrap();
        let expected = totals(&mut ledger.db.pool.acquire().await.unwrap())
            .await
            .unwrap();
        let accruals: Vec<_> = {
            let mut v = Vec::new();
            for k in 1..=4u8 {
                v.push(ledger.accrual(&key(k)).await.unwrap());
            }
            v
        };
        let batches = ledger.batches_of(&key(1)).await.unwrap();
        drop(ledger);
        assert!(expected.quotes == 1 && expected.refused == 1 && expected.found_blocks == 1);

        let LedgerLocation::Postgres(url) = pg.location() else {
            unreachable!()
        };
        let moved = migrate_ledger(&path, &url).await.unwrap();
        assert_eq!(moved, expected);
        // The pool reads the moved ledger as it read the file.
        let ledger = AccrualLedger::open(pg.location(), "hash", unit())
            .await
            .unwrap();
        for k in 1..=4u8 {
            assert_eq!(
                ledger.accrual(&key(k)).await.unwrap(),
                accruals[k as usize - 1]
            );
        }
        assert_eq!(ledger.batches_of(&key(1)).await.unwrap(), batches);
        assert_eq!(ledger.found_blocks(10).await.unwrap().len(), 1);
        assert_eq!(ledger.payouts(10).await.unwrap().len(), 1);
        // New batches get new ids, and replays are still refused.
        let again = ledger.record_all(vec![share(5, 1, 100, false)]).await;
        assert_eq!(again.await.unwrap(), vec![Ok(false)]);
        let r = ledger.record_all(vec![share(2_000, 1, 5_000, false)]).await;
        assert_eq!(r.await.unwrap(), vec![Ok(true)]);
        let more = ledger.create_batches().await.unwrap();
        assert!(more.iter().all(|b| made.iter().all(|m| m.id != b.id)));
        drop(ledger);
        // A second move into the same database is refused, and changes nothing.
        let err = migrate_ledger(&path, &url).await.unwrap_err();
        assert!(err.to_string().contains("already holds a ledger"), "{err}");
        // A missing file is a clear error.
        let err = migrate_ledger(&path.with_file_name("nope.sqlite"), &url)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no such ledger file"), "{err}");
    }
}
