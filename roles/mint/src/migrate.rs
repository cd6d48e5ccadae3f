//! Moving the mint's SQLite database into PostgreSQL (`mint migrate-database`), checked. Both
//! databases are first brought to CDK's current schema (as the mint would at its start), then
//! every table the file holds is copied into the empty PostgreSQL database in one transaction
//! (parents before the tables that refer to them), each value converted to the column's type
//! there. The totals (rows per table; proofs and their amounts per state; blind signatures and
//! their amount; quotes paid and issued; melts per state) are read from the file and again
//! inside the transaction: any difference rolls the copy back. The mint must be stopped; its
//! seed file moves with it unchanged (the keysets are derived from it).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::Path,
    str::FromStr,
};

use sqlx::{
    postgres::PgArguments,
    sqlite::{SqliteConnectOptions, SqliteRow},
    Arguments, Column, Connection, PgConnection, Row, SqliteConnection, TypeInfo, ValueRef,
};

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}: no such database file")]
    NoSource(String),
    #[error("preparing the schema: {0}")]
    Schema(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "the destination already holds a mint (table {0} has rows); migrate into an empty database"
    )]
    NotEmpty(String),
    #[error("table {table}: column {column} is not in the PostgreSQL schema")]
    MissingColumn { table: String, column: String },
    #[error("table {table}, column {column}: {value} cannot become {to}")]
    Convert {
        table: String,
        column: String,
        value: String,
        to: String,
    },
    #[error("the totals differ after the copy, nothing kept: before {before}; after {after}")]
    TotalsDiffer { before: String, after: String },
}

/// What the mint's database adds up to; equal before and after a move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MintTotals {
    /// Rows of every table copied.
    pub rows: BTreeMap<String, u64>,
    /// Proofs per state: (count, amount).
    pub proofs: BTreeMap<String, (u64, u64)>,
    /// Blind signatures: (count, amount).
    pub signatures: (u64, u64),
    /// Mint quotes: (count, amount paid, amount issued).
    pub mint_quotes: (u64, u64, u64),
    /// Melt quotes per state.
    pub melts: BTreeMap<String, u64>,
}

impl fmt::Display for MintTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<String> = self.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
        let proofs: Vec<String> = self
            .proofs
            .iter()
            .map(|(s, (n, a))| format!("{s} {n} ({a})"))
            .collect();
        write!(
            f,
            "rows: {}; proofs: {}; blind signatures {} ({}); mint quotes {} (paid {}, issued {}); \
             melt quotes {:?}",
            rows.join(", "),
            proofs.join(", "),
            self.signatures.0,
            self.signatures.1,
            self.mint_quotes.0,
            self.mint_quotes.1,
            self.mint_quotes.2,
            self.melts
        )
    }
}

/// Tables that hold a mint's data: the destination must have no row in any of them.
const HOLDS_A_MINT: &[&str] = &[
    "keyset",
    "proof",
    "blind_signature",
    "mint_quote",
    "melt_quote",
    "kv_store",
];

/// Moves the mint database at `from` into the empty PostgreSQL database `to`; returns the
/// totals, equal on both sides.
pub async fn migrate_database(from: &Path, to: &str) -> Result<MintTotals, MigrateError> {
    if !from.is_file() {
        return Err(MigrateError::NoSource(from.display().to_string()));
    }
    // CDK's migrations on both sides (the connections they open are closed when dropped).
    drop(
        cdk_sqlite::MintSqliteDatabase::new(from.to_path_buf())
            .await
            .map_err(|e| MigrateError::Schema(format!("{}: {e}", from.display())))?,
    );
    drop(
        cdk_postgres::MintPgDatabase::new(to)
            .await
            .map_err(|e| MigrateError::Schema(format!("PostgreSQL: {e}")))?,
    );
    let options = SqliteConnectOptions::from_str("sqlite://")?
        .filename(from)
        .read_only(true);
    let mut src = SqliteConnection::connect_with(&options).await?;
    let mut dest = PgConnection::connect(to).await?;
    let tables = source_tables(&mut src).await?;
    let before = totals::<sqlx::Sqlite>(&mut src, &tables).await?;
    let mut tx = dest.begin().await?;
    let columns = dest_columns(&mut tx).await?;
    for table in HOLDS_A_MINT.iter().filter(|t| columns.contains_key(**t)) {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            return Err(MigrateError::NotEmpty(table.to_string()));
        }
    }
    // Children first: what a fresh schema puts in its tables (keyset_epoch's counter row) is
    // replaced by the file's.
    let order = copy_order(&mut tx, &tables).await?;
    for table in order.iter().rev().filter(|t| columns.contains_key(*t)) {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    for table in order {
        let Some(types) = columns.get(&table) else {
            return Err(MigrateError::MissingColumn {
                table,
                column: "(the table)".into(),
            });
        };
        copy_table(&mut src, &mut tx, &table, types).await?;
        reset_serials(&mut tx, &table).await?;
    }
    let after = totals::<sqlx::Postgres>(&mut tx, &tables).await?;
    if after != before {
        return Err(MigrateError::TotalsDiffer {
            before: before.to_string(),
            after: after.to_string(),
        });
    }
    tx.commit().await?;
    Ok(after)
}

