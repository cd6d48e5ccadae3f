//! How the ledger keeps its values in SQLite: work as 16 little-endian bytes, write
//! transactions that take the lock up front, and the unit the ledger was written with.

use hashpool_ehash::{UnitWork, Work};
use sqlx::{Row, Sqlite, SqlitePool};
use tracing::info;

use super::error::{describe_unit_work, LedgerError};

/// Records `unit` and `unit_work` in a ledger that has none yet, else checks them against the
/// recorded ones.
pub(super) async fn check_unit(
    db: &SqlitePool,
    unit: &str,
    unit_work: UnitWork,
) -> Result<(), LedgerError> {
    // One statement: two pools opening the same new file cannot both record different values.
    let recorded = sqlx::query(
        "INSERT INTO ledger_meta (id, unit, unit_work, recorded_at) VALUES (1, ?, ?, ?) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(unit)
    .bind(work_bytes(unit_work.work()))
    .bind(hashpool_role::unix_now_ms())
    .execute(db)
    .await?
    .rows_affected();
    if recorded > 0 {
        info!(
            unit,
            unit_work = %describe_unit_work(unit_work.work().hashes()),
            "the ledger records its unit and unit work"
        );
        return Ok(());
    }
    let row = sqlx::query("SELECT unit, unit_work FROM ledger_meta WHERE id = 1")
        .fetch_one(db)
        .await?;
    let stored_unit: String = row.get(0);
    let stored_work = work_from(row.get::<Vec<u8>, _>(1))?;
    if stored_unit != unit || stored_work != unit_work.work() {
        return Err(LedgerError::UnitMismatch {
            stored_unit,
            stored_unit_work: stored_work.hashes(),
            configured_unit: unit.to_string(),
            configured_unit_work: unit_work.work().hashes(),
        });
    }
    Ok(())
}

pub(super) fn work_bytes(w: Work) -> Vec<u8> {
    w.hashes().to_le_bytes().to_vec()
}

pub(super) fn work_from(bytes: Vec<u8>) -> Result<Work, LedgerError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| LedgerError::CorruptWork)?;
    Ok(Work::from_hashes(u128::from_le_bytes(array)))
}

/// Starts a transaction holding the write lock from its first statement. A deferred
/// transaction that reads before it writes fails to upgrade (SQLITE_BUSY, no retry) when
/// another writer committed in between; an immediate one waits for the lock instead.
pub(super) async fn begin_immediate(
    db: &SqlitePool,
) -> Result<sqlx::pool::PoolConnection<Sqlite>, LedgerError> {
    let mut conn = db.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    Ok(conn)
}

/// Commits on success, rolls back on error.
pub(super) async fn finish<T>(
    mut conn: sqlx::pool::PoolConnection<Sqlite>,
    result: Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    match result {
        Ok(v) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}
