//! SubmitSharesStandard / SubmitSharesExtended: validation by channels_sv2, the accepted-share
//! hook ([`ShareSink`]), batched SubmitShares.Success, precise SubmitShares.Error, block
//! solutions.

use std::sync::Arc;

use binary_sv2::B064KOwned;
use channels_sv2::{
    server::share_accounting::{ShareValidationError, ShareValidationResult},
    Vardiff,
};
use hashpool_ehash::Work;
use mining_sv2::{
    CloseChannelOwned, SubmitSharesErrorOwned, SubmitSharesExtendedOwned,
    SubmitSharesStandardOwned, ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID,
    ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE,
};
use parsers_sv2::MiningOwned;
use template_distribution_sv2::SubmitSolutionOwned;
use tracing::{info, warn};

use super::{
    channel_set::{ChannelEntry, ChannelKind, ChannelSet},
    MinerHandles,
};
use crate::{
    accepted_share::{AcceptedShare, BlockFacts},
    counters::PoolStats,
    ledger::{AccrualLedger, Receipt, Receipts},
};

/// The one place an accepted share is handled: everything that follows from a share the pool
/// accepted (stats, then ehash accrual in the ledger) starts in
/// [`ShareSink::on_share_accepted`].
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

    /// [`ShareSink::make_durable`] for every share of a burst of frames: one answer for all.
    pub async fn make_all_durable(&self, shares: Vec<AcceptedShare>) -> Receipts {
        self.ledger.record_all(shares).await
    }

    pub fn on_share_rejected(&self) {
        self.stats.record_rejected();
    }
}

/// The fields of a share both kinds carry.
struct ShareHeader {
    channel_id: u32,
    job_id: u32,
    sequence_number: u32,
    version: u32,
    ntime: u32,
    nonce: u32,
}

pub fn standard(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    s: SubmitSharesStandardOwned,
    accepted: &mut Vec<AcceptedShare>,
) -> Vec<MiningOwned> {
    let header = ShareHeader {
        channel_id: s.channel_id,
        job_id: s.job_id,
        sequence_number: s.sequence_number,
        version: s.version,
        ntime: s.ntime,
        nonce: s.nonce,
    };
    handle(ctx, set, header, accepted, |entry| match &mut entry.kind {
        ChannelKind::Standard(c) => Some(c.validate_share(s)),
        ChannelKind::Extended(_) => None,
    })
}

pub fn extended(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    s: SubmitSharesExtendedOwned,
    accepted: &mut Vec<AcceptedShare>,
) -> Vec<MiningOwned> {
    let header = ShareHeader {
        channel_id: s.channel_id,
        job_id: s.job_id,
        sequence_number: s.sequence_number,
        version: s.version,
        ntime: s.ntime,
        nonce: s.nonce,
    };
    handle(ctx, set, header, accepted, |entry| match &mut entry.kind {
        ChannelKind::Extended(c) => Some(c.validate_share(s)),
        ChannelKind::Standard(_) => None,
    })
}

fn share_error(h: &ShareHeader, code: &str) -> MiningOwned {
    MiningOwned::SubmitSharesError(SubmitSharesErrorOwned {
        channel_id: h.channel_id,
        sequence_number: h.sequence_number,
        error_code: hashpool_sv2_io::str0255(code),
    })
}

