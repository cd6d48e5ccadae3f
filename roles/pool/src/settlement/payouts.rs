//! Withdrawals paid in the pool's coinbases (docs/settlement.md, "Withdrawals in the
//! coinbase"), as the chain follower moves them:
//!
//! - the mint's signed withdrawal list is read and each new entry queued in the ledger;
//! - payouts offered at a height the chain has reached are settled by the chain's block there
//!   (paid by an output of its coinbase, or queued again);
//! - payouts in a block mature with it, or are queued again once the block has been off the
//!   best chain for [`REQUEUE_DEPTH`] blocks (a reorg that short could still bring it back).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hashpool_bitcoin_rpc::BitcoinRpc;
use hashpool_settlement::withdrawals::{PayoutState, WithdrawalList, WITHDRAWALS_TAG};
use tracing::{info, warn};

use super::standing::{standing, FollowError};
use crate::jobs::MAX_PAYOUT_SCRIPT;
use crate::ledger::{AccrualLedger, BlockStatus};

/// Blocks the tip must be past an orphaned block's height before its payouts are queued again.
pub const REQUEUE_DEPTH: u32 = 6;

/// Payouts settled in one pass at most (the rest in the next).
const PASS_LIMIT: u32 = 10_000;

/// Where the mint's withdrawals are read, and the key their list must be signed with.
#[derive(Debug, Clone)]
pub struct WithdrawalSource {
    pub url: String,
    /// The mint's authority key, x-only.
    pub mint_key: [u8; 32],
    http: reqwest::Client,
}

impl WithdrawalSource {
    pub fn new(url: String, mint_key: [u8; 32]) -> Self {
        Self {
            url,
            mint_key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Queues the mint's withdrawals the ledger does not hold yet; returns how many.
    pub async fn sync(&self, ledger: &AccrualLedger) -> Result<usize, FollowError> {
        let mint = |e: String| FollowError::Mint(format!("{}: {e}", self.url));
        let list: WithdrawalList = self
            .http
            .get(&self.url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| mint(e.to_string()))?
            .json()
            .await
            .map_err(|e| mint(e.to_string()))?;
        list.verify(WITHDRAWALS_TAG, &self.mint_key)
            .map_err(|e| mint(format!("the withdrawal list is not the mint's: {e}")))?;
        // The room reserved per payout is a 34-byte script; anything else is left out (and
        // said), so one bad entry never stops the others.
        let (fit, unfit): (Vec<_>, Vec<_>) = list.body.into_iter().partition(|w| {
            !w.script.is_empty()
                && w.script.len() <= 2 * MAX_PAYOUT_SCRIPT
                && w.script.bytes().all(|b| b.is_ascii_hexdigit())
        });
        for w in unfit {
            warn!(quote_id = %w.quote_id, "the mint's withdrawal has no standard script: not paid");
        }
        let added = ledger.record_withdrawals(fit).await?;
        if added > 0 {
            info!(added, "withdrawals queued for the pool's coinbases");
        }
        Ok(added)
    }
}

/// What one pass settled.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PayoutPass {
    pub paid: usize,
    pub requeued: usize,
    pub matured: usize,
}

/// Settles the offered and in-block payouts against the node's chain at `tip`.
pub async fn settle(
    ledger: &AccrualLedger,
    node: &BitcoinRpc,
    tip: u32,
) -> Result<PayoutPass, FollowError> {
    let rows = ledger
        .payouts_in(&[PayoutState::Offered, PayoutState::InBlock], PASS_LIMIT)
        .await?;
    let mut pass = PayoutPass::default();
    let offered: BTreeSet<u32> = rows
        .iter()
        .filter(|r| r.state == PayoutState::Offered)
        .filter_map(|r| r.height)
        .filter(|h| *h <= tip)
        .collect();
    for height in offered {
        let Some(hash) = node.block_hash_at(height).await? else {
            continue;
        };
        let block = node.block(&hash).await?;
        let Some(coinbase) = block.txdata.into_iter().next() else {
            return Err(FollowError::Mint(format!("block {hash} has no coinbase")));
        };
        let (paid, requeued) = ledger
            .settle_offered_payouts(height, hash, coinbase)
            .await?;
        if paid > 0 {
            info!(%hash, height, paid, "withdrawals paid in a coinbase");
        }
        if requeued > 0 {
            info!(
                %hash,
                height,
                requeued,
                "the chain's block does not pay these withdrawals: queued again"
            );
        }
        pass.paid += paid;
        pass.requeued += requeued;
    }
    let in_blocks: BTreeMap<_, _> = rows
        .iter()
        .filter(|r| r.state == PayoutState::InBlock)
        .filter_map(|r| Some((r.block_hash?, r.height)))
        .collect();
    for (hash, height) in in_blocks {
        let place = node.block_place(&hash).await?;
        match standing(place, height, tip).0 {
            BlockStatus::Matured => {
                pass.matured += ledger.settle_block_payouts(hash, true).await?;
            }
            BlockStatus::Orphaned
                if height.is_some_and(|h| tip >= h.saturating_add(REQUEUE_DEPTH)) =>
            {
                let requeued = ledger.settle_block_payouts(hash, false).await?;
                warn!(
                    %hash,
                    ?height,
                    requeued,
                    "a block paying withdrawals left the best chain: they are queued again"
                );
                pass.requeued += requeued;
            }
            _ => {}
        }
    }
    Ok(pass)
}
