//! The work of one standard channel (its jobs, chain tip and target) and share finding.

use std::collections::HashMap;

use bitcoin::{
    hashes::{sha256d, Hash},
    Target,
};
use mining_sv2::{NewMiningJobOwned, SetNewPrevHashOwned, SubmitSharesStandard};

/// A share found: what `SubmitSharesStandard` needs besides the channel and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub job_id: u32,
    pub nonce: u32,
    pub ntime: u32,
    pub version: u32,
}

impl Share {
    pub fn submit(&self, channel_id: u32, sequence_number: u32) -> SubmitSharesStandard {
        SubmitSharesStandard {
            channel_id,
            sequence_number,
            job_id: self.job_id,
            nonce: self.nonce,
            ntime: self.ntime,
            version: self.version,
        }
    }
}

/// What a grinding step ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grind {
    Found(Share),
    /// `budget` hashes tried, none met the target: try again after reading the pool.
    NotYet,
    /// No job under a known tip yet.
    NoWork,
    /// Every nonce of the active job was tried.
    Exhausted,
}

/// One standard channel's jobs, tip and target, and the next nonce to try.
#[derive(Debug)]
pub struct ChannelWork {
    target: Target,
    future_jobs: HashMap<u32, NewMiningJobOwned>,
    active: Option<NewMiningJobOwned>,
    /// prev_hash, min_ntime, nbits.
    tip: Option<([u8; 32], u32, u32)>,
    /// The next nonce of the active job; `None` once all were tried.
    next_nonce: Option<u32>,
    /// Hashes computed, all jobs.
    pub hashes: u64,
    pub new_tips: u64,
    pub target_changes: u64,
}

impl ChannelWork {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            future_jobs: HashMap::new(),
            active: None,
            tip: None,
            next_nonce: Some(0),
            hashes: 0,
            new_tips: 0,
            target_changes: 0,
        }
    }

    /// A job under a known tip.
    pub fn has_work(&self) -> bool {
        self.active.is_some() && self.tip.is_some()
    }

    pub fn target(&self) -> Target {
        self.target
    }

    pub fn set_target(&mut self, target: Target) {
        if target != self.target {
            self.target_changes += 1;
        }
        self.target = target;
    }

    /// A job: future (no `min_ntime`, waits for its SetNewPrevHash) or for the current tip
    /// (replaces the active job at once).
    pub fn on_job(&mut self, job: NewMiningJobOwned) {
        if job.min_ntime.clone().into_inner().is_some() {
            self.activate(job);
        } else {
            self.future_jobs.insert(job.job_id, job);
        }
    }

    /// A new tip: its future job becomes the active one (shares of older jobs are stale now).
    pub fn on_prev_hash(&mut self, p: &SetNewPrevHashOwned) {
        self.new_tips += 1;
        self.tip = Some((p.prev_hash.to_array(), p.min_ntime, p.nbits));
        if let Some(job) = self.future_jobs.remove(&p.job_id) {
            self.activate(job);
        }
        self.future_jobs.clear();
    }

    fn activate(&mut self, job: NewMiningJobOwned) {
        self.active = Some(job);
        self.next_nonce = Some(0);
    }

    /// The next nonce of the active job as a share whatever its hash: what a channel whose
    /// target is too hard to meet soon submits to get an answer (a pool that checks refuses it).
    /// `None` without work or once every nonce was tried.
    pub fn unchecked_share(&mut self) -> Option<Share> {
        let (Some(job), Some((_, tip_ntime, _))) = (&self.active, self.tip) else {
            return None;
        };
        let nonce = self.next_nonce?;
        self.next_nonce = nonce.checked_add(1);
        Some(Share {
            job_id: job.job_id,
            nonce,
            ntime: job.min_ntime.clone().into_inner().unwrap_or(tip_ntime),
            version: job.version,
        })
    }

    /// Tries at most `budget` nonces of the active job against the channel's target.
    pub fn grind(&mut self, budget: u32) -> Grind {
        let (Some(job), Some((prev_hash, tip_ntime, nbits))) = (&self.active, self.tip) else {
            return Grind::NoWork;
        };
        let Some(mut nonce) = self.next_nonce else {
            return Grind::Exhausted;
        };
        let ntime = job.min_ntime.clone().into_inner().unwrap_or(tip_ntime);
        let mut header = [0u8; 80];
        header[0..4].copy_from_slice(&job.version.to_le_bytes());
        header[4..36].copy_from_slice(&prev_hash);
        header[36..68].copy_from_slice(&job.merkle_root.to_array());
        header[68..72].copy_from_slice(&ntime.to_le_bytes());
        header[72..76].copy_from_slice(&nbits.to_le_bytes());
        for _ in 0..budget.max(1) {
            header[76..80].copy_from_slice(&nonce.to_le_bytes());
            self.hashes += 1;
            let hash = Target::from_le_bytes(sha256d::Hash::hash(&header).to_byte_array());
            let found = hash <= self.target;
            let tried = nonce;
            self.next_nonce = nonce.checked_add(1);
            if found {
                return Grind::Found(Share {
                    job_id: job.job_id,
                    nonce: tried,
                    ntime,
                    version: job.version,
                });
            }
            match self.next_nonce {
                Some(n) => nonce = n,
                None => return Grind::Exhausted,
            }
        }
        Grind::NotYet
    }
}

