//! Where stats are kept: sqlx over SQLite (a file path) or PostgreSQL (a `postgres://` URL),
//! with the migrations in `migrations/`. SQL here is the subset both speak.

use std::path::Path;

use serde::Serialize;
use sqlx::{any::AnyPoolOptions, AnyPool};

use crate::protocol::{Block, Issuance, Snapshot};

/// Subject id of everything a service received, all reporters together.
pub const TOTAL: &str = "total";

/// A difficulty-1 share is 2^32 hashes on average.
const HASHES_PER_WORK: f64 = 4_294_967_296.0;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database location `{0}`: {1}")]
    Location(String, String),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SubjectRow {
    pub id: String,
    pub reporter: String,
    pub kind: String,
    pub label: String,
    pub parent: Option<String>,
    #[serde(serialize_with = "as_bool")]
    pub connected: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub shares_total: i64,
    pub nominal_hashrate: Option<f64>,
    /// Latest sample, from accepted work (H/s).
    pub hashrate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct BlockRow {
    pub hash: String,
    pub at: i64,
    pub reporter: String,
    pub subject: Option<String>,
    pub template_id: Option<i64>,
    pub height: Option<i64>,
    pub reward_sats: Option<i64>,
    pub difficulty: Option<f64>,
    /// The service's total accepted work (difficulty-1 shares) when the block arrived.
    pub work_total: Option<f64>,
    /// The work since the block before it (or since the first report), over its difficulty:
    /// 1.0 is a block found with exactly the expected work.
    #[sqlx(skip)]
    pub effort: Option<f64>,
}

/// The chain a reporter mines on, from its latest snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct NetworkRow {
    pub reporter: String,
    pub height: i64,
    pub difficulty: f64,
    pub tip_seen_at: i64,
    pub reported_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct IssuanceRow {
    pub quote_id: String,
    pub at: i64,
    pub reporter: String,
    pub amount: i64,
    pub locking_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct HealthRow {
    pub name: String,
    #[serde(serialize_with = "as_bool")]
    pub up: i64,
    pub detail: String,
    pub last_seen: i64,
}

/// The hashrate of one subject over one window ending now: the work accepted in it, as hashes
/// per second over the part of the window the service has reports for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashrateWindow {
    /// The window as asked (`1m`, `1h`, `1d`).
    pub window: String,
    pub secs: i64,
    /// H/s over `covered_secs`.
    pub hashrate: f64,
    /// Difficulty-1 shares of work accepted within the window.
    pub work: f64,
    pub shares: i64,
    /// Seconds of the window with reports: less than `secs` while the subject (or what
    /// retention kept of it) is younger than the window; 0 with no report at all.
    pub covered_secs: i64,
    /// The whole window is covered.
    pub complete: bool,
}

/// Rows removed by a retention pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Pruned {
    pub work: u64,
    pub samples: u64,
    pub balances: u64,
    pub subjects: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.work + self.samples + self.balances + self.subjects
    }
}

