//! Duplicate detection for the ledger, in memory: the hashes of the shares credited on the
//! current chain tip and the one before it. A share is only valid on the tip of its job, so a
//! hash older than that can never be submitted again. Within a pool run the channels refuse
//! duplicates first (per channel, per tip); this filter covers the rest, chiefly a share
//! replayed after a restart, since the ledger reloads the last tip's hashes from its log.

use std::collections::{HashSet, VecDeque};

/// Tips held at most: the current one, and the previous one for shares in flight across a
/// block change.
const TIPS: usize = 2;

pub(super) struct Seen {
    /// Oldest first.
    tips: VecDeque<(i64, HashSet<u128>)>,
    max_per_tip: usize,
    /// Warned that the current tip's filter is full.
    warned_full: bool,
}

/// The filter keeps 16 bytes of each hash: the low-order ones, which proof of work leaves
/// random (a collision is a 2^-128 chance, not something a miner can aim for).
fn short(hash: &[u8; 32]) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    u128::from_le_bytes(b)
}

impl Seen {
    pub(super) fn new(max_per_tip: usize) -> Self {
        Self {
            tips: VecDeque::with_capacity(TIPS + 1),
            max_per_tip,
            warned_full: false,
        }
    }

    pub(super) fn contains(&self, hash: &[u8; 32]) -> bool {
        let h = short(hash);
        self.tips.iter().any(|(_, set)| set.contains(&h))
    }

    /// Records a credited share of tip `tip`. Past `max_per_tip` hashes on one tip the filter
    /// stops growing (memory stays bounded); the channels still refuse duplicates within the
    /// run, and a replay after a restart is caught for the hashes held.
    pub(super) fn insert(&mut self, tip: i64, hash: &[u8; 32]) {
        let set = match self.tips.iter().position(|(t, _)| *t == tip) {
            Some(i) => &mut self.tips[i].1,
            None => {
                self.tips.push_back((tip, HashSet::new()));
                while self.tips.len() > TIPS {
                    self.tips.pop_front();
                }
                self.warned_full = false;
                &mut self.tips.back_mut().expect("just pushed").1
            }
        };
        if set.len() < self.max_per_tip {
            set.insert(short(hash));
        } else if !self.warned_full {
            self.warned_full = true;
            tracing::warn!(
                max = self.max_per_tip,
                "the ledger's duplicate filter for this chain tip is full; the channels still \
                 refuse duplicates within this run"
            );
        }
    }

    /// Hashes held (for tests and metrics).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tips.iter().map(|(_, s)| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> [u8; 32] {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_le_bytes());
        h
    }

    #[test]
    fn holds_the_last_two_tips_and_a_bounded_number_per_tip() {
        let mut seen = Seen::new(3);
        seen.insert(1, &hash(1));
        seen.insert(2, &hash(2));
        assert!(seen.contains(&hash(1)) && seen.contains(&hash(2)));
        seen.insert(3, &hash(3));
        assert!(!seen.contains(&hash(1)), "a third tip drops the first");
        assert!(seen.contains(&hash(2)) && seen.contains(&hash(3)));
        for n in 10..20 {
            seen.insert(3, &hash(n));
        }
        assert_eq!(seen.len(), 1 + 3);
    }
}