fn handle(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    h: ShareHeader,
    accepted: &mut Vec<AcceptedShare>,
    validate: impl FnOnce(
        &mut ChannelEntry,
    ) -> Option<Result<ShareValidationResult, ShareValidationError>>,
) -> Vec<MiningOwned> {
    let Some(entry) = set.entry_mut(h.channel_id) else {
        ctx.shares.on_share_rejected();
        return vec![share_error(&h, ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID)];
    };
    // A share of the wrong kind for its channel names a channel that, for it, does not exist.
    let Some(result) = validate(entry) else {
        ctx.shares.on_share_rejected();
        return vec![share_error(&h, ERROR_CODE_SUBMIT_SHARES_INVALID_CHANNEL_ID)];
    };
    let (hash, block) = match result {
        Ok(ShareValidationResult::Valid(hash)) => (hash, None),
        Ok(ShareValidationResult::BlockFound(hash, template_id, coinbase)) => {
            (hash, Some((template_id, coinbase)))
        }
        Err(e) => {
            ctx.shares.on_share_rejected();
            return rejected(ctx, set, &h, e);
        }
    };
    let block_hash = bitcoin::BlockHash::from_raw_hash(hash);
    let work = entry.share_work(h.job_id, block_hash).unwrap_or_else(|| {
        // channels_sv2 accepted a share on a job we have no target for: credit what the hash
        // proves against the channel's current target (nothing if it misses it), and count it.
        warn!(
            job_id = h.job_id,
            "no recorded target for an accepted share's job"
        );
        ctx.stats.record_without_job_target();
        let current = entry.channel().target();
        if current.is_met_by(block_hash) {
            Work::from_target(&current)
        } else {
            Work::ZERO
        }
    });
    let chain = block.as_ref().and_then(|_| ctx.jobs.chain());
    let facts = block.as_ref().and_then(|(_, coinbase)| {
        let (height, value_sats) = hashpool_shares::chain::coinbase_summary(coinbase)?;
        let n_bits = chain.as_ref()?.n_bits;
        Some(BlockFacts {
            height,
            value_sats,
            network_work: Work::from_target(&bitcoin::Target::from_compact(
                bitcoin::CompactTarget::from_consensus(n_bits),
            )),
        })
    });
    if block.is_some() && facts.is_none() {
        warn!(
            %block_hash,
            "a found block's coinbase or chain tip could not be read: it is recorded without \
             its reward, and settlement cannot pay it"
        );
    }
    let share = AcceptedShare {
        channel_id: h.channel_id,
        locking_key: entry.locking_key,
        share_hash: *hash.as_ref(),
        work,
        block_found: block.is_some(),
        block: facts,
        tip: entry.channel().tip_id(),
    };
    ctx.shares.on_share_accepted(&share);
    accepted.push(share);
    entry.last_share_ms = Some(hashpool_role::unix_now_ms());
    let difficulty = bitcoin::Target::from_le_bytes(*hash.as_ref()).difficulty_float();
    entry.best_difficulty = entry.best_difficulty.max(difficulty);
    entry.vardiff.increment_shares_since_last_update();

    let mut out = Vec::new();
    if block.is_some() || entry.channel().share_accounting().should_acknowledge() {
        out.extend(entry.acknowledge());
    }
    if let Some((template_id, coinbase)) = block {
        let difficulty = chain.map(|c| c.difficulty);
        ctx.events.block_found(
            hash.to_string(),
            h.channel_id,
            template_id,
            &coinbase,
            difficulty,
        );
        submit_block(ctx, &h, template_id, coinbase);
    }
    out
}

fn submit_block(ctx: &MinerHandles, h: &ShareHeader, template_id: Option<u64>, coinbase: Vec<u8>) {
    let Some(template_id) = template_id else {
        // Custom jobs' blocks go out through job declaration, not the template provider.
        return;
    };
    info!(channel_id = h.channel_id, template_id, "block found");
    let coinbase_tx = match B064KOwned::new(coinbase) {
        Ok(c) => c,
        Err(e) => {
            warn!("block coinbase does not fit a SubmitSolution: {e:?}");
            return;
        }
    };
    let solution = SubmitSolutionOwned {
        template_id,
        version: h.version,
        header_timestamp: h.ntime,
        header_nonce: h.nonce,
        coinbase_tx,
    };
    if ctx.solutions.try_send(solution).is_err() {
        warn!(
            template_id,
            "block solution queue full or closed; solution dropped"
        );
    }
}

fn rejected(
    ctx: &MinerHandles,
    set: &mut ChannelSet,
    h: &ShareHeader,
    e: ShareValidationError,
) -> Vec<MiningOwned> {
    let code = match e {
        ShareValidationError::Invalid(c)
        | ShareValidationError::Stale(c)
        | ShareValidationError::InvalidJobId(c)
        | ShareValidationError::DoesNotMeetTarget(c)
        | ShareValidationError::VersionRollingNotAllowed(c)
        | ShareValidationError::DuplicateShare(c)
        | ShareValidationError::BadExtranonceSize(c) => c,
        ShareValidationError::InvalidCoinbase | ShareValidationError::NoChainTip => {
            ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE
        }
        ShareValidationError::SeenSharesBudgetExhausted => {
            // Forgetting accepted hashes would let duplicates through: close the channel.
            warn!(
                channel_id = h.channel_id,
                "duplicate-share budget exhausted; closing channel"
            );
            // Shares already accepted (and credited) are acknowledged before the channel goes.
            let acknowledged = ctx
                .registry
                .close_channel(set, h.channel_id)
                .and_then(|mut entry| entry.acknowledge());
            let mut out: Vec<MiningOwned> = acknowledged.into_iter().collect();
            out.push(share_error(h, ERROR_CODE_SUBMIT_SHARES_INVALID_SHARE));
            out.push(MiningOwned::CloseChannel(CloseChannelOwned {
                channel_id: h.channel_id,
                reason_code: hashpool_sv2_io::str0255("share-rate-too-high"),
            }));
            return out;
        }
    };
    vec![share_error(h, code)]
}
