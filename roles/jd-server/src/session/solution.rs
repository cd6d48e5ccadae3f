//! A pushed solution: the block of the accepted job it solves, submitted to the node.

use bitcoin::Block;
use job_declaration_sv2::PushSolutionOwned;
use tracing::{info, warn};

use super::Session;
use crate::{
    declaration::solve,
    metrics::{BLOCK_ACCEPTED, BLOCK_NOT_SUBMITTED, BLOCK_NO_JOB, BLOCK_REFUSED},
};

impl Session {
    /// Rebuilds the block of the accepted job the solution is for and submits it to the node.
    pub(super) async fn push_solution(&mut self, m: PushSolutionOwned) {
        // The newest job first: a solution is most likely for the latest declaration.
        for job in self.jobs.iter().rev() {
            let Some((coinbase, header)) = solve(job, &m) else {
                continue;
            };
            let mut txdata = Vec::with_capacity(job.txids.len() + 1);
            txdata.push(coinbase);
            for txid in &job.txids {
                let tx = match job.provided.get(txid) {
                    Some(tx) => tx.clone(),
                    None => match self.ctx.rpc.transaction(txid).await {
                        Ok(tx) => tx,
                        Err(e) => {
                            warn!(peer = %self.peer, %txid, "solution's transaction not found: {e}");
                            self.ctx.stats.block(BLOCK_NOT_SUBMITTED);
                            return;
                        }
                    },
                };
                txdata.push(tx);
            }
            let block = Block { header, txdata };
            let hash = block.block_hash();
            match self.ctx.rpc.submit_block(&block).await {
                Ok(None) => {
                    info!(peer = %self.peer, %hash, "block submitted and accepted by the node");
                    self.ctx.stats.block(BLOCK_ACCEPTED);
                }
                Ok(Some(reason)) => {
                    warn!(peer = %self.peer, %hash, "node refused the block: {reason}");
                    self.ctx.stats.block(BLOCK_REFUSED);
                }
                Err(e) => {
                    warn!(peer = %self.peer, %hash, "could not submit the block: {e}");
                    self.ctx.stats.block(BLOCK_NOT_SUBMITTED);
                }
            }
            return;
        }
        warn!(peer = %self.peer, "a pushed solution matches no job this connection declared");
        self.ctx.stats.block(BLOCK_NO_JOB);
    }
}