/// The file's tables holding the mint's data: not SQLite's own, nor the record of CDK's
/// migrations (`migrations`: each database keeps its own, of its own schema's migrations).
async fn source_tables(src: &mut SqliteConnection) -> Result<Vec<String>, MigrateError> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND name != 'migrations' ORDER BY name",
    )
    .fetch_all(&mut *src)
    .await?)
}

/// Every table of the destination and its columns' types.
async fn dest_columns(
    dest: &mut PgConnection,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, MigrateError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *dest)
    .await?;
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (table, column, ty) in rows {
        out.entry(table).or_default().insert(column, ty);
    }
    Ok(out)
}

/// `tables` with every table after those its foreign keys refer to.
async fn copy_order(
    dest: &mut PgConnection,
    tables: &[String],
) -> Result<Vec<String>, MigrateError> {
    let refs: Vec<(String, String)> = sqlx::query_as(
        "SELECT tc.table_name::text, ccu.table_name::text \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.constraint_column_usage ccu \
           ON tc.constraint_name = ccu.constraint_name AND tc.table_schema = ccu.table_schema \
         WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = current_schema()",
    )
    .fetch_all(&mut *dest)
    .await?;
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    let mut left: Vec<&String> = tables.iter().collect();
    while !left.is_empty() {
        let ready: Vec<&String> = left
            .iter()
            .copied()
            .filter(|t| {
                refs.iter().all(|(child, parent)| {
                    child != *t
                        || parent == *t
                        || placed.contains(parent)
                        || !tables.contains(parent)
                })
            })
            .collect();
        // A cycle (none in CDK's schema) is copied as it stands.
        let next = if ready.is_empty() {
            left.clone()
        } else {
            ready
        };
        for t in next {
            placed.insert(t.clone());
            order.push(t.clone());
            left.retain(|l| *l != t);
        }
    }
    Ok(order)
}

/// One SQLite value, as stored.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

fn read_value(row: &SqliteRow, i: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().name().to_ascii_uppercase();
    Ok(match kind.as_str() {
        "INTEGER" | "BOOLEAN" | "INT8" | "BIGINT" => Value::Int(row.try_get(i)?),
        "REAL" => Value::Real(row.try_get(i)?),
        "BLOB" => Value::Blob(row.try_get(i)?),
        _ => Value::Text(row.try_get(i)?),
    })
}

async fn copy_table(
    src: &mut SqliteConnection,
    dest: &mut PgConnection,
    table: &str,
    types: &BTreeMap<String, String>,
) -> Result<(), MigrateError> {
    let rows = sqlx::query(&format!("SELECT * FROM {table}"))
        .fetch_all(&mut *src)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let names: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut kinds = Vec::new();
    for name in &names {
        let ty = types.get(name).ok_or_else(|| MigrateError::MissingColumn {
            table: table.to_string(),
            column: name.clone(),
        })?;
        kinds.push(ty.clone());
    }
    let params: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, ty)| match ty.as_str() {
            "json" | "jsonb" => format!("${}::{ty}", i + 1),
            _ => format!("${}", i + 1),
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
        params.join(", ")
    );
    for row in &rows {
        let mut args = PgArguments::default();
        for (i, ty) in kinds.iter().enumerate() {
            let value = read_value(row, i)?;
            bind(&mut args, value, ty).map_err(|(value, to)| MigrateError::Convert {
                table: table.to_string(),
                column: names[i].clone(),
                value,
                to,
            })?;
        }
        sqlx::query_with(&sql, args).execute(&mut *dest).await?;
    }
    Ok(())
}

