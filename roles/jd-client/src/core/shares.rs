//! A miner's share: checked against its channel's job and target (the checks are `work`'s),
//! forwarded to the pool when it meets the pool channel's target, and, on a declared job,
//! a block submitted to the template provider and the jd-server.

use std::sync::atomic::Ordering;

use binary_sv2::{B032Owned, B064KOwned, U256Owned};
use channels_sv2::Vardiff;
use job_declaration_sv2::PushSolutionOwned;
use mining_sv2::{SubmitSharesErrorOwned, SubmitSharesExtendedOwned, SubmitSharesSuccess};
use parsers_sv2::{AnyMessageOwned, JobDeclarationOwned, MiningOwned, TemplateDistributionOwned};
use template_distribution_sv2::SubmitSolutionOwned;
use tracing::info;

use super::Core;
use crate::{
    stats::FoundBlock,
    work::{Checked, ShareHeader, Work},
};

/// Shares remembered per channel and tip to refuse duplicates.
const MAX_SEEN_SHARES: usize = 1 << 16;

impl Core {
    fn share_error(&mut self, conn: u64, channel_id: u32, sequence_number: u32, code: &str) {
        self.stats.shares_rejected.fetch_add(1, Ordering::Relaxed);
        self.reply(
            conn,
            MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
                channel_id,
                sequence_number,
                error_code: hashpool_sv2_io::str0255(code),
            }),
        );
    }

    pub(super) fn on_share(
        &mut self,
        conn: u64,
        channel_id: u32,
        sequence_number: u32,
        job_id: u32,
        header: ShareHeader,
        rolled: Option<Vec<u8>>,
    ) {
        let Some(pool) = &self.pool.link else {
            return self.share_error(conn, channel_id, sequence_number, "no-upstream");
        };
        let opening = pool.opening;
        let Some(ch) = self
            .miners
            .conns
            .get(&conn)
            .and_then(|m| m.channels.get(&channel_id))
        else {
            return self.share_error(conn, channel_id, sequence_number, "invalid-channel-id");
        };
        let Some(work) = ch.jobs.get(&job_id).cloned() else {
            let code = if job_id < self.miners.next_job_id {
                "stale-share"
            } else {
                "invalid-job-id"
            };
            return self.share_error(conn, channel_id, sequence_number, code);
        };
        if work.opening != opening {
            return self.share_error(conn, channel_id, sequence_number, "stale-share");
        }
        let extranonce = match (ch.extended, rolled) {
            (Some(r), Some(e)) if e.len() == r => work.extranonce(&ch.index, &e),
            (None, None) => work.extranonce(&ch.index, &[]),
            _ => {
                return self.share_error(
                    conn,
                    channel_id,
                    sequence_number,
                    "invalid-extranonce-size",
                )
            }
        };
        let checked = match work.check(&extranonce, header, &ch.target_for(job_id)) {
            Ok(c) => c,
            Err(e) => return self.share_error(conn, channel_id, sequence_number, e.code()),
        };
        let Some(ch) = self
            .miners
            .conns
            .get_mut(&conn)
            .and_then(|m| m.channels.get_mut(&channel_id))
        else {
            return;
        };
        if ch.seen.len() >= MAX_SEEN_SHARES {
            ch.seen.clear();
        }
        if !ch.seen.insert(checked.hash) {
            return self.share_error(conn, channel_id, sequence_number, "duplicate-share");
        }
        ch.vardiff.increment_shares_since_last_update();
        self.stats.shares_accepted.fetch_add(1, Ordering::Relaxed);
        self.reply(
            conn,
            MiningOwned::SubmitSharesSuccess(SubmitSharesSuccess {
                channel_id,
                last_sequence_number: sequence_number,
                new_submits_accepted_count: 1,
                new_shares_sum: 1,
            }),
        );
        self.forward(
            &work,
            &extranonce[work.pool_prefix.len()..],
            header,
            checked,
        );
        if checked.block {
            self.submit_block(&work, &extranonce, header, checked);
        }
    }

    /// A share at the pool channel's target goes to the pool, on the job's upstream id.
    fn forward(&mut self, work: &Work, extranonce: &[u8], header: ShareHeader, checked: Checked) {
        if !checked.for_pool {
            return;
        }
        let Some(pool) = &mut self.pool.link else {
            return;
        };
        let Ok(extranonce) = B032Owned::new(extranonce.to_vec()) else {
            return;
        };
        pool.sequence = pool.sequence.wrapping_add(1);
        let share = SubmitSharesExtendedOwned {
            channel_id: pool.channel_id,
            sequence_number: pool.sequence,
            job_id: work.upstream_job_id,
            nonce: header.nonce,
            ntime: header.ntime,
            version: header.version,
            extranonce,
        };
        if pool
            .tx
            .try_send(AnyMessageOwned::Mining(MiningOwned::SubmitSharesExtended(
                share,
            )))
            .is_ok()
        {
            self.stats.shares_forwarded.fetch_add(1, Ordering::Relaxed);
            if work.declared.is_some() {
                self.stats
                    .shares_forwarded_declared
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A block on a declared job: to the template provider (which connects it) and to the
    /// jd-server (which submits it to the pool's node).
    fn submit_block(
        &mut self,
        work: &Work,
        extranonce: &[u8],
        header: ShareHeader,
        checked: Checked,
    ) {
        let (Some(declared), Some(coinbase)) = (&work.declared, work.full_coinbase(extranonce))
        else {
            // A pool job: the pool, which has its transactions, submits it.
            return;
        };
        info!(hash = %checked.hash, template_id = declared.template_id, txs = declared.txids.len(), "block found on a declared job");
        self.stats.blocks_found.fetch_add(1, Ordering::Relaxed);
        self.stats.record_block(FoundBlock {
            hash: checked.hash,
            template_id: declared.template_id,
            txids: declared.txids.clone(),
        });
        if let (Some(tp), Ok(coinbase_tx)) = (&self.tp.tx, B064KOwned::new(coinbase)) {
            let _ = tp.try_send(AnyMessageOwned::TemplateDistribution(
                TemplateDistributionOwned::SubmitSolution(SubmitSolutionOwned {
                    template_id: declared.template_id,
                    version: header.version,
                    header_timestamp: header.ntime,
                    header_nonce: header.nonce,
                    coinbase_tx,
                }),
            ));
        }
        if let (Some(jds), Ok(e)) = (&self.jds.link, B032Owned::new(extranonce.to_vec())) {
            let _ = jds.tx.try_send(AnyMessageOwned::JobDeclaration(
                JobDeclarationOwned::PushSolution(PushSolutionOwned {
                    extranonce: e,
                    prev_hash: U256Owned::from(work.prev_hash),
                    nonce: header.nonce,
                    ntime: header.ntime,
                    nbits: work.nbits,
                    version: header.version,
                }),
            ));
        }
    }
}
