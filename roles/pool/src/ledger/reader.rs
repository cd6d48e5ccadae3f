//! Read-only views of the ledger for the public per-key miner API. They run on their own
//! read-only connections (WAL lets them read beside the writer), so a burst of page views never
//! takes a connection the share path commits on, and every query is bounded: by the key's
//! indexes and by a row limit, never a scan of the whole ledger.

use ext_mint_quote::LockingKey;
use hashpool_ehash::{UnitWork, Work};
use sqlx::{AnyConnection, Row};

use super::{
    error::LedgerError,
    retention,
    store::{begin_read, finish, work_from, Db, LedgerLocation},
    KeyAccrual,
};

/// What a [`LedgerReader`] reads at most per request.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Per-minute rows summed for the hashrate windows (the newest first).
    pub window_minutes: u32,
    /// Blocks listed (the total is counted separately).
    pub blocks: u32,
    /// Answered quotes listed.
    pub quotes: u32,
    /// Newest epochs the key's ehash is summed for.
    pub epochs: u32,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            window_minutes: 1_500,
            blocks: 20,
            quotes: 10,
            epochs: 20,
        }
    }
}

/// The work a key's shares accrued over a window ending now, counted in whole minutes: the
/// window starts at the beginning of the minute `secs` before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowWork {
    /// The window's length.
    pub secs: u64,
    pub work: Work,
    pub shares: u64,
    /// False when the window reaches further back than the ledger keeps per-minute work (a
    /// day) or than [`ReadLimits::window_minutes`]: `work` and `shares` then cover only from
    /// `covered_from_ms` on.
    pub complete: bool,
    pub covered_from_ms: i64,
}

/// A block one of the key's shares found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundBlock {
    /// The header hash as the ledger stores it (internal byte order).
    pub hash: [u8; 32],
    pub channel_id: u32,
    pub at_ms: i64,
}

/// A quote the mint issued for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedQuote {
    pub quote_id: String,
    pub amount: u64,
    pub at_ms: i64,
}

/// Everything the ledger knows of one key, read in one transaction (one consistent snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// `None`: no share was ever credited to the key.
    pub accrual: Option<KeyAccrual>,
    /// Ehash in batches sent to the mint and not answered yet.
    pub requested: u64,
    /// Ehash in quotes the mint issued (batches answered, not refused).
    pub quoted: u64,
    pub last_share_ms: Option<i64>,
    pub windows: Vec<WindowWork>,
    pub blocks_found: u64,
    /// Newest first, at most [`ReadLimits::blocks`].
    pub blocks: Vec<FoundBlock>,
    /// Newest first, at most [`ReadLimits::quotes`].
    pub quotes: Vec<IssuedQuote>,
    /// Ehash the mint quoted the key per epoch, `(epoch, amount)`, for the newest
    /// [`ReadLimits::epochs`] epochs, newest first.
    pub ehash_by_epoch: Vec<(u32, u64)>,
}

/// Read-only connections to the ledger.
#[derive(Clone)]
pub struct LedgerReader {
    db: Db,
    unit_work: UnitWork,
    limits: ReadLimits,
}

impl LedgerReader {
    /// Opens the ledger at `location` for reading (the pool's [`super::AccrualLedger`]
    /// created and migrated it; a SQLite file is opened read-only); `unit_work` is the
    /// ledger's own ([`super::AccrualLedger::unit_work`]).
    pub async fn open(
        location: impl Into<LedgerLocation>,
        unit_work: UnitWork,
        limits: ReadLimits,
    ) -> Result<Self, LedgerError> {
        let db = Db::connect(&location.into(), 2, true).await?;
        Ok(Self {
            db,
            unit_work,
            limits,
        })
    }

    /// What the ledger holds for `key`, with the work of the last `window_secs` each (windows
    /// end at `now_ms`, unix milliseconds).
    pub async fn key_report(
        &self,
        key: &LockingKey,
        now_ms: i64,
        window_secs: &[u64],
    ) -> Result<KeyReport, LedgerError> {
        // One read transaction: accruals, batches and shares from the same snapshot.
        let mut tx = begin_read(&self.db).await?;
        let result = self.report_in(&mut tx, key, now_ms, window_secs).await;
        finish(tx, result).await
    }

