//! One miner channel: its extranonce index, its target, and the shared share checker
//! ([`ShareChecker`]) holding the jobs it was sent under the current tip, the target each may
//! have been worked at, and the shares it already sent.
//!
//! Two rules are the checker's, so the jd-client judges shares as the translator does:
//!
//! - **Targets.** An SV2 `SetTarget` applies at once to every job of the channel, but a share
//!   submitted after it may be work done before it reached the miner. A job is therefore judged
//!   by the easiest target the channel had while the miner held that job: the target it was sent
//!   under, or any later one ([`ShareChecker::retarget`] keeps each job's easier target). Jobs
//!   and `SetTarget`s travel in order on the miner's one connection, so a job sent after a
//!   retarget was never worked at the targets before it: it is not judged by them.
//! - **Duplicates.** A hash remembered on any listed job is a duplicate (the same work re-sent
//!   as a new job, e.g. a fall back to the same pool job, hashes the same:
//!   [`ShareChecker::duplicates_across_jobs`]). Shares are
//!   remembered per job, [`MAX_SHARES_PER_JOB`] at most; past that the job's further shares
//!   are refused (`invalid-share`) until the next job, and nothing remembered is forgotten
//!   while its job can be submitted to. A duplicate is never accepted: the per-channel set this
//!   replaces was cleared at 65,536 shares, after which a share could be credited twice. (A
//!   block past the bound is still submitted, see `shares`.) Shares are forgotten with their
//!   job (a new tip, or [`MAX_CHANNEL_JOBS`] newer jobs): a later job with exactly the same
//!   work as a forgotten one could take its shares again.

use std::sync::Arc;

use bitcoin::Target;
use channels_sv2::VardiffState;
use hashpool_shares::{Rejection, SentJob, ShareChecker};

use crate::work::{Work, INDEX_BYTES};

/// Jobs a downstream channel keeps under one tip (older ones' shares are stale).
pub(super) const MAX_CHANNEL_JOBS: usize = 32;

/// Shares remembered per job to refuse duplicates (the translator's default too). At most
/// `MAX_CHANNEL_JOBS` × this per channel; a miner whose vardiff target is right sends far fewer
/// (`shares_per_minute` × the job's minutes).
pub(super) const MAX_SHARES_PER_JOB: usize = 4096;

pub(super) struct Channel {
    pub(super) index: [u8; INDEX_BYTES],
    /// `Some(rollable bytes)` for an extended channel.
    pub(super) extended: Option<usize>,
    /// The channel's target now (in its open success or its last `SetTarget`); only
    /// [`Channel::retarget`] moves it, so the checker's jobs follow.
    target: Target,
    pub(super) max_target: Target,
    pub(super) tip: Option<[u8; 32]>,
    /// The hashrate the target is set for (announced, then measured by vardiff).
    pub(super) hashrate: f32,
    pub(super) vardiff: VardiffState,
    /// The jobs sent under `tip` (by job id), their targets and their shares.
    shares: ShareChecker<u32, Arc<Work>>,
}

impl Channel {
    pub(super) fn new(
        index: [u8; INDEX_BYTES],
        extended: Option<usize>,
        target: Target,
        max_target: Target,
        hashrate: f32,
    ) -> Self {
        Self {
            index,
            extended,
            target,
            max_target,
            tip: None,
            hashrate,
            vardiff: VardiffState::new().expect("the default vardiff parameters are valid"),
            // No share is held to a target easier than the miner's own maximum (every target
            // sent is within it anyway).
            // The same work may be sent again under a new id (a fall back to a pool job sent
            // before): its shares are duplicates on any job.
            shares: ShareChecker::new(max_target, MAX_CHANNEL_JOBS, MAX_SHARES_PER_JOB)
                .duplicates_across_jobs(),
        }
    }

    pub(super) fn target(&self) -> Target {
        self.target
    }

