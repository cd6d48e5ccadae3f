//! The one place an accepted share is handled. Everything that follows from a share the pool
//! accepted (stats now; ehash accrual next) starts in [`ShareSink::on_share_accepted`].

use std::sync::Arc;

use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;

use crate::{
    ledger::{AccrualLedger, Receipt},
    stats::PoolStats,
};

/// A share that passed validation.
#[derive(Debug, Clone, Copy)]
pub struct AcceptedShare {
    pub channel_id: u32,
    /// Whose ehash this share earns.
    pub locking_key: LockingKey,
    /// Header hash of the share (its identity: duplicates are refused before this point).
    pub share_hash: [u8; 32],
    /// Exact work of the share: from the target of the job it was mined on.
    pub work: Work,
    /// The share also met the network target.
    pub block_found: bool,
}

pub struct ShareSink {
    stats: Arc<PoolStats>,
    ledger: AccrualLedger,
}

impl ShareSink {
    pub fn new(stats: Arc<PoolStats>, ledger: AccrualLedger) -> Self {
        Self { stats, ledger }
    }

    pub fn ledger(&self) -> &AccrualLedger {
        &self.ledger
    }

    /// Called for every accepted share, on the share path (no waiting here).
    pub fn on_share_accepted(&self, share: &AcceptedShare) {
        self.stats.record_accepted(share.work, share.block_found);
        tracing::trace!(
            channel_id = share.channel_id,
            work = share.work.hashes() as f64,
            "share accepted"
        );
    }

    /// Queues an accepted share for the ledger, waiting while the ledger's queue is full (the
    /// miner's connection slows down instead of the pool piling up work). The share is
    /// acknowledged to the miner only once the returned receipt resolves: its work is then
    /// durable in the accrual ledger.
    pub async fn make_durable(&self, share: AcceptedShare) -> Receipt {
        self.ledger.record(share).await
    }

    pub fn on_share_rejected(&self) {
        self.stats.record_rejected();
    }
}
