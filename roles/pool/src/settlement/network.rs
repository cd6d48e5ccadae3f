//! Tells the ledger the network's work per block at each new tip: the ledger sizes its next
//! epoch from it, and opens its first epoch when it first hears it.

use std::sync::Arc;

use bitcoin::{CompactTarget, Target};
use hashpool_ehash::Work;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{
    jobs::{JobEvent, JobSource},
    ledger::AccrualLedger,
};

/// The expected hashes of a block at `n_bits`.
pub fn block_work(n_bits: u32) -> Work {
    Work::from_target(&Target::from_compact(CompactTarget::from_consensus(n_bits)))
}

/// Follows the job source's tips until `shutdown`.
pub async fn report(jobs: Arc<JobSource>, ledger: AccrualLedger, shutdown: CancellationToken) {
    let mut events = jobs.subscribe();
    // A tip that arrived before this task subscribed.
    let mut pending = jobs.chain().map(|c| block_work(c.n_bits));
    loop {
        if let Some(work) = pending.take() {
            if ledger.observe_network_work(work).await.is_err() {
                warn!("the ledger has stopped: epochs are no longer sized");
                return;
            }
        }
        let event = tokio::select! {
            e = events.recv() => e,
            _ = shutdown.cancelled() => return,
        };
        pending = match event {
            Ok(e) => match e.event {
                JobEvent::PrevHash(p) => Some(block_work(p.n_bits)),
                _ => None,
            },
            Err(RecvError::Lagged(_)) => jobs.chain().map(|c| block_work(c.n_bits)),
            Err(RecvError::Closed) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocks_work_follows_its_nbits() {
        assert_eq!(block_work(0x1d00_ffff), hashpool_ehash::DIFFICULTY_1_WORK);
        // Regtest's limit: about two hashes a block.
        assert_eq!(block_work(0x207f_ffff).hashes(), 2);
    }
}
