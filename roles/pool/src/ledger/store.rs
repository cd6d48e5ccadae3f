//! Where the ledger is kept, and how its values are stored. Two backends behind sqlx's Any
//! driver, with the same SQL (`$n` parameters, which SQLite reads too): SQLite, a file beside
//! the pool (the embedded default), and PostgreSQL, a `postgres://` URL that several pool
//! instances share. Work is 16 little-endian bytes on both.
//!
//! Every write that depends on the writer's book runs in a transaction that first takes the
//! ledger's write lock: SQLite's own (`BEGIN IMMEDIATE`), or on PostgreSQL a transaction-scoped
//! advisory lock, so writes from all instances are serialised. Under the lock a writer reads
//! the ledger's generation (bumped by each such write) and catches its book up with what other
//! instances wrote since its own last write (`Book::catch_up`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use hashpool_ehash::{UnitWork, Work};
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    pool::PoolConnection,
    Any, AnyPool, Executor as _, Row,
};
use tracing::info;

use super::error::{describe_unit_work, LedgerError};

/// The advisory lock every ledger write takes on PostgreSQL ("hashpool" in ASCII).
const WRITE_LOCK: i64 = 0x6861_7368_706f_6f6c;

/// Where a ledger is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database (`postgres://user:password@host/db`), which several pool
    /// instances may share.
    Postgres(String),
}

impl LedgerLocation {
    /// Which backend the location opens.
    pub fn backend(&self) -> Backend {
        match self {
            LedgerLocation::File(_) => Backend::Sqlite,
            LedgerLocation::Postgres(_) => Backend::Postgres,
        }
    }

    /// For logs: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            LedgerLocation::File(p) => p.display().to_string(),
            LedgerLocation::Postgres(url) => hashpool_config::database_url::redact(url),
        }
    }
}

impl From<&Path> for LedgerLocation {
    fn from(p: &Path) -> Self {
        LedgerLocation::File(p.to_path_buf())
    }
}

impl From<&PathBuf> for LedgerLocation {
    fn from(p: &PathBuf) -> Self {
        LedgerLocation::File(p.clone())
    }
}

impl From<&LedgerLocation> for LedgerLocation {
    fn from(l: &LedgerLocation) -> Self {
        l.clone()
    }
}

impl From<PathBuf> for LedgerLocation {
    fn from(p: PathBuf) -> Self {
        LedgerLocation::File(p)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The ledger's connections and which backend they reach.
#[derive(Clone)]
pub(super) struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// Tags what this pool instance publishes to the others (random per connect).
    pub instance: u64,
}

pub(super) type Conn = PoolConnection<Any>;

impl Db {
    /// Connects to `location` (a SQLite file is created, with its directory, unless
    /// `read_only`).
    pub(super) async fn connect(
        location: &LedgerLocation,
        max_connections: u32,
        read_only: bool,
    ) -> Result<Self, LedgerError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match location {
            LedgerLocation::File(path) => {
                if !read_only {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            LedgerError::Database(format!("{}: {e}", dir.display()))
                        })?;
                    }
                }
                (sqlite_url(path, read_only)?, Backend::Sqlite)
            }
            LedgerLocation::Postgres(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(LedgerError::Database(format!(
                        "the ledger's database URL must start with postgres:// (got {})",
                        hashpool_config::database_url::redact(url)
                    )));
                }
                (url.clone(), Backend::Postgres)
            }
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // FULL: a committed transaction survives power loss, not only a
                        // process crash. WAL: readers never wait for the writer.
                        let pragmas = if read_only {
                            "PRAGMA busy_timeout = 5000;"
                        } else {
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 10000;"
                        };
                        conn.execute(pragmas).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            backend,
            instance: rand::random(),
        })
    }

    /// Creates or upgrades the ledger's tables.
    pub(super) async fn migrate(&self) -> Result<(), LedgerError> {
        let result = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations").run(&self.pool).await,
            Backend::Postgres => {
                sqlx::migrate!("./migrations-postgres")
                    .run(&self.pool)
                    .await
            }
        };
        result.map_err(|e| LedgerError::Database(format!("migration: {e}")))
    }
}

/// `sqlite:` URL of `path`: bytes outside a plain file name's are percent-encoded (SQLite's URL
/// reader decodes them).
fn sqlite_url(path: &Path, read_only: bool) -> Result<String, LedgerError> {
    let text = path
        .to_str()
        .ok_or_else(|| LedgerError::Database(format!("{}: not a UTF-8 path", path.display())))?;
    let mut url = String::from("sqlite:");
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_') {
            url.push(b as char);
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url.push_str(if read_only { "?mode=ro" } else { "?mode=rwc" });
    Ok(url)
}

/// Records `unit` and `unit_work` in a ledger that has none yet, else checks them against the
/// recorded ones.
pub(super) async fn check_unit(
    db: &AnyPool,
    unit: &str,
    unit_work: UnitWork,
) -> Result<(), LedgerError> {
    // One statement: two pools opening the same new ledger cannot both record different values.
    let recorded = sqlx::query(
        "INSERT INTO ledger_meta (id, unit, unit_work, recorded_at) VALUES (1, $1, $2, $3) \
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

/// Starts a transaction holding the ledger's write lock from its first statement. On SQLite, a
/// deferred transaction that reads before it writes fails to upgrade (SQLITE_BUSY, no retry)
/// when another writer committed in between; an immediate one waits for the lock instead. On
/// PostgreSQL the advisory lock serialises the writers of every pool instance; it is released
/// at commit or rollback.
pub(super) async fn begin_write(db: &Db) -> Result<Conn, LedgerError> {
    let mut conn = db.pool.acquire().await?;
    match db.backend {
        Backend::Sqlite => {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        }
        Backend::Postgres => {
            sqlx::query("BEGIN").execute(&mut *conn).await?;
            if let Err(e) = sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(WRITE_LOCK)
                .execute(&mut *conn)
                .await
            {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        }
    }
    Ok(conn)
}

/// Starts a read transaction that sees one snapshot of the ledger throughout.
pub(super) async fn begin_read(db: &Db) -> Result<Conn, LedgerError> {
    let mut conn = db.pool.acquire().await?;
    let begin = match db.backend {
        Backend::Sqlite => "BEGIN",
        Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    sqlx::query(begin).execute(&mut *conn).await?;
    Ok(conn)
}

/// Commits on success, rolls back on error.
pub(super) async fn finish<T>(
    mut conn: Conn,
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

/// `bytes` as a literal of the backend's binary type (for statements the ledger writes out
/// whole; only the ledger's own bytes go in).
pub(super) fn blob(backend: Backend, out: &mut String, bytes: &[u8]) {
    out.push_str(match backend {
        Backend::Sqlite => "X'",
        Backend::Postgres => "'\\x",
    });
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\'');
    if backend == Backend::Postgres {
        out.push_str("::bytea");
    }
}

/// Whether any row of `sql` (a `SELECT 1 ...`) exists; portable where `EXISTS` is not (a
/// boolean on PostgreSQL, an integer on SQLite).
pub(super) async fn exists(conn: &mut sqlx::AnyConnection, sql: &str) -> Result<bool, LedgerError> {
    Ok(sqlx::query(sql).fetch_optional(&mut *conn).await?.is_some())
}
