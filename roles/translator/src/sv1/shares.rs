//! `mining.submit`: the share is rebuilt from its job and judged by the shared checker
//! ([`hashpool_shares`]): refused here with the stratum code miners know, credited here when it
//! meets the miner's difficulty but not the channel's, or sent to the pool and answered with the
//! pool's verdict.

use std::sync::atomic::AtomicU64;

use bitcoin::Target;
use channels_sv2::vardiff::Vardiff;
use hashpool_shares::{check_extranonce_size, NtimeRule, Rejection, VersionRule};
use hashpool_sv1::{
    error_code, merkle_root, response_error, response_ok, target_to_difficulty, ShareHeader, Submit,
};
use mining_sv2::ERROR_CODE_SUBMIT_SHARES_STALE_SHARE;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{miner::Miner, Shared, Work};
use crate::{
    stats::TranslatorStats,
    sv2::{Command, NotAccepted, ShareToPool},
};

/// Why a share is refused here. Each has the stratum code miners know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error("subscribe first")]
    NotSubscribed,
    #[error("worker not authorized")]
    Unauthorized,
    /// With no pool there is nobody to pay the work.
    #[error("the pool is unreachable")]
    NoPool,
    #[error("job not found (stale)")]
    Stale,
    #[error("wrong extranonce2 size")]
    Extranonce2Size,
    /// Never refused here today (the pool judges ntime), but a verdict the checker has.
    #[error("invalid ntime")]
    Ntime,
    #[error("version rolling was not configured")]
    VersionRolling,
    #[error("duplicate share")]
    Duplicate,
    #[error("low difficulty share")]
    LowDifficulty,
    #[error("{0} shares on this job already: no more on it until the next job")]
    JobShareLimit(usize),
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        match r {
            // SV1 has one word for both: the job is not one the miner may submit to.
            Rejection::Stale | Rejection::InvalidJobId => Refusal::Stale,
            Rejection::ExtranonceSize => Refusal::Extranonce2Size,
            Rejection::Ntime => Refusal::Ntime,
            Rejection::Version => Refusal::VersionRolling,
            Rejection::Duplicate => Refusal::Duplicate,
            Rejection::Difficulty => Refusal::LowDifficulty,
            Rejection::JobShareLimit(n) => Refusal::JobShareLimit(n),
        }
    }
}

impl Refusal {
    pub(super) fn code(self) -> i64 {
        match self {
            Refusal::NotSubscribed => error_code::NOT_SUBSCRIBED,
            Refusal::Unauthorized => error_code::UNAUTHORIZED,
            Refusal::Stale => error_code::JOB_NOT_FOUND,
            Refusal::Duplicate => error_code::DUPLICATE_SHARE,
            Refusal::LowDifficulty => error_code::LOW_DIFFICULTY,
            Refusal::NoPool
            | Refusal::Extranonce2Size
            | Refusal::Ntime
            | Refusal::VersionRolling
            | Refusal::JobShareLimit(_) => error_code::OTHER,
        }
    }

    /// The counter of refusals for this reason, beside the total.
    fn counter(self, stats: &TranslatorStats) -> Option<&AtomicU64> {
        match self {
            Refusal::Stale => Some(&stats.shares_refused_stale),
            Refusal::Duplicate => Some(&stats.shares_refused_duplicate),
            Refusal::LowDifficulty => Some(&stats.shares_refused_low_difficulty),
            Refusal::JobShareLimit(_) => Some(&stats.shares_refused_job_share_limit),
            _ => None,
        }
    }
}

pub(super) enum Checked {
    /// Valid at the miner's difficulty, not at the channel's: answered here. `work`: the
    /// share's, in difficulty-1 shares (the miner's difficulty).
    BelowChannelTarget { work: f64 },
    /// For the pool's verdict.
    ToPool(ShareToPool, f64),
}

/// Which opening of the miner's channel the upstream has now: jobs from an earlier one are
/// stale, even before the miner has been sent its new work.
#[derive(Clone, Copy)]
pub(super) struct ChannelNow {
    pub(super) opening: u64,
}

