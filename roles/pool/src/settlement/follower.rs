//! The chain follower: after each interval it asks the node where every found block still in
//! play stands (`getblockheader` confirmations) and records changes in the ledger. A block
//! reaches `matured` at [`COINBASE_MATURITY`] confirmations; one off the best chain is
//! `orphaned` and pays nothing, and is checked again until the tip is that far past it, since
//! a reorg can bring it back. A node that is away only delays the next check.

use std::time::Duration;

use hashpool_bitcoin_rpc::BitcoinRpc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use super::standing::{standing, FollowError};
use super::{payouts::WithdrawalSource, COINBASE_MATURITY};
use crate::ledger::{AccrualLedger, BlockStatus, TrackedBlock};

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub checked: usize,
    pub changed: usize,
}

/// Checks every found block still in play once, then (with `withdrawals`) settles the payouts
/// against the chain and queues the mint's new withdrawals.
pub async fn pass(
    ledger: &AccrualLedger,
    node: &BitcoinRpc,
    withdrawals: Option<&WithdrawalSource>,
) -> Result<Pass, FollowError> {
    let result = blocks_pass(ledger, node).await?;
    if let Some(source) = withdrawals {
        let (_, tip) = node.chain().await?;
        super::payouts::settle(ledger, node, tip).await?;
        source.sync(ledger).await?;
    }
    Ok(result)
}

async fn blocks_pass(ledger: &AccrualLedger, node: &BitcoinRpc) -> Result<Pass, FollowError> {
    let (_, tip) = node.chain().await?;
    let blocks = ledger.blocks_to_follow(tip, COINBASE_MATURITY).await?;
    let mut result = Pass {
        checked: blocks.len(),
        changed: 0,
    };
    for block in blocks {
        let place = node.block_place(&block.hash).await?;
        let (status, confirmations) = standing(place, block.height, tip);
        if ledger
            .set_block_status(block.hash, status, confirmations)
            .await?
        {
            result.changed += 1;
            report(&block, status, confirmations);
        }
    }
    Ok(result)
}

fn report(block: &TrackedBlock, status: BlockStatus, confirmations: i64) {
    let hash = block.hash;
    let height = block.height;
    match (block.status, status) {
        (BlockStatus::Pending, BlockStatus::Matured)
        | (BlockStatus::Orphaned, BlockStatus::Matured) => {
            info!(%hash, ?height, value_sats = ?block.value_sats, "found block matured");
        }
        (_, BlockStatus::Orphaned) if block.status != BlockStatus::Orphaned => {
            warn!(%hash, ?height, "found block left the best chain: it pays nothing");
        }
        (BlockStatus::Orphaned, BlockStatus::Pending) => {
            warn!(%hash, ?height, confirmations, "found block is back in the best chain");
        }
        _ => {}
    }
}

/// Follows the found blocks until `shutdown`, one pass every `interval`.
pub async fn run(
    ledger: AccrualLedger,
    node: BitcoinRpc,
    withdrawals: Option<WithdrawalSource>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // Said once per outage, not once per pass.
    let mut failing = false;
    loop {
        match pass(&ledger, &node, withdrawals.as_ref()).await {
            Ok(_) if failing => {
                info!("chain follower: the node (and the mint) answer again");
                failing = false;
            }
            Ok(_) => {}
            Err(e) if !failing => {
                warn!("chain follower: {e}; checked again at the next pass");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashpool_bitcoin_rpc::BlockPlace;

    fn place(confirmations: i64) -> Option<BlockPlace> {
        Some(BlockPlace {
            height: 10,
            confirmations,
        })
    }

    #[test]
    fn maturity_comes_at_one_hundred_confirmations() {
        assert_eq!(standing(place(1), Some(10), 10), (BlockStatus::Pending, 1));
        assert_eq!(
            standing(place(99), Some(10), 108),
            (BlockStatus::Pending, 99)
        );
        assert_eq!(
            standing(place(100), Some(10), 109),
            (BlockStatus::Matured, 100)
        );
    }

    #[test]
    fn off_the_best_chain_is_orphaned_and_unknown_only_once_the_node_is_past_it() {
        assert_eq!(
            standing(place(-1), Some(10), 12),
            (BlockStatus::Orphaned, -1)
        );
        // The node has not reached the block's height: it may not have processed it yet.
        assert_eq!(standing(None, Some(10), 9), (BlockStatus::Pending, 0));
        assert_eq!(standing(None, Some(10), 10), (BlockStatus::Orphaned, -1));
        // A block recorded without its height waits for the node to know it.
        assert_eq!(standing(None, None, 500), (BlockStatus::Pending, 0));
    }
}