    async fn report_in(
        &self,
        tx: &mut AnyConnection,
        key: &LockingKey,
        now_ms: i64,
        window_secs: &[u64],
    ) -> Result<KeyReport, LedgerError> {
        let key_bytes = key.as_bytes().as_slice();
        let accrual = accrual(tx, key_bytes).await?;
        let Some((accrual, key_id, last_share_ms)) = accrual else {
            return Ok(KeyReport {
                accrual: None,
                requested: 0,
                quoted: 0,
                last_share_ms: None,
                windows: window_secs
                    .iter()
                    .map(|&secs| WindowWork {
                        secs,
                        work: Work::ZERO,
                        shares: 0,
                        complete: true,
                        covered_from_ms: now_ms.saturating_sub(secs_to_ms(secs)),
                    })
                    .collect(),
                blocks_found: 0,
                blocks: Vec::new(),
                quotes: Vec::new(),
                ehash_by_epoch: Vec::new(),
            });
        };
        let (requested, requested_work) = requested(tx, key_bytes).await?;
        let quoted = quoted(accrual, requested_work, self.unit_work)?;
        let windows = windows(tx, key_id, now_ms, window_secs, self.limits.window_minutes).await?;
        let (blocks_found, blocks) = blocks(tx, key_id, self.limits.blocks).await?;
        let quotes = quotes(tx, key_bytes, self.limits.quotes).await?;
        let ehash_by_epoch = ehash_by_epoch(tx, key_bytes, self.limits.epochs).await?;
        Ok(KeyReport {
            accrual: Some(accrual),
            requested,
            quoted,
            last_share_ms,
            windows,
            blocks_found,
            blocks,
            quotes,
            ehash_by_epoch,
        })
    }
}

/// The key's quoted ehash in each of the newest `epochs` epochs (the index on key and epoch:
/// only those epochs' batches are read).
async fn ehash_by_epoch(
    tx: &mut AnyConnection,
    key: &[u8],
    epochs: u32,
) -> Result<Vec<(u32, u64)>, LedgerError> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(idx) FROM epochs")
        .fetch_one(&mut *tx)
        .await?;
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT epoch, CAST(SUM(amount) AS BIGINT) FROM batches WHERE locking_key = $1 AND epoch >= $2 \
         AND quote_id IS NOT NULL GROUP BY epoch ORDER BY epoch DESC",
    )
    .bind(key)
    .bind(newest.saturating_sub(i64::from(epochs) - 1))
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let epoch = u32::try_from(r.get::<i64, _>(0)).ok()?;
            let amount = u64::try_from(r.get::<i64, _>(1)).ok()?;
            Some((epoch, amount))
        })
        .collect())
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The key's accrual, its id in the log and its last share's time.
async fn accrual(
    tx: &mut AnyConnection,
    key: &[u8],
) -> Result<Option<(KeyAccrual, i64, Option<i64>)>, LedgerError> {
    let row = sqlx::query(
        "SELECT pending_work, total_work, share_count, key_id, last_share_at FROM accruals \
         WHERE locking_key = $1",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| {
        let accrual = KeyAccrual {
            pending: work_from(r.get::<Vec<u8>, _>(0))?,
            total: work_from(r.get::<Vec<u8>, _>(1))?,
            shares: u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
        };
        let id = r
            .get::<Option<i64>, _>(3)
            .ok_or_else(|| LedgerError::Database("an accrual without a key id".into()))?;
        Ok((accrual, id, r.get(4)))
    })
    .transpose()
}

/// Ehash and work in the key's batches still waiting for the mint (few: the batcher makes at
/// most one per key and interval, and the mint answers them).
async fn requested(tx: &mut AnyConnection, key: &[u8]) -> Result<(u64, Work), LedgerError> {
    let rows = sqlx::query(
        "SELECT amount, work FROM batches \
         WHERE locking_key = $1 AND quote_id IS NULL AND refused_code IS NULL",
    )
    .bind(key)
    .fetch_all(&mut *tx)
    .await?;
    let mut amount = 0u64;
    let mut work = Work::ZERO;
    for r in rows {
        amount = amount.saturating_add(u64::try_from(r.get::<i64, _>(0)).unwrap_or(0));
        work = work
            .checked_add(work_from(r.get::<Vec<u8>, _>(1))?)
            .ok_or(LedgerError::CorruptWork)?;
    }
    Ok((amount, work))
}

