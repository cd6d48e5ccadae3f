//! The pool's found blocks as settlement follows them: what each paid and where it stands in
//! the node's best chain (pending, matured, orphaned). The chain follower reads the blocks
//! still in play and writes a block's new standing through the writer.

use bitcoin::{hashes::Hash as _, BlockHash};
use hashpool_ehash::Work;
use serde::Serialize;
use sqlx::{AnyPool, Row};

use super::{error::LedgerError, store::work_from};

/// Where a found block stands in the node's best chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockStatus {
    /// In the best chain under maturity, or not yet seen by the node.
    Pending,
    /// Buried by the coinbase maturity: its reward is the pool's for good.
    Matured,
    /// Off the best chain: it pays nothing (a reorg may still bring it back).
    Orphaned,
}

impl BlockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockStatus::Pending => "pending",
            BlockStatus::Matured => "matured",
            BlockStatus::Orphaned => "orphaned",
        }
    }

    fn parse(text: &str) -> Result<Self, LedgerError> {
        match text {
            "pending" => Ok(BlockStatus::Pending),
            "matured" => Ok(BlockStatus::Matured),
            "orphaned" => Ok(BlockStatus::Orphaned),
            other => Err(LedgerError::Database(format!(
                "unknown found-block status `{other}`"
            ))),
        }
    }
}

/// One found block, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedBlock {
    pub hash: BlockHash,
    /// Unknown for blocks found before the pool recorded them (and for a coinbase that did
    /// not parse).
    pub height: Option<u32>,
    pub value_sats: Option<u64>,
    /// The network's expected work per block at the block's nBits.
    pub network_work: Option<Work>,
    /// The pool's cumulative accepted work when it was found, its share included.
    pub pool_work: Option<Work>,
    pub status: BlockStatus,
    pub confirmations: i64,
    /// Unix ms.
    pub found_at: i64,
}

const COLUMNS: &str = "hash, height, value_sats, network_work, pool_work, status, \
                       confirmations, found_at";

fn tracked(r: &sqlx::any::AnyRow) -> Result<TrackedBlock, LedgerError> {
    let hash: [u8; 32] = r
        .get::<Vec<u8>, _>(0)
        .try_into()
        .map_err(|_| LedgerError::Database("corrupt found-block hash".into()))?;
    let work = |i: usize| -> Result<Option<Work>, LedgerError> {
        r.get::<Option<Vec<u8>>, _>(i).map(work_from).transpose()
    };
    Ok(TrackedBlock {
        hash: BlockHash::from_byte_array(hash),
        height: r
            .get::<Option<i64>, _>(1)
            .and_then(|h| u32::try_from(h).ok()),
        value_sats: r
            .get::<Option<i64>, _>(2)
            .and_then(|v| u64::try_from(v).ok()),
        network_work: work(3)?,
        pool_work: work(4)?,
        status: BlockStatus::parse(&r.get::<String, _>(5))?,
        confirmations: r.get(6),
        found_at: r.get(7),
    })
}

/// The blocks whose standing can still change with the node's tip at `tip_height`: the
/// pending ones, and the orphaned ones a reorg of under `maturity` blocks could bring back.
pub(super) async fn to_follow(
    db: &AnyPool,
    tip_height: u32,
    maturity: u32,
) -> Result<Vec<TrackedBlock>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM found_blocks WHERE status = 'pending' \
         OR (status = 'orphaned' AND (height IS NULL OR height + $1 > $2)) ORDER BY found_at"
    ))
    .bind(i64::from(maturity))
    .bind(i64::from(tip_height))
    .fetch_all(db)
    .await?;
    rows.iter().map(tracked).collect()
}

/// Every found block, newest first, at most `limit`.
pub(super) async fn newest(db: &AnyPool, limit: u32) -> Result<Vec<TrackedBlock>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM found_blocks ORDER BY found_at DESC, hash LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(tracked).collect()
}

/// Records a block's standing; `true` when it changed.
pub(super) async fn set_status(
    db: &AnyPool,
    hash: &BlockHash,
    status: BlockStatus,
    confirmations: i64,
) -> Result<bool, LedgerError> {
    let changed = sqlx::query(
        "UPDATE found_blocks SET status = $1, confirmations = $2, status_at = $3 \
         WHERE hash = $4 AND (status != $5 OR confirmations != $6)",
    )
    .bind(status.as_str())
    .bind(confirmations)
    .bind(hashpool_role::unix_now_ms())
    .bind(hash.as_byte_array().as_slice())
    .bind(status.as_str())
    .bind(confirmations)
    .execute(db)
    .await?
    .rows_affected();
    Ok(changed > 0)
}
