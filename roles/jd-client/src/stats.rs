//! Counters of the jd-client's work, for its log, its tests and monitoring.

use std::sync::{
    atomic::{AtomicBool, AtomicU64},
    Mutex,
};

use bitcoin::{BlockHash, Txid};

/// A block found on a declared job.
#[derive(Debug, Clone)]
pub struct FoundBlock {
    pub hash: BlockHash,
    pub template_id: u64,
    /// The transactions this jd-client chose for it (besides the coinbase), in block order.
    pub txids: Vec<Txid>,
}

#[derive(Debug, Default)]
pub struct JdClientStats {
    pub tp_connected: AtomicBool,
    pub jds_connected: AtomicBool,
    pub pool_connected: AtomicBool,
    /// Miners are on a declared job now (else on the pool's).
    pub mining_declared: AtomicBool,
    pub tokens_allocated: AtomicU64,
    pub jobs_declared: AtomicU64,
    pub declarations_refused: AtomicU64,
    pub custom_jobs_set: AtomicU64,
    pub custom_jobs_refused: AtomicU64,
    /// Miners' shares that met their channel's target, and those refused.
    pub shares_accepted: AtomicU64,
    pub shares_rejected: AtomicU64,
    /// Shares sent to the pool (they met the pool channel's target), and of those on declared
    /// jobs.
    pub shares_forwarded: AtomicU64,
    pub shares_forwarded_declared: AtomicU64,
    pub pool_shares_accepted: AtomicU64,
    pub pool_shares_rejected: AtomicU64,
    pub blocks_found: AtomicU64,
    /// Miners' channels open now.
    pub channels: AtomicU64,
    blocks: Mutex<Vec<FoundBlock>>,
}

impl JdClientStats {
    pub fn record_block(&self, block: FoundBlock) {
        let mut b = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        // The newest 100 are plenty for logs and tests.
        if b.len() >= 100 {
            b.remove(0);
        }
        b.push(block);
    }

    pub fn blocks(&self) -> Vec<FoundBlock> {
        self.blocks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
