//! Epochs in the ledger (docs/settlement.md, "Epochs"): the writer keeps the open one in its
//! book, cuts a share group where a share starts at or past the open epoch's planned end,
//! batches every key's whole units into the closing epoch and opens the next, all in one
//! transaction. The first epoch opens when the network's work per block is first known.

use hashpool_ehash::Work;
use sqlx::{AnyConnection, AnyPool, Row};
use tracing::info;

use super::{
    error::LedgerError,
    store::{work_bytes, work_from},
};

/// How epochs are sized: `ppm` parts per million of the network's work per block, and never
/// less than `min_work` (on regtest a block is a couple of hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSizing {
    pub ppm: u32,
    pub min_work: Work,
}

impl Default for EpochSizing {
    fn default() -> Self {
        Self {
            ppm: 500_000,
            min_work: Work::from_hashes(1),
        }
    }
}

impl EpochSizing {
    /// The planned length of an epoch opened while a block takes `network_work`.
    pub fn length(&self, network_work: Work) -> Work {
        let d = network_work.hashes();
        let ppm = u128::from(self.ppm);
        // d x ppm / 10^6 without overflow for any d.
        let scaled = (d / 1_000_000)
            .saturating_mul(ppm)
            .saturating_add((d % 1_000_000) * ppm / 1_000_000);
        Work::from_hashes(scaled.max(self.min_work.hashes()).max(1))
    }
}

/// The open epoch, as the writer holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenEpoch {
    pub index: u32,
    pub start: Work,
    pub length: Work,
    pub network_work: Work,
}

impl OpenEpoch {
    /// A share starting at or past this closes the epoch.
    pub fn planned_end(&self) -> u128 {
        self.start.hashes().saturating_add(self.length.hashes())
    }
}

/// One epoch as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEpoch {
    pub index: u32,
    pub start: Work,
    /// Planned length.
    pub length: Work,
    pub network_work: Work,
    /// Where its last share ended; `None` while open.
    pub end: Option<Work>,
    /// Unix ms.
    pub opened_at: i64,
    pub closed_at: Option<i64>,
}

/// The open epoch, if any.
pub(super) async fn load_open(conn: &mut AnyConnection) -> Result<Option<OpenEpoch>, LedgerError> {
    let row = sqlx::query(
        "SELECT idx, start_work, length, network_work FROM epochs WHERE end_work IS NULL \
         ORDER BY idx DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(OpenEpoch {
            index: u32::try_from(r.get::<i64, _>(0))
                .map_err(|_| LedgerError::Database("corrupt epoch index".into()))?,
            start: work_from(r.get(1))?,
            length: work_from(r.get(2))?,
            network_work: work_from(r.get(3))?,
        })
    })
    .transpose()
}

/// Writes a new open epoch.
pub(super) async fn insert(conn: &mut AnyConnection, epoch: &OpenEpoch) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO epochs (idx, start_work, length, network_work, opened_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(i64::from(epoch.index))
    .bind(work_bytes(epoch.start))
    .bind(work_bytes(epoch.length))
    .bind(work_bytes(epoch.network_work))
    .bind(hashpool_role::unix_now_ms())
    .execute(&mut *conn)
    .await?;
    info!(
        epoch = epoch.index,
        start = epoch.start.hashes(),
        length = epoch.length.hashes(),
        "epoch opened"
    );
    Ok(())
}

/// Closes the open epoch `index` at `end`.
pub(super) async fn close(
    conn: &mut AnyConnection,
    index: u32,
    end: Work,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE epochs SET end_work = $1, closed_at = $2 WHERE idx = $3 AND end_work IS NULL",
    )
    .bind(work_bytes(end))
    .bind(hashpool_role::unix_now_ms())
    .bind(i64::from(index))
    .execute(&mut *conn)
    .await?;
    info!(epoch = index, end = end.hashes(), "epoch closed");
    Ok(())
}

