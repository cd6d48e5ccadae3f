//! A connection's declarations: the token and the coinbase checked, the transactions looked up
//! in the node's mempool (the missing ones asked for), then, every transaction known, the
//! coinbase against the chain tip and the reward, and a job token issued.

use std::time::Instant;

use binary_sv2::{B0255Owned, Seq064KOwned};
use hashpool_job_declaration::{coinbase_merkle_path, JobCommitment, JobToken};
use job_declaration_sv2::{
    DeclareMiningJobOwned, DeclareMiningJobSuccessOwned, ProvideMissingTransactionsOwned,
    ProvideMissingTransactionsSuccessOwned, ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
};
use parsers_sv2::JobDeclarationOwned;
use tracing::{debug, info};

use super::{Pending, Session, RECENT_JOBS};
use crate::declaration::{self as check, DeclaredJob, Known, Refusal, TokenState};

impl Session {
    /// Checks the token and the coinbase, looks the transactions up; asks for the missing ones
    /// (`Ok(Some(ProvideMissingTransactions))`) or finishes.
    pub(super) async fn declare(
        &mut self,
        m: DeclareMiningJobOwned,
    ) -> Result<Option<JobDeclarationOwned>, Refusal> {
        let token = m.mining_job_token.as_ref().to_vec();
        check::check_token(self.tokens.get(&token), Instant::now())?;
        check::check_request_id(self.pending.contains_key(&m.request_id))?;
        let split = check::split_declared_coinbase(
            m.coinbase_tx_prefix.as_ref(),
            m.coinbase_tx_suffix.as_ref(),
        )?;
        let declared: Vec<[u8; 32]> = m.wtxid_list.iter().map(|w| w.to_array()).collect();
        check::check_distinct(&declared)?;
        let wtxids = check::wtxids(&declared);
        let mempool = self.ctx.mempool_for(&wtxids).await?;
        let (known, missing) = check::look_up(&wtxids, &mempool)?;
        let request_id = m.request_id;
        let pending = Pending {
            declare: m,
            token,
            split,
            known,
            missing,
        };
        if pending.missing.is_empty() {
            return self.finish(pending).await.map(Some);
        }
        self.expire_pending();
        check::check_room_to_wait(self.pending.len())?;
        debug!(peer = %self.peer, request_id, missing = pending.missing.len(), "asking for missing transactions");
        let ask = ProvideMissingTransactionsOwned {
            request_id,
            unknown_tx_position_list: Seq064KOwned::new(pending.missing.clone())
                .expect("fewer than 65536 positions"),
        };
        if let Some(a) = self.tokens.get_mut(&pending.token) {
            a.state = TokenState::Pending(request_id);
        }
        self.pending.insert(request_id, pending);
        Ok(Some(JobDeclarationOwned::ProvideMissingTransactions(ask)))
    }

    /// Drops waiting declarations whose token expired (their tokens go with them).
    fn expire_pending(&mut self) {
        let now = Instant::now();
        let tokens = &mut self.tokens;
        self.pending.retain(|_, p| {
            let alive = tokens.get(&p.token).is_some_and(|a| a.expires > now);
            if !alive {
                tokens.remove(&p.token);
            }
            alive
        });
    }

    pub(super) async fn provided(
        &mut self,
        m: ProvideMissingTransactionsSuccessOwned,
    ) -> Result<JobDeclarationOwned, Refusal> {
        let mut pending = self
            .pending
            .remove(&m.request_id)
            .ok_or_else(check::not_waiting)?;
        // Whatever happens now, the token is no longer held by a waiting declaration.
        check::check_token_after_wait(self.tokens.get(&pending.token), Instant::now())?;
        if let Some(a) = self.tokens.get_mut(&pending.token) {
            a.state = TokenState::Free;
        }
        let txs: Vec<&[u8]> = m.transaction_list.iter().map(|t| t.as_ref()).collect();
        let declared: Vec<[u8; 32]> = pending
            .declare
            .wtxid_list
            .iter()
            .map(|w| w.to_array())
            .collect();
        let provided = check::check_provided(&declared, &pending.missing, &txs)?;
        for (position, tx) in pending.missing.iter().zip(provided) {
            pending.known[usize::from(*position)] = Some(Known::Provided(tx));
        }
        self.finish(pending).await
    }

    /// Every transaction known: the coinbase's height and the pool's output, then the token.
    async fn finish(&mut self, pending: Pending) -> Result<JobDeclarationOwned, Refusal> {
        let Pending {
            declare,
            token,
            split,
            known,
            ..
        } = pending;
        let known: Vec<Known> = known.into_iter().flatten().collect();
        let coinbase = &split.tx;
        let (chain, tip_height) = self.ctx.rpc.chain().await?;
        let height = tip_height + 1;
        check::check_height(&split, height)?;
        let reward = check::block_reward(&chain, height, &known)?;
        let (payouts_height, payouts) = self
            .tokens
            .get(&token)
            .map(|a| (a.payouts_height, a.payouts.clone()))
            .unwrap_or_default();
        let required = check::required_payouts(&coinbase.output, payouts_height, &payouts, height)?;
        check::check_outputs(
            &coinbase.output,
            &self.ctx.config.pool_script,
            reward,
            required,
        )?;
        let declared: Vec<[u8; 32]> = declare.wtxid_list.iter().map(|w| w.to_array()).collect();
        check::check_witness_commitment(coinbase, &check::wtxids(&declared))?;

        let txids: Vec<bitcoin::Txid> = known.iter().map(Known::txid).collect();
        let merkle_path = coinbase_merkle_path(&txids);
        let input = &coinbase.input[0];
        let commitment = JobCommitment::new(
            declare.version,
            coinbase.version.0 as u32,
            &split.script_sig_prefix,
            split.extranonce_len,
            input.sequence.0,
            &coinbase.output,
            coinbase.lock_time.to_consensus_u32(),
            &merkle_path,
        );
        let expires_at = hashpool_role::unix_now() + self.ctx.config.token_lifetime_secs;
        let job_token = JobToken::issue(
            &self.ctx.config.authority_secret_key.into_bytes(),
            &commitment,
            expires_at,
        )
        .map_err(|e| Refusal(ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR, e.to_string()))?;
        if let Some(a) = self.tokens.get_mut(&token) {
            a.state = TokenState::Used;
        }
        let provided = known
            .into_iter()
            .filter_map(|k| match k {
                Known::Provided(tx) => Some((tx.compute_txid(), tx)),
                Known::Mempool { .. } => None,
            })
            .collect();
        self.jobs.push_back(DeclaredJob {
            prefix: declare.coinbase_tx_prefix.as_ref().to_vec(),
            suffix: declare.coinbase_tx_suffix.as_ref().to_vec(),
            extranonce_len: split.extranonce_len,
            txids,
            provided,
        });
        while self.jobs.len() > RECENT_JOBS {
            self.jobs.pop_front();
        }
        info!(
            peer = %self.peer,
            request_id = declare.request_id,
            height,
            transactions = self.jobs.back().map(|j| j.txids.len()).unwrap_or(0),
            "declared job accepted"
        );
        Ok(JobDeclarationOwned::DeclareMiningJobSuccess(
            DeclareMiningJobSuccessOwned {
                request_id: declare.request_id,
                new_mining_job_token: B0255Owned::new(job_token).expect("a job token fits"),
            },
        ))
    }
}