/// `mining.submit`: the answer now, or none when the pool's verdict is awaited (it comes
/// through `out`).
pub(super) async fn on_submit(
    id: Value,
    submit: Submit,
    m: &mut Miner,
    work: &Work,
    shared: &Shared,
    out: &mpsc::UnboundedSender<String>,
) -> Vec<String> {
    let channel = work
        .borrow()
        .as_ref()
        .map(|w| ChannelNow { opening: w.opening });
    let checked = check_share(m, &submit, channel);
    let stats = &shared.stats;
    match checked {
        Err(refusal) => {
            TranslatorStats::add(&stats.shares_refused_here);
            if let Some(counter) = refusal.counter(stats) {
                TranslatorStats::add(counter);
            }
            vec![response_error(&id, refusal.code(), &refusal.to_string())]
        }
        Ok(Checked::BelowChannelTarget { work }) => {
            m.vardiff.increment_shares_since_last_update();
            TranslatorStats::add(&stats.shares_below_channel_target);
            if let Some(c) = &m.counters {
                stats.accepted(c, work);
            }
            vec![response_ok(&id, json!(true))]
        }
        Ok(Checked::ToPool(share, work)) => {
            m.vardiff.increment_shares_since_last_update();
            let (verdict, answer) = oneshot::channel();
            let share = ShareToPool { verdict, ..share };
            if shared.commands.send(Command::Share(share)).await.is_err() {
                return vec![response_error(
                    &id,
                    error_code::OTHER,
                    "translator stopping",
                )];
            }
            TranslatorStats::add(&stats.shares_forwarded);
            let (out, stats, counters) = (out.clone(), stats.clone(), m.counters.clone());
            tokio::spawn(async move {
                let line = match answer.await {
                    Ok(Ok(())) => {
                        TranslatorStats::add(&stats.shares_accepted_by_pool);
                        if let Some(c) = &counters {
                            stats.accepted(c, work);
                        }
                        response_ok(&id, json!(true))
                    }
                    Ok(Err(why)) => {
                        TranslatorStats::add(&stats.shares_refused_upstream);
                        let code = pool_refusal_code(&why, &stats);
                        response_error(&id, code, &why.to_string())
                    }
                    Err(_) => {
                        TranslatorStats::add(&stats.shares_refused_upstream);
                        TranslatorStats::add(&stats.shares_unjudged_upstream);
                        response_error(&id, error_code::OTHER, "no answer from the pool")
                    }
                };
                let _ = out.send(line);
            });
            Vec::new()
        }
    }
}

/// The stratum code for a share the pool did not accept, counted by why.
fn pool_refusal_code(why: &NotAccepted, stats: &TranslatorStats) -> i64 {
    match why {
        // A block found since the share's job was sent: as stale as one refused here, and
        // answered with the same code.
        NotAccepted::Refused(c) if c == ERROR_CODE_SUBMIT_SHARES_STALE_SHARE => {
            TranslatorStats::add(&stats.shares_refused_upstream_stale);
            error_code::JOB_NOT_FOUND
        }
        NotAccepted::Refused(_) => error_code::OTHER,
        NotAccepted::Unjudged(_) => {
            TranslatorStats::add(&stats.shares_unjudged_upstream);
            error_code::OTHER
        }
    }
}

/// Rebuilds the share's header from its job and checks it.
pub(super) fn check_share(
    m: &mut Miner,
    s: &Submit,
    channel: Option<ChannelNow>,
) -> Result<Checked, Refusal> {
    if !m.subscribed {
        return Err(Refusal::NotSubscribed);
    }
    if m.authorized.as_deref() != Some(s.worker.as_str()) {
        return Err(Refusal::Unauthorized);
    }
    let Some(channel) = channel else {
        return Err(Refusal::NoPool);
    };
    // The channel reopened and the miner has not been sent its new work yet: every job it holds
    // belongs to the old channel.
    if m.opening != Some(channel.opening) {
        return Err(Refusal::Stale);
    }
    let sent = m.shares.job(&s.job_id)?;
    let required = sent.required;
    let (job, channel_id) = (&sent.job.job, sent.job.channel_id);
    check_extranonce_size(s.extranonce2.len(), m.extranonce2_size)?;
    // The pool judges ntime; SV1 shares carry only the bits they rolled.
    NtimeRule::Unchecked.check(s.ntime)?;
    let version = VersionRule::new(job.version, m.version_rolling).apply_bits(s.version_bits)?;
    // The channel's extranonce after its prefix: the miner's index (shared channels), its
    // extranonce2, and in public mode the unused rest as zeros.
    let mut miner_part = m.miner_part();
    miner_part.extend_from_slice(&s.extranonce2);
    miner_part.resize(miner_part.len() + m.pad, 0);
    let coinbase = [
        job.coinbase_prefix.as_slice(),
        &m.extranonce_prefix,
        &miner_part,
        &job.coinbase_suffix,
    ]
    .concat();
    let hash = ShareHeader {
        version,
        prev_hash: &job.prev_hash,
        merkle_root: &merkle_root(&coinbase, &job.merkle_path),
        ntime: s.ntime,
        nbits: job.nbits,
        nonce: s.nonce,
    }
    .hash();
    let (job_id, channel_target) = (job.job_id, Target::from_le_bytes(job.channel_target));
    m.shares.record(&s.job_id, &hash, &required)?;
    // Work at the difficulty the share was asked for (the easiest of the job's targets).
    let work = target_to_difficulty(&required.to_le_bytes());
    // The pool judges a share by its job's target (fixed when the job became active), not by
    // a SetTarget that came later.
    if hash > channel_target {
        return Ok(Checked::BelowChannelTarget { work });
    }
    let (verdict, _) = oneshot::channel();
    Ok(Checked::ToPool(
        ShareToPool {
            channel_id,
            job_id,
            nonce: s.nonce,
            ntime: s.ntime,
            version,
            extranonce: miner_part,
            verdict,
        },
        work,
    ))
}