/// `postgres://...`, `sqlite:...` URLs as they are; anything else is a SQLite file path (its
/// directory is created).
fn database_url(location: &str) -> Result<String, StoreError> {
    let is_url = ["postgres://", "postgresql://", "sqlite:"]
        .iter()
        .any(|p| location.starts_with(p));
    if is_url {
        return Ok(location.to_string());
    }
    let path = Path::new(location);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Location(location.into(), e.to_string()))?;
    }
    Ok(format!("sqlite://{location}?mode=rwc"))
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(location: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = database_url(location)?;
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .connect(&url)
            .await?;
        if sqlite {
            // Readers (the HTTP API) never wait for the writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// A snapshot: work rows (the reporter's total and each subject's), subjects' state (those
    /// it no longer lists are disconnected), the reporter's services' health and its balance.
    pub async fn ingest_snapshot(
        &self,
        reporter: &str,
        now: i64,
        s: &Snapshot,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let work_row = "INSERT INTO work (at, subject, shares, work) VALUES ($1, $2, $3, $4)";
        for subject in [TOTAL.to_string(), reporter_subject(reporter)] {
            sqlx::query(work_row)
                .bind(now)
                .bind(subject)
                .bind(clamp_i64(s.shares))
                .bind(finite(s.work))
                .execute(&mut *tx)
                .await?;
        }
        // Connected subjects are marked 2 ("not yet seen in this snapshot"); those the snapshot
        // lists go back to 1, the rest to 0. One transaction: readers never see a 2.
        sqlx::query("UPDATE subjects SET connected = 2 WHERE reporter = $1 AND connected = 1")
            .bind(reporter)
            .execute(&mut *tx)
            .await?;
        for sub in &s.subjects {
            let id = scoped(reporter, &sub.id);
            if sub.shares > 0 || sub.work > 0.0 {
                sqlx::query(work_row)
                    .bind(now)
                    .bind(&id)
                    .bind(clamp_i64(sub.shares))
                    .bind(finite(sub.work))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO subjects (id, reporter, kind, label, parent, connected, first_seen, \
                 last_seen, shares_total, nominal_hashrate) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7, CASE WHEN $9 = 1 THEN $8 END) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, label = excluded.label, \
                 parent = excluded.parent, connected = 1, last_seen = excluded.last_seen, \
                 shares_total = excluded.shares_total, \
                 nominal_hashrate = excluded.nominal_hashrate, \
                 first_seen = CASE WHEN subjects.connected > 0 THEN subjects.first_seen \
                 ELSE excluded.first_seen END",
            )
            .bind(&id)
            .bind(reporter)
            .bind(&sub.kind)
            .bind(&sub.label)
            .bind(sub.parent.as_ref().map(|p| scoped(reporter, p)))
            .bind(now)
            .bind(clamp_i64(sub.shares_total))
            .bind(float_value(sub.nominal_hashrate))
            .bind(float_present(sub.nominal_hashrate))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE subjects SET connected = 0 WHERE reporter = $1 AND connected = 2")
            .bind(reporter)
            .execute(&mut *tx)
            .await?;
        for service in &s.services {
            upsert_health(&mut tx, &service.name, service.up, &service.detail, now).await?;
        }
        if let Some(n) = &s.network {
            sqlx::query(
                "INSERT INTO network (reporter, height, difficulty, tip_seen_at, reported_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reporter) DO UPDATE SET \
                 height = excluded.height, difficulty = excluded.difficulty, \
                 tip_seen_at = excluded.tip_seen_at, reported_at = excluded.reported_at",
            )
            .bind(reporter)
            .bind(clamp_i64(n.height))
            .bind(finite(n.difficulty))
            .bind(clamp_i64(n.tip_seen_at))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(balance) = s.wallet_balance {
            sqlx::query("INSERT INTO balance_samples (at, reporter, amount) VALUES ($1, $2, $3)")
                .bind(now)
                .bind(reporter)
                .bind(clamp_i64(balance))
                .execute(&mut *tx)
                .await?;
        }
        for (name, delta) in [
            ("shares_accepted", s.shares as f64),
            ("shares_rejected", s.shares_rejected as f64),
            ("work", finite(s.work)),
        ] {
            sqlx::query(
                "INSERT INTO totals (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = totals.value + excluded.value",
            )
            .bind(name)
            .bind(delta)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A block; the same hash twice is kept once. True if it was new.
    pub async fn ingest_block(
        &self,
        reporter: &str,
        now: i64,
        b: &Block,
    ) -> Result<bool, StoreError> {
        let difficulty = b.difficulty.map(finite).filter(|d| *d > 0.0);
        let done = sqlx::query(
            "INSERT INTO blocks (hash, at, reporter, subject, template_id, height, reward_sats, \
             difficulty, work_total) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             CASE WHEN $9 = 1 THEN $8 END, \
             (SELECT value FROM totals WHERE name = 'work')) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&b.hash)
        .bind(now)
        .bind(reporter)
        .bind(b.subject.as_ref().map(|s| scoped(reporter, s)))
        .bind(b.template_id.map(clamp_i64))
        .bind(b.height.map(clamp_i64))
        .bind(b.reward_sats.map(clamp_i64))
        .bind(float_value(difficulty))
        .bind(float_present(difficulty))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An issuance; the same quote twice is kept once. True if it was new.
    pub async fn ingest_issuance(
        &self,
        reporter: &str,
        now: i64,
        i: &Issuance,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO issuance (quote_id, at, reporter, amount, locking_key) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (quote_id) DO NOTHING",
        )
        .bind(&i.quote_id)
        .bind(now)
        .bind(reporter)
        .bind(clamp_i64(i.amount))
        .bind(&i.locking_key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A reporter connected (up) or left.
    pub async fn reporter_health(
        &self,
        reporter: &str,
        up: bool,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        upsert_health(&mut tx, reporter, up, detail, now).await?;
        if !up {
            sqlx::query("UPDATE subjects SET connected = 0 WHERE reporter = $1")
                .bind(reporter)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One hashrate sample for the total, each reporter and each connected subject: the work
    /// accepted over the last `window` seconds (less for a subject seen for less), as hashes
    /// per second. A subject seen for less than `min_span` seconds is not sampled yet (its
    /// first report's work would be divided by almost nothing); work a subject reported before
    /// it was last (re)connected is not counted. Returns the samples written.
    pub async fn sample(&self, now: i64, window: i64, min_span: i64) -> Result<usize, StoreError> {
        let window = window.max(1);
        let since = now - window;
        let mut subjects: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, first_seen FROM subjects WHERE connected = 1 ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        let reporters: Vec<(String, i64)> = sqlx::query_as(
            "SELECT subject, MIN(at) FROM work WHERE subject LIKE 'reporter:%' GROUP BY subject",
        )
        .fetch_all(&self.pool)
        .await?;
        let first_total: Option<i64> =
            sqlx::query_scalar("SELECT MIN(at) FROM work WHERE subject = $1")
                .bind(TOTAL)
                .fetch_one(&self.pool)
                .await?;
        if let Some(first) = first_total {
            subjects.push((TOTAL.to_string(), first));
        }
        subjects.extend(reporters);
        let sums: Vec<(String, Option<f64>)> = sqlx::query_as(
            "SELECT w.subject, SUM(w.work) FROM work w LEFT JOIN subjects s ON s.id = w.subject \
             WHERE w.at > $1 AND w.at <= $2 AND (s.first_seen IS NULL OR w.at >= s.first_seen) \
             GROUP BY w.subject",
        )
        .bind(since)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let sums: std::collections::HashMap<String, f64> = sums
            .into_iter()
            .map(|(s, w)| (s, w.unwrap_or(0.0)))
            .collect();
        let mut tx = self.pool.begin().await?;
        let mut written = 0;
        for (subject, first_seen) in &subjects {
            if now - first_seen < min_span {
                continue;
            }
            // A subject seen for 30 s has 30 s of work, not a window's: divide by what it had.
            let span = (now - first_seen).clamp(1, window) as f64;
            let work = sums.get(subject).copied().unwrap_or(0.0);
            sqlx::query("INSERT INTO hashrate_samples (at, subject, hashrate) VALUES ($1, $2, $3)")
                .bind(now)
                .bind(subject)
                .bind(work * HASHES_PER_WORK / span)
                .execute(&mut *tx)
                .await?;
            written += 1;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// At the service's start: nothing is connected until its reporter says so again (a
    /// service that stopped could not record who left meanwhile).
    pub async fn reset_connections(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE subjects SET connected = 0 WHERE connected <> 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE health SET up = 0, detail = 'no report since the stats service started' WHERE up <> 0")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Blocks found in all.
    pub async fn blocks_total(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM blocks")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Deletes samples, work rows, balances and long-gone subjects older than `cutoff`.
    /// Blocks and issuance are history and kept.
    pub async fn prune(&self, cutoff: i64) -> Result<Pruned, StoreError> {
        let mut tx = self.pool.begin().await?;
        let delete = |sql: &'static str| sqlx::query(sql).bind(cutoff);
        let work = delete("DELETE FROM work WHERE at < $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let samples = delete("DELETE FROM hashrate_samples WHERE at < $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let balances = delete("DELETE FROM balance_samples WHERE at < $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let subjects = delete("DELETE FROM subjects WHERE connected = 0 AND last_seen < $1")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Pruned {
            work,
            samples,
            balances,
            subjects,
        })
    }

    /// `subject`'s hashrate over each of `windows` (name, seconds) ending at `now`. As the
    /// samples: work since the subject was last (re)connected, divided by the time it has
    /// been seen when that is shorter than the window.
    pub async fn hashrate_windows(
        &self,
        subject: &str,
        now: i64,
        windows: &[(String, i64)],
    ) -> Result<Vec<HashrateWindow>, StoreError> {
        let first_work: Option<i64> =
            sqlx::query_scalar("SELECT MIN(at) FROM work WHERE subject = $1")
                .bind(subject)
                .fetch_one(&self.pool)
                .await?;
        let first_seen: Option<i64> =
            sqlx::query_scalar("SELECT first_seen FROM subjects WHERE id = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?;
        let Some(first_work) = first_work else {
            return Ok(windows
                .iter()
                .map(|(window, secs)| HashrateWindow {
                    window: window.clone(),
                    secs: *secs,
                    hashrate: 0.0,
                    work: 0.0,
                    shares: 0,
                    covered_secs: 0,
                    complete: false,
                })
                .collect());
        };
        let start = first_seen.map_or(first_work, |seen| seen.max(first_work));
        let mut out = Vec::with_capacity(windows.len());
        for (window, secs) in windows {
            let secs = (*secs).max(1);
            // SUM of a BIGINT is NUMERIC on PostgreSQL, which sqlx's Any driver cannot read.
            let (work, shares): (Option<f64>, Option<i64>) = sqlx::query_as(
                "SELECT SUM(work), CAST(SUM(shares) AS BIGINT) FROM work \
                 WHERE subject = $1 AND at > $2 AND at <= $3 AND at >= $4",
            )
            .bind(subject)
            .bind(now - secs)
            .bind(now)
            .bind(start)
            .fetch_one(&self.pool)
            .await?;
            let work = work.unwrap_or(0.0);
            let covered = (now - start).clamp(0, secs);
            out.push(HashrateWindow {
                window: window.clone(),
                secs,
                hashrate: work * HASHES_PER_WORK / covered.max(1) as f64,
                work,
                shares: shares.unwrap_or(0),
                covered_secs: covered,
                complete: covered >= secs,
            });
        }
        Ok(out)
    }

    /// Hashrate samples of `subject` since `since`, oldest first.
    pub async fn hashrate(&self, subject: &str, since: i64) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT at, hashrate FROM hashrate_samples WHERE subject = $1 AND at >= $2 \
             ORDER BY at",
        )
        .bind(subject)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Subjects (of `kind`, or all), connected first, with their latest hashrate sample.
    pub async fn subjects(&self, kind: Option<&str>) -> Result<Vec<SubjectRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.reporter, s.kind, s.label, s.parent, \
             s.connected, s.first_seen, s.last_seen, s.shares_total, \
             s.nominal_hashrate, \
             (SELECT h.hashrate FROM hashrate_samples h WHERE h.subject = s.id \
              ORDER BY h.at DESC LIMIT 1) AS hashrate \
             FROM subjects s WHERE ($1 IS NULL OR s.kind = $1) \
             ORDER BY s.connected DESC, s.id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The latest `limit` blocks, newest first, each with its effort.
    pub async fn blocks(&self, limit: i64) -> Result<Vec<BlockRow>, StoreError> {
        // One more than asked: the oldest listed block's effort needs the block before it.
        let mut rows: Vec<BlockRow> = sqlx::query_as(
            "SELECT hash, at, reporter, subject, template_id, height, reward_sats, difficulty, \
             work_total FROM blocks ORDER BY at DESC, hash LIMIT $1",
        )
        .bind(limit.saturating_add(1))
        .fetch_all(&self.pool)
        .await?;
        for i in 0..rows.len() {
            let before = rows.get(i + 1).map(|b| b.work_total.unwrap_or(0.0));
            let b = &rows[i];
            rows[i].effort = match (b.work_total, b.difficulty) {
                (Some(total), Some(d)) if d > 0.0 => {
                    Some((total - before.unwrap_or(0.0)).max(0.0) / d)
                }
                _ => None,
            };
        }
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(rows)
    }

    /// The most recently reported chain state, if any reporter sends one.
    pub async fn network(&self) -> Result<Option<NetworkRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT reporter, height, difficulty, tip_seen_at, reported_at FROM network \
             ORDER BY reported_at DESC, reporter LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Accepted work since the first report, in difficulty-1 shares.
    pub async fn work_total(&self) -> Result<f64, StoreError> {
        let total: Option<f64> = sqlx::query_scalar("SELECT value FROM totals WHERE name = 'work'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(total.unwrap_or(0.0))
    }

    pub async fn issuance(&self, since: i64, limit: i64) -> Result<Vec<IssuanceRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT quote_id, at, reporter, amount, locking_key FROM issuance WHERE at >= $1 \
             ORDER BY at DESC, quote_id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// ehash issued per `bucket` seconds since `since`: (bucket start, amount), oldest first.
    pub async fn issuance_buckets(
        &self,
        since: i64,
        bucket: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT (at / $2) * $2, CAST(SUM(amount) AS BIGINT) FROM issuance \
             WHERE at >= $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(since)
        .bind(bucket.max(1))
        .fetch_all(&self.pool)
        .await?)
    }

    /// All ehash issued and the number of issuances.
    pub async fn issuance_total(&self) -> Result<(i64, i64), StoreError> {
        let (amount, count): (Option<i64>, i64) =
            sqlx::query_as("SELECT CAST(SUM(amount) AS BIGINT), COUNT(*) FROM issuance")
                .fetch_one(&self.pool)
                .await?;
        Ok((amount.unwrap_or(0), count))
    }

    pub async fn health(&self) -> Result<Vec<HealthRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, up, detail, last_seen FROM health ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Wallet balance samples since `since`, oldest first.
    pub async fn balances(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT at, amount FROM balance_samples WHERE at >= $1 ORDER BY at")
                .bind(since)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn totals(&self) -> Result<Vec<(String, f64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, value FROM totals ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Rows in a table (tests and metrics).
    pub async fn count(&self, table: Table) -> Result<i64, StoreError> {
        let sql = match table {
            Table::Work => "SELECT COUNT(*) FROM work",
            Table::Samples => "SELECT COUNT(*) FROM hashrate_samples",
            Table::Balances => "SELECT COUNT(*) FROM balance_samples",
            Table::Subjects => "SELECT COUNT(*) FROM subjects",
        };
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Table {
    Work,
    Samples,
    Balances,
    Subjects,
}

async fn upsert_health(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    up: bool,
    detail: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO health (name, up, detail, last_seen) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET up = excluded.up, detail = excluded.detail, \
         last_seen = excluded.last_seen",
    )
    .bind(name)
    .bind(up as i64)
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Flags are stored as 0/1 (portable); the API shows them as booleans.
fn as_bool<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*v != 0)
}

/// A reporter's own work subject.
pub fn reporter_subject(reporter: &str) -> String {
    format!("reporter:{reporter}")
}

/// Subject ids are unique per reporter; several reporters (pool instances) share a service.
fn scoped(reporter: &str, id: &str) -> String {
    format!("{reporter}/{id}")
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// NaN and infinities from a peer are stored as 0 rather than poisoning sums.
/// An optional float goes to the database as its value and whether it is there (`CASE WHEN
/// $present = 1 THEN $value END`), never as a NULL float: sqlx 0.8.0's Any driver binds a NULL
/// `f64` as a `float4` parameter, and PostgreSQL's cached statement then refuses the next
/// present value's 8 bytes ("incorrect binary data format").
fn float_value(v: Option<f64>) -> f64 {
    v.map(finite).unwrap_or(0.0)
}

fn float_present(v: Option<f64>) -> i64 {
    i64::from(v.is_some())
}

fn finite(v: f64) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        0.0
    }
}