    /// A new target for the channel (an `UpdateChannel` or vardiff `SetTarget`): the jobs sent
    /// from now on are judged by it; the jobs already sent by it, or by the target they had
    /// when that is easier (the miner may have found a share before the `SetTarget` reached
    /// it).
    pub(super) fn retarget(&mut self, new: Target) {
        self.target = new;
        self.shares.retarget(new);
    }

    /// Whether a job on `work` starts a new tip for this channel (it is sent as a future job
    /// with a `SetNewPrevHash`, and every job before it is stale).
    pub(super) fn is_new_tip(&self, work: &Work) -> bool {
        self.tip != Some(work.prev_hash)
    }

    /// Job `job_id` on `work` was sent at the channel's target.
    pub(super) fn sent(&mut self, job_id: u32, work: Arc<Work>) {
        let clean = self.is_new_tip(&work);
        self.tip = Some(work.prev_hash);
        self.shares.send(job_id, work, self.target, clean);
    }

    /// No job sent so far can be mined any more (the pool channel is gone or reopened).
    pub(super) fn forget_jobs(&mut self) {
        self.shares.clear();
    }

    /// The job a share names and the target the share must meet; `Stale` when it is not one
    /// of the channel's jobs (see [`Rejection::unknown_job`]).
    pub(super) fn job(&self, job_id: u32) -> Result<SentJob<'_, Arc<Work>>, Rejection> {
        self.shares.job(&job_id)
    }

    /// Remembers a share whose header checked (`hash` as a target) or refuses it: a
    /// duplicate, or its job's share bound reached.
    pub(super) fn record(
        &mut self,
        job_id: u32,
        hash: &Target,
        required: &Target,
    ) -> Result<(), Rejection> {
        self.shares.record(&job_id, hash, required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(byte: u8) -> Target {
        Target::from_le_bytes([byte; 32])
    }

    fn work(prev_hash: u8) -> Arc<Work> {
        Arc::new(Work {
            upstream_job_id: 1,
            opening: 1,
            version: 0x2000_0000,
            version_rolling_allowed: true,
            coinbase_prefix: Vec::new(),
            coinbase_suffix: Vec::new(),
            pool_prefix: Vec::new(),
            pool_size: 8,
            merkle_path: Vec::new(),
            prev_hash: [prev_hash; 32],
            nbits: 0x207f_ffff,
            min_ntime: 0,
            upstream_target: Target::MAX,
            declared: None,
        })
    }

    fn channel(target: Target) -> Channel {
        // The miner's maximum: every target (`Target::MAX` is difficulty 1's, not this).
        Channel::new([0, 1], None, target, t(0xff), 1.0)
    }

    fn required(ch: &Channel, job_id: u32) -> Result<Target, Rejection> {
        ch.job(job_id).map(|j| j.required)
    }

    #[test]
    fn shares_on_jobs_sent_before_a_retarget_are_judged_by_the_older_target() {
        let easy = t(0xff);
        let mid = t(0x0f);
        let hard = t(0x01);
        let mut ch = channel(easy);
        let w = work(1);
        for id in 1..=4 {
            ch.sent(id, w.clone());
        }
        assert_eq!(required(&ch, 3), Ok(easy));
        // Jobs 1..=4 were sent; vardiff makes the channel harder from job 5 on.
        ch.retarget(mid);
        ch.sent(5, w.clone());
        assert_eq!(
            required(&ch, 4),
            Ok(easy),
            "work found before the SetTarget"
        );
        assert_eq!(required(&ch, 5), Ok(mid));
        // A second retarget soon after: each job keeps the easiest target the channel had
        // while the miner held it. Job 5 reached the miner after the SetTarget to `mid` (one
        // ordered connection), so it was never worked at `easy`: it is judged by `mid`. (This
        // assertion said `easy` when the channel remembered only one older target for every
        // job before the last retarget: lenient by construction, and it let any share on job
        // 5 meeting no target the miner ever had for it be accepted.)
        ch.retarget(hard);
        ch.sent(6, w.clone());
        assert_eq!(required(&ch, 4), Ok(easy));
        assert_eq!(required(&ch, 5), Ok(mid));
        assert_eq!(required(&ch, 6), Ok(hard));
        // An easier target applies to every job at once.
        ch.retarget(easy);
        ch.sent(7, w.clone());
        assert_eq!(required(&ch, 6), Ok(easy));
        assert_eq!(required(&ch, 7), Ok(easy));
    }

    #[test]
    fn a_channels_first_easy_target_does_not_follow_the_jobs_sent_after_vardiff_raised_it() {
        // Vardiff raising an under-announced miner step by step: the old single "older target"
        // kept the first (easiest) target for every job before the last retarget, for ever.
        // (target the channel moves to, then the job sent at it; then (job, required) after)
        type Step = (u8, u32, &'static [(u32, u8)]);
        let steps: &[Step] = &[
            (0x7f, 2, &[(1, 0xff), (2, 0x7f)]),
            (0x3f, 3, &[(1, 0xff), (2, 0x7f), (3, 0x3f)]),
            (0x1f, 4, &[(1, 0xff), (2, 0x7f), (3, 0x3f), (4, 0x1f)]),
        ];
        let mut ch = channel(t(0xff));
        ch.sent(1, work(1));
        for (target, job, expected) in steps {
            ch.retarget(t(*target));
            ch.sent(*job, work(1));
            for (id, r) in *expected {
                assert_eq!(required(&ch, *id), Ok(t(*r)), "at {target:#x}: job {id}");
            }
        }
        assert_eq!(ch.target(), t(0x1f));
    }

    #[test]
    fn jobs_belong_to_their_tip_and_are_bounded() {
        let mut ch = channel(t(0xff));
        ch.sent(1, work(1));
        assert!(!ch.is_new_tip(&work(1)));
        assert!(ch.is_new_tip(&work(2)));
        ch.sent(2, work(2));
        assert_eq!(
            required(&ch, 1),
            Err(Rejection::Stale),
            "a job of the old tip"
        );
        assert_eq!(ch.job(2).map(|j| j.job.prev_hash), Ok([2; 32]));
        for id in 3..3 + MAX_CHANNEL_JOBS as u32 {
            ch.sent(id, work(2));
        }
        assert_eq!(
            required(&ch, 2),
            Err(Rejection::Stale),
            "past the job bound"
        );
        assert!(required(&ch, 3).is_ok());
        ch.forget_jobs();
        assert_eq!(
            required(&ch, 3),
            Err(Rejection::Stale),
            "the pool channel is gone"
        );
    }

    #[test]
    fn a_duplicate_is_never_accepted_even_past_the_bound() {
        let mut ch = channel(t(0xff));
        ch.sent(1, work(1));
        ch.sent(2, work(1));
        let req = required(&ch, 1).expect("listed");
        let hash = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            Target::from_le_bytes(b)
        };
        for n in 0..MAX_SHARES_PER_JOB as u32 {
            assert_eq!(ch.record(1, &hash(n), &req), Ok(()), "share {n}");
        }
        assert_eq!(ch.record(1, &hash(0), &req), Err(Rejection::Duplicate));
        let full = Rejection::JobShareLimit(MAX_SHARES_PER_JOB);
        assert_eq!(ch.record(1, &hash(u32::MAX), &req), Err(full));
        assert_eq!(full.code(), "invalid-share");
        // Nothing was forgotten to make room: every share is still a duplicate.
        for n in [0, 1, MAX_SHARES_PER_JOB as u32 - 1] {
            assert_eq!(
                ch.record(1, &hash(n), &req),
                Err(Rejection::Duplicate),
                "{n}"
            );
        }
        // Another job has its own room, but the same hash there is the same work.
        assert_eq!(ch.record(2, &hash(0), &req), Err(Rejection::Duplicate));
        assert_eq!(ch.record(2, &hash(u32::MAX), &req), Ok(()));
        assert_eq!(
            ch.record(2, &hash(u32::MAX), &req),
            Err(Rejection::Duplicate)
        );
    }
}