/// Adds `value` as the PostgreSQL column type `ty` takes it; `Err((value, type))` when it
/// cannot be.
fn bind(args: &mut PgArguments, value: Value, ty: &str) -> Result<(), (String, String)> {
    let refuse = |v: &str| Err((v.to_string(), ty.to_string()));
    let added = match (ty, value) {
        ("smallint" | "integer" | "bigint", Value::Int(v)) => args.add(v),
        ("smallint" | "integer" | "bigint", Value::Text(t)) => match t.parse::<i64>() {
            Ok(v) => args.add(v),
            Err(_) => return refuse(&t),
        },
        ("smallint" | "integer" | "bigint", Value::Null) => args.add(None::<i64>),
        ("boolean", Value::Int(v)) => args.add(v != 0),
        ("boolean", Value::Null) => args.add(None::<bool>),
        ("bytea", Value::Blob(b)) => args.add(b),
        ("bytea", Value::Text(t)) => args.add(t.into_bytes()),
        ("bytea", Value::Null) => args.add(None::<Vec<u8>>),
        ("real" | "double precision", Value::Real(v)) => args.add(v),
        ("real" | "double precision", Value::Int(v)) => args.add(v as f64),
        ("real" | "double precision", Value::Null) => args.add(None::<f64>),
        (_, Value::Text(t)) => args.add(t),
        (_, Value::Int(v)) => args.add(v.to_string()),
        (_, Value::Real(v)) => args.add(v.to_string()),
        (_, Value::Null) => args.add(None::<String>),
        (_, Value::Blob(b)) => return refuse(&format!("{} bytes", b.len())),
    };
    added.map_err(|e| (e.to_string(), ty.to_string()))
}

/// Sequences of `table`'s serial columns continue after the copied ids.
async fn reset_serials(dest: &mut PgConnection, table: &str) -> Result<(), MigrateError> {
    let serials: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = \
         current_schema() AND table_name = $1 AND column_default LIKE 'nextval(%'",
    )
    .bind(table)
    .fetch_all(&mut *dest)
    .await?;
    for column in serials {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX(\"{column}\") FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut *dest)
        .await?;
    }
    Ok(())
}

/// The totals of the tables named, read on `conn` (SQLite or PostgreSQL: the same SQL).
async fn totals<DB>(
    conn: &mut DB::Connection,
    tables: &[String],
) -> Result<MintTotals, MigrateError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    String: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut t = MintTotals::default();
    for table in tables {
        let row = sqlx::query::<DB>(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *conn)
            .await?;
        t.rows.insert(table.clone(), count(row.try_get(0)?));
    }
    let has = |name: &str| tables.iter().any(|t| t == name);
    if has("proof") {
        for row in sqlx::query::<DB>(
            "SELECT state, COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM proof \
             GROUP BY state ORDER BY state",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            t.proofs.insert(
                row.try_get(0)?,
                (count(row.try_get(1)?), count(row.try_get(2)?)),
            );
        }
    }
    if has("blind_signature") {
        let row = sqlx::query::<DB>(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM blind_signature",
        )
        .fetch_one(&mut *conn)
        .await?;
        t.signatures = (count(row.try_get(0)?), count(row.try_get(1)?));
    }
    if has("mint_quote") {
        let row = sqlx::query::<DB>(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount_paid), 0) AS BIGINT), \
             CAST(COALESCE(SUM(amount_issued), 0) AS BIGINT) FROM mint_quote",
        )
        .fetch_one(&mut *conn)
        .await?;
        t.mint_quotes = (
            count(row.try_get(0)?),
            count(row.try_get(1)?),
            count(row.try_get(2)?),
        );
    }
    if has("melt_quote") {
        for row in sqlx::query::<DB>(
            "SELECT state, COUNT(*) FROM melt_quote GROUP BY state ORDER BY state",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            t.melts.insert(row.try_get(0)?, count(row.try_get(1)?));
        }
    }
    Ok(t)
}