#[cfg(test)]
mod tests {
    use binary_sv2::{Sv2Option, U256Owned};

    use super::*;

    fn job(job_id: u32, min_ntime: Option<u32>) -> NewMiningJobOwned {
        NewMiningJobOwned {
            channel_id: 1,
            job_id,
            min_ntime: Sv2Option::new(min_ntime).into_owned(),
            version: 0x2000_0000,
            merkle_root: U256Owned::from([job_id as u8; 32]),
        }
    }

    fn tip(job_id: u32) -> SetNewPrevHashOwned {
        SetNewPrevHashOwned {
            channel_id: 1,
            job_id,
            prev_hash: U256Owned::from([7u8; 32]),
            min_ntime: 1_700_000_000,
            nbits: 0x1d00_ffff,
        }
    }

    #[test]
    fn every_nonce_is_a_share_at_the_maximal_target_and_none_repeats() {
        let mut w = ChannelWork::new(Target::MAX_ATTAINABLE_MAINNET);
        assert_eq!(w.grind(10), Grind::NoWork);
        w.on_job(job(1, None));
        assert_eq!(w.grind(10), Grind::NoWork, "a future job waits for its tip");
        w.on_prev_hash(&tip(1));
        w.set_target(Target::from_le_bytes([0xff; 32]));
        let shares: Vec<Share> = (0..3)
            .map(|_| match w.grind(1) {
                Grind::Found(s) => s,
                other => panic!("expected a share, got {other:?}"),
            })
            .collect();
        assert_eq!(
            shares.iter().map(|s| s.nonce).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(shares
            .iter()
            .all(|s| s.job_id == 1 && s.ntime == 1_700_000_000));
        assert_eq!(w.hashes, 3);
    }

    #[test]
    fn a_hard_target_is_ground_in_bounded_steps() {
        let mut w = ChannelWork::new(Target::ZERO);
        w.on_job(job(1, None));
        w.on_prev_hash(&tip(1));
        assert_eq!(w.grind(100), Grind::NotYet);
        assert_eq!(w.hashes, 100);
    }

    #[test]
    fn an_unchecked_share_takes_the_next_nonce_whatever_the_target() {
        let mut w = ChannelWork::new(Target::ZERO);
        assert_eq!(w.unchecked_share(), None, "no work yet");
        w.on_job(job(1, None));
        w.on_prev_hash(&tip(1));
        assert_eq!(w.grind(100), Grind::NotYet);
        let s = w.unchecked_share().expect("a share");
        assert_eq!((s.job_id, s.nonce, s.ntime), (1, 100, 1_700_000_000));
        assert_eq!(w.unchecked_share().map(|s| s.nonce), Some(101));
    }

    #[test]
    fn a_job_for_the_current_tip_replaces_the_active_one_and_a_new_tip_its_future_job() {
        let mut w = ChannelWork::new(Target::from_le_bytes([0xff; 32]));
        w.on_job(job(1, None));
        w.on_prev_hash(&tip(1));
        w.on_job(job(2, Some(1_700_000_005)));
        match w.grind(1) {
            Grind::Found(s) => assert_eq!((s.job_id, s.nonce, s.ntime), (2, 0, 1_700_000_005)),
            other => panic!("{other:?}"),
        }
        w.on_job(job(3, None));
        w.on_prev_hash(&tip(3));
        match w.grind(1) {
            Grind::Found(s) => assert_eq!((s.job_id, s.nonce), (3, 0)),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.new_tips, 2);
    }
}
