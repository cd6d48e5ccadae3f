//! The jobs a miner may submit to, the targets each was sent with, and the shares it submitted.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
};

use bitcoin::Target;

use crate::{check_target, Rejection};

/// One sending of a job: a job re-sent with a new target is listed once per sending.
#[derive(Debug, Clone)]
struct Listing<K, J> {
    id: K,
    job: J,
    target: Target,
}

/// A listed job as a share on it is judged.
#[derive(Debug, Clone, Copy)]
pub struct SentJob<'a, J> {
    /// The job as last sent.
    pub job: &'a J,
    /// What the share's hash must meet: the easiest target the job was sent with, floored.
    pub required: Target,
}

/// One miner's (or channel's) jobs and shares. `K`: the job id the miner submits with; `J`: what
/// the caller needs of a job to rebuild a share's header.
#[derive(Debug, Clone)]
pub struct ShareChecker<K, J> {
    /// The easiest target any share is held to, whatever a job was listed with.
    floor: Target,
    /// Jobs a miner may still submit to.
    recent_jobs: usize,
    /// Newest first.
    listings: VecDeque<Listing<K, J>>,
    /// Shares per listed job, to refuse duplicates and to bound each job's.
    seen: HashMap<K, HashSet<u128>>,
    max_shares_per_job: usize,
    /// A hash remembered on any listed job is a duplicate, not only on the share's own job.
    across_jobs: bool,
}

impl<K: Clone + Eq + Hash, J> ShareChecker<K, J> {
    pub fn new(floor: Target, recent_jobs: usize, max_shares_per_job: usize) -> Self {
        ShareChecker {
            floor,
            recent_jobs,
            listings: VecDeque::new(),
            seen: HashMap::new(),
            max_shares_per_job,
            across_jobs: false,
        }
    }

    /// Refuses as a duplicate a hash remembered on any listed job, not only on the share's
    /// own: for a caller that may send the same work under several job ids (the jd-client
    /// falling back to a pool job it sent before), whose shares hash the same on each. The
    /// same hash is always the same work, so this never refuses a new share; it costs one
    /// lookup per listed job.
    pub fn duplicates_across_jobs(mut self) -> Self {
        self.across_jobs = true;
        self
    }

    pub fn floor(&self) -> Target {
        self.floor
    }

    pub fn set_floor(&mut self, floor: Target) {
        self.floor = floor;
    }

    /// Records that job `id` was sent with `target`. `clean`: the miner drops its other jobs.
    /// Only the most recent `recent_jobs` sendings stay listed; the shares of jobs no longer
    /// listed are forgotten (they are refused as stale before any duplicate check).
    pub fn send(&mut self, id: K, job: J, target: Target, clean: bool) {
        if clean {
            self.clear();
        }
        self.listings.push_front(Listing { id, job, target });
        self.listings.truncate(self.recent_jobs);
        let listings = &self.listings;
        self.seen
            .retain(|id, _| listings.iter().any(|l| l.id == *id));
    }

    /// A new target for the channel without re-sending its jobs (an SV2 `SetTarget`): every
    /// listed job also counts work under it, so an easier target applies at once and a harder
    /// one leaves work found before it still counting. Each job thus keeps the easiest target
    /// the channel had while the miner held it; a job sent after this call is listed at the
    /// target it is sent with, not at the older ones (jobs and `SetTarget`s reach the miner in
    /// the order they were sent, so it never worked that job at an older target).
    pub fn retarget(&mut self, target: Target) {
        for l in &mut self.listings {
            l.target = l.target.max(target);
        }
    }

    /// Forgets every job (a new channel: the miner's jobs are stale).
    pub fn clear(&mut self) {
        self.listings.clear();
        self.seen.clear();
    }

    /// The id of the job sent last.
    pub fn newest_id(&self) -> Option<&K> {
        self.listings.front().map(|l| &l.id)
    }

    /// The job a share names, as last sent, and the target the share must meet: a job re-sent
    /// with a harder target still counts work under the easiest it was sent with (a share found
    /// before the harder target reached the miner), never easier than the floor.
    pub fn job(&self, id: &K) -> Result<SentJob<'_, J>, Rejection> {
        let mut sent = self.listings.iter().filter(|l| l.id == *id);
        let Some(newest) = sent.next() else {
            return Err(Rejection::Stale);
        };
        let easiest = sent.map(|l| l.target).fold(newest.target, std::cmp::max);
        Ok(SentJob {
            job: &newest.job,
            required: easiest.min(self.floor),
        })
    }

    /// Judges a share's hash on job `id` against `required` (from [`ShareChecker::job`]) and
    /// remembers it. A duplicate (a hash remembered on job `id`, or on any listed job with
    /// [`ShareChecker::duplicates_across_jobs`]) is refused as such before its difficulty is
    /// judged.
    pub fn record(&mut self, id: &K, hash: &Target, required: &Target) -> Result<(), Rejection> {
        let key = share_key(hash);
        let duplicate = if self.across_jobs {
            // At most `recent_jobs` sets.
            self.seen.values().any(|s| s.contains(&key))
        } else {
            self.seen.get(id).is_some_and(|s| s.contains(&key))
        };
        if duplicate {
            return Err(Rejection::Duplicate);
        }
        check_target(hash, required)?;
        let set = self.seen.entry(id.clone()).or_default();
        // Full: refused rather than remembered by forgetting others (a forgotten share could
        // then be accepted twice).
        if set.len() >= self.max_shares_per_job {
            return Err(Rejection::JobShareLimit(self.max_shares_per_job));
        }
        set.insert(key);
        Ok(())
    }

    /// Shares remembered across every listed job.
    pub fn remembered(&self) -> usize {
        self.seen.values().map(HashSet::len).sum()
    }
}

/// A share's identity: the low 128 bits of its header hash. The same share always hashes the
/// same, so a duplicate is always found; two different shares sharing the bits would only get
/// the second refused, never a duplicate accepted.
fn share_key(hash: &Target) -> u128 {
    let mut low = [0u8; 16];
    low.copy_from_slice(&hash.to_le_bytes()[..16]);
    u128::from_le_bytes(low)
}
