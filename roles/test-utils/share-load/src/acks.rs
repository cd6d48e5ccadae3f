//! Acknowledgement accounting for one channel.
//!
//! SV2 acknowledges shares in batches: one `SubmitShares.Success` names the last sequence
//! number it covers and how many shares were accepted since the previous Success; a refused
//! share gets its own `SubmitShares.Error` with its sequence number and an error code. A share's
//! ack latency runs from its submission to the first answer that covers it.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

/// The shares of one channel still waiting for an answer, and what the answers said.
#[derive(Debug, Default)]
pub struct AckTracker {
    /// Submitted and not answered yet, in submission (= sequence) order.
    outstanding: VecDeque<(u32, Instant)>,
    /// Shares the pool said it accepted (the sum of `new_submits_accepted_count`).
    pub accepted: u64,
    /// Refused shares by error code.
    pub refused: BTreeMap<String, u64>,
    /// Submission to covering Success, one entry per share a Success covered.
    pub latencies: Vec<Duration>,
    /// Successes whose accepted count differs from the shares they newly cover (refusals
    /// answered after the Success that covers them, or a pool that miscounts).
    pub count_mismatches: u64,
    /// Answers naming a sequence number that was never submitted or was already answered.
    pub unexpected: u64,
}

impl AckTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a submission. Sequence numbers must increase.
    pub fn submitted(&mut self, seq: u32, at: Instant) {
        debug_assert!(self.outstanding.back().is_none_or(|(s, _)| *s < seq));
        self.outstanding.push_back((seq, at));
    }

    /// Shares submitted and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// A Success covering every outstanding share up to `last_seq`; returns how many it
    /// covered.
    pub fn on_success(&mut self, last_seq: u32, accepted_count: u32, now: Instant) -> usize {
        let mut covered = 0;
        while let Some(&(seq, sent)) = self.outstanding.front() {
            if seq > last_seq {
                break;
            }
            self.outstanding.pop_front();
            self.latencies.push(now.saturating_duration_since(sent));
            covered += 1;
        }
        self.accepted += u64::from(accepted_count);
        if covered == 0 && accepted_count > 0 {
            self.unexpected += 1;
        }
        if covered != accepted_count as usize {
            self.count_mismatches += 1;
        }
        covered
    }

    /// An Error for share `seq`: counted by code, and no longer waited for.
    pub fn on_error(&mut self, seq: u32, code: &str) {
        *self.refused.entry(code.to_string()).or_default() += 1;
        match self.outstanding.binary_search_by_key(&seq, |(s, _)| *s) {
            Ok(i) => {
                self.outstanding.remove(i);
            }
            Err(_) => self.unexpected += 1,
        }
    }

    /// Shares refused, all codes.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn a_batched_success_covers_every_share_up_to_its_sequence_number() {
        let t0 = Instant::now();
        let mut acks = AckTracker::new();
        for seq in 1..=5 {
            acks.submitted(seq, at(t0, seq as u64));
        }
        assert_eq!(acks.on_success(3, 3, at(t0, 10)), 3);
        assert_eq!(acks.in_flight(), 2);
        assert_eq!(acks.accepted, 3);
        assert_eq!(
            acks.latencies,
            vec![
                Duration::from_millis(9),
                Duration::from_millis(8),
                Duration::from_millis(7)
            ]
        );
        assert_eq!(acks.on_success(5, 2, at(t0, 20)), 2);
        assert_eq!(acks.in_flight(), 0);
        assert_eq!(acks.accepted, 5);
        assert_eq!(acks.count_mismatches, 0);
        assert_eq!(acks.unexpected, 0);
    }

    #[test]
    fn errors_are_counted_by_code_and_leave_the_batch_count_consistent() {
        let t0 = Instant::now();
        let mut acks = AckTracker::new();
        for seq in 1..=4 {
            acks.submitted(seq, t0);
        }
        acks.on_error(2, "stale-share");
        acks.on_error(3, "stale-share");
        assert_eq!(acks.in_flight(), 2);
        // The Success covering 1..=4 counts only the two shares accepted.
        assert_eq!(acks.on_success(4, 2, at(t0, 5)), 2);
        assert_eq!(acks.accepted, 2);
        assert_eq!(acks.refused.get("stale-share"), Some(&2));
        assert_eq!(acks.refused_total(), 2);
        assert_eq!(acks.latencies.len(), 2);
        assert_eq!(acks.count_mismatches, 0);
        assert_eq!(acks.in_flight(), 0);
    }

    #[test]
    fn answers_for_unknown_shares_are_noted_not_trusted() {
        let t0 = Instant::now();
        let mut acks = AckTracker::new();
        acks.submitted(1, t0);
        acks.on_error(7, "invalid-share");
        assert_eq!(acks.unexpected, 1);
        assert_eq!(acks.in_flight(), 1);
        // A Success that covers nothing new but claims shares.
        assert_eq!(acks.on_success(0, 1, t0), 0);
        assert_eq!(acks.unexpected, 2);
        assert_eq!(acks.count_mismatches, 1);
        assert_eq!(acks.in_flight(), 1);
    }

    #[test]
    fn an_error_after_the_success_that_covered_its_share_is_a_mismatch() {
        let t0 = Instant::now();
        let mut acks = AckTracker::new();
        acks.submitted(1, t0);
        acks.submitted(2, t0);
        assert_eq!(acks.on_success(2, 1, t0), 2);
        acks.on_error(2, "duplicate-share");
        assert_eq!(acks.accepted, 1);
        assert_eq!(acks.refused_total(), 1);
        assert_eq!(acks.count_mismatches, 1);
        assert_eq!(acks.unexpected, 1);
    }
}
