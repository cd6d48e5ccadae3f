//! One miner channel: its extranonce index, its target (with the one before the last
//! retarget), the jobs it was sent under the current tip and the shares it already sent.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bitcoin::Target;
use channels_sv2::VardiffState;

use crate::work::{Work, INDEX_BYTES};

pub(super) struct Channel {
    pub(super) index: [u8; INDEX_BYTES],
    /// `Some(rollable bytes)` for an extended channel.
    pub(super) extended: Option<usize>,
    pub(super) target: Target,
    pub(super) max_target: Target,
    pub(super) jobs: HashMap<u32, Arc<Work>>,
    pub(super) tip: Option<[u8; 32]>,
    pub(super) seen: HashSet<bitcoin::BlockHash>,
    /// The hashrate the target is set for (announced, then measured by vardiff).
    pub(super) hashrate: f32,
    pub(super) vardiff: VardiffState,
    /// The target before the last retarget and the first job id sent after it: a miner may
    /// still send shares it found at the older target on the jobs it had then.
    before: Option<(Target, u32)>,
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
            jobs: HashMap::new(),
            tip: None,
            seen: HashSet::new(),
            hashrate,
            vardiff: VardiffState::new().expect("the default vardiff parameters are valid"),
            before: None,
        }
    }

    /// A new target, from the job `next_job_id` on. After several quick retargets a job sent
    /// before them is judged by the easiest target it may have been worked at.
    pub(super) fn retarget(&mut self, new: Target, next_job_id: u32) {
        let older = match self.before {
            Some((t, _)) => t.max(self.target),
            None => self.target,
        };
        self.before = Some((older, next_job_id));
        self.target = new;
    }

    /// The target a share on `job_id` is checked against.
    pub(super) fn target_for(&self, job_id: u32) -> Target {
        match self.before {
            Some((older, first_job)) if job_id < first_job => older.max(self.target),
            _ => self.target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(target: Target) -> Channel {
        Channel::new([0, 1], None, target, Target::MAX, 1.0)
    }

    #[test]
    fn shares_on_jobs_sent_before_a_retarget_are_judged_by_the_older_target() {
        let easy = Target::from_le_bytes([0xff; 32]);
        let mid = Target::from_le_bytes([0x0f; 32]);
        let hard = Target::from_le_bytes([0x01; 32]);
        let mut ch = channel(easy);
        assert_eq!(ch.target_for(3), easy);
        // Jobs 1..=4 were sent; vardiff makes the channel harder from job 5 on.
        ch.retarget(mid, 5);
        assert_eq!(ch.target_for(4), easy, "work found before the SetTarget");
        assert_eq!(ch.target_for(5), mid);
        // A second retarget soon after: every job sent before it keeps the easiest target
        // of the two (job 5 a little lenient rather than any job unfairly strict).
        ch.retarget(hard, 6);
        assert_eq!(ch.target_for(4), easy);
        assert_eq!(ch.target_for(5), easy);
        assert_eq!(ch.target_for(6), hard);
        // An easier target applies to every job at once.
        ch.retarget(easy, 7);
        assert_eq!(ch.target_for(6), easy);
        assert_eq!(ch.target_for(7), easy);
    }
}