/// Every epoch, oldest first.
pub(super) async fn all(db: &AnyPool) -> Result<Vec<LedgerEpoch>, LedgerError> {
    let rows = sqlx::query(
        "SELECT idx, start_work, length, network_work, end_work, opened_at, closed_at \
         FROM epochs ORDER BY idx",
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(LedgerEpoch {
                index: u32::try_from(r.get::<i64, _>(0))
                    .map_err(|_| LedgerError::Database("corrupt epoch index".into()))?,
                start: work_from(r.get(1))?,
                length: work_from(r.get(2))?,
                network_work: work_from(r.get(3))?,
                end: r.get::<Option<Vec<u8>>, _>(4).map(work_from).transpose()?,
                opened_at: r.get(5),
                closed_at: r.get(6),
            })
        })
        .collect()
}

/// One quote of an epoch: its id, the key it is locked to, its amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochQuote {
    pub quote_id: String,
    pub locking_key: ext_mint_quote::LockingKey,
    pub amount: u64,
}

/// Epoch `index`'s quotes in quote id order, at most `limit` (`None` past it).
pub(super) async fn quotes_of(
    db: &AnyPool,
    index: u32,
    limit: u32,
) -> Result<Option<Vec<EpochQuote>>, LedgerError> {
    let rows = sqlx::query(
        "SELECT quote_id, locking_key, amount FROM batches \
         WHERE epoch = $1 AND quote_id IS NOT NULL ORDER BY quote_id LIMIT $2",
    )
    .bind(i64::from(index))
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    if rows.len() > limit as usize {
        return Ok(None);
    }
    rows.into_iter()
        .map(|r| {
            Ok(EpochQuote {
                quote_id: r.get(0),
                locking_key: ext_mint_quote::LockingKey::from_slice(&r.get::<Vec<u8>, _>(1))
                    .map_err(|_| LedgerError::Database("corrupt locking key".into()))?,
                amount: u64::try_from(r.get::<i64, _>(2))
                    .map_err(|_| LedgerError::Database("corrupt amount".into()))?,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The epoch of the batch quoted as `quote_id`: `None` for no such quote, `Some(None)` for one
/// from before the first epoch.
pub(super) async fn epoch_of_quote(
    db: &AnyPool,
    quote_id: &str,
) -> Result<Option<Option<u32>>, LedgerError> {
    let row: Option<Option<i64>> =
        sqlx::query_scalar("SELECT epoch FROM batches WHERE quote_id = $1 LIMIT 1")
            .bind(quote_id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|e| e.and_then(|e| u32::try_from(e).ok())))
}

/// Batches of epoch `index` the mint has neither answered nor refused.
pub(super) async fn unanswered(db: &AnyPool, index: u32) -> Result<u64, LedgerError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM batches WHERE quote_id IS NULL AND refused_code IS NULL AND epoch = $1",
    )
    .bind(i64::from(index))
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Ehash quoted per epoch: `(epoch, amount)` over the batches the mint answered.
pub(super) async fn quoted(db: &AnyPool) -> Result<Vec<(u32, u64)>, LedgerError> {
    let rows = sqlx::query(
        "SELECT epoch, CAST(SUM(amount) AS BIGINT) FROM batches WHERE epoch IS NOT NULL AND quote_id IS NOT NULL \
         GROUP BY epoch ORDER BY epoch",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let epoch = u32::try_from(r.get::<i64, _>(0)).ok()?;
            let amount = u64::try_from(r.get::<i64, _>(1)).ok()?;
            Some((epoch, amount))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_sized_from_the_network_with_a_floor() {
        let sizing = EpochSizing {
            ppm: 500_000,
            min_work: Work::from_hashes(1_000),
        };
        assert_eq!(sizing.length(Work::from_hashes(1 << 80)).hashes(), 1 << 79);
        assert_eq!(sizing.length(Work::from_hashes(2)).hashes(), 1_000);
        assert!(
            sizing
                .length(Work::from_hashes(u128::MAX))
                .hashes()
                .abs_diff(u128::MAX / 2)
                < 1_000_000
        );
        let exact = EpochSizing {
            ppm: 1_500_000,
            min_work: Work::from_hashes(1),
        };
        assert_eq!(
            exact.length(Work::from_hashes(3_000_001)).hashes(),
            4_500_001
        );
    }
}