/// Ehash quoted to the key, from the ledger's invariant (total work = pending work + the work
/// of every batch not refused) instead of summing every answered batch the key ever had.
fn quoted(accrual: KeyAccrual, requested: Work, unit: UnitWork) -> Result<u64, LedgerError> {
    let quoted_work = accrual
        .total
        .hashes()
        .checked_sub(accrual.pending.hashes())
        .and_then(|w| w.checked_sub(requested.hashes()))
        .ok_or(LedgerError::CorruptWork)?;
    let per_unit = unit.work().hashes();
    if per_unit == 0 || quoted_work % per_unit != 0 {
        return Err(LedgerError::CorruptWork);
    }
    u64::try_from(quoted_work / per_unit).map_err(|_| LedgerError::CorruptWork)
}

/// The key's per-minute work within the longest window (at most `limit` rows, through the
/// `(key_id, minute)` key), summed per window.
async fn windows(
    tx: &mut AnyConnection,
    key_id: i64,
    now_ms: i64,
    window_secs: &[u64],
    limit: u32,
) -> Result<Vec<WindowWork>, LedgerError> {
    let limit = limit.max(1);
    let start_minute = |secs: u64| now_ms.saturating_sub(secs_to_ms(secs)).div_euclid(60_000);
    let longest = window_secs.iter().copied().max().unwrap_or(0);
    let rows = sqlx::query(
        "SELECT minute, work, shares FROM key_minutes WHERE key_id = $1 AND minute >= $2 \
         ORDER BY minute DESC LIMIT $3",
    )
    .bind(key_id)
    .bind(start_minute(longest))
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let truncated = rows.len() >= limit as usize;
    let mut minutes = Vec::with_capacity(rows.len());
    for r in rows {
        minutes.push((
            r.get::<i64, _>(0),
            work_from(r.get::<Vec<u8>, _>(1))?,
            u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
        ));
    }
    let oldest_read = minutes.last().map(|(m, _, _)| *m);
    // Older minutes than this are pruned: a window reaching past it is not whole.
    let kept_from = now_ms.div_euclid(60_000) - retention::MINUTES_KEPT;
    window_secs
        .iter()
        .map(|&secs| {
            let start = start_minute(secs);
            let mut work = Work::ZERO;
            let mut count = 0u64;
            for (_, w, n) in minutes.iter().filter(|(m, _, _)| *m >= start) {
                work = work.checked_add(*w).ok_or(LedgerError::CorruptWork)?;
                count += n;
            }
            let mut covered_from = start;
            if truncated {
                if let Some(oldest) = oldest_read.filter(|&o| o > start) {
                    covered_from = oldest;
                }
            }
            covered_from = covered_from.max(kept_from);
            Ok(WindowWork {
                secs,
                work,
                shares: count,
                complete: covered_from == start,
                covered_from_ms: covered_from.saturating_mul(60_000),
            })
        })
        .collect()
}

async fn blocks(
    tx: &mut AnyConnection,
    key_id: i64,
    limit: u32,
) -> Result<(u64, Vec<FoundBlock>), LedgerError> {
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM found_blocks WHERE key_id = $1")
        .bind(key_id)
        .fetch_one(&mut *tx)
        .await?;
    let rows = sqlx::query(
        "SELECT hash, channel_id, found_at FROM found_blocks \
         WHERE key_id = $1 ORDER BY found_at DESC LIMIT $2",
    )
    .bind(key_id)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let mut found = Vec::with_capacity(rows.len());
    for r in rows {
        let hash: [u8; 32] = r
            .get::<Vec<u8>, _>(0)
            .try_into()
            .map_err(|_| LedgerError::Database("corrupt share hash".into()))?;
        found.push(FoundBlock {
            hash,
            channel_id: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
            at_ms: r.get(2),
        });
    }
    Ok((u64::try_from(total).unwrap_or(0), found))
}

async fn quotes(
    tx: &mut AnyConnection,
    key: &[u8],
    limit: u32,
) -> Result<Vec<IssuedQuote>, LedgerError> {
    // `batches_by_key` holds the row id after the key: newest first without a sort.
    let rows = sqlx::query(
        "SELECT quote_id, amount, answered_at FROM batches \
         WHERE locking_key = $1 AND quote_id IS NOT NULL AND refused_code IS NULL \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(key)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| IssuedQuote {
            quote_id: r.get(0),
            amount: u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
            at_ms: r.get::<Option<i64>, _>(2).unwrap_or(0),
        })
        .collect())
}

#[cfg(test)]
mod tests;
