//! Where a found block stands in the node's chain, and what can stop a chain-follower pass:
//! shared by the follower and the payouts it settles.

use hashpool_bitcoin_rpc::{BlockPlace, RpcError};

use super::COINBASE_MATURITY;
use crate::ledger::{BlockStatus, LedgerError};

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Node(#[from] RpcError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The mint's withdrawal list could not be read or checked.
    #[error("the mint's withdrawals: {0}")]
    Mint(String),
}

/// Where a block stands given the node's answer for it (`None`: the node does not know it)
/// and the node's tip height.
pub fn standing(place: Option<BlockPlace>, height: Option<u32>, tip: u32) -> (BlockStatus, i64) {
    match place {
        Some(p) if p.confirmations >= i64::from(COINBASE_MATURITY) => {
            (BlockStatus::Matured, p.confirmations)
        }
        Some(p) if p.confirmations >= 1 => (BlockStatus::Pending, p.confirmations),
        Some(_) => (BlockStatus::Orphaned, -1),
        // A node that has a block at that height and does not know ours has another one there
        // (a node that restarted forgets blocks a reorg took off); below that height it may
        // simply not have processed ours yet.
        None => match height {
            Some(h) if tip >= h => (BlockStatus::Orphaned, -1),
            _ => (BlockStatus::Pending, 0),
        },
    }
}
