//! The targets a miner may be given and the work a share is credited with. A miner controls
//! its channel's nominal hashrate and maximum target; neither may make a share cost less than
//! the pool's minimum difficulty, nor earn more than the work it proves.

use bitcoin::{BlockHash, CompactTarget, Target};
use hashpool_ehash::Work;

/// The network target of a tip's `nBits`.
pub fn network_target(nbits: u32) -> Target {
    Target::from_compact(CompactTarget::from_consensus(nbits))
}

/// The target of a share difficulty (difficulty 1 = `Target::MAX`, the difficulty-1 target).
/// Difficulties too small to express give the easiest target; no target is ever zero.
pub fn target_from_difficulty(difficulty: f64) -> Target {
    // Target::MAX is 0xffff * 2^208: the target is x * 2^208 with x = 0xffff / difficulty,
    // written as a 53-bit mantissa shifted into place.
    let x = 65_535.0 / difficulty;
    if !x.is_finite() || x >= 2f64.powi(48) {
        return Target::from_le_bytes([0xff; 32]);
    }
    let mut bytes = [0u8; 32];
    if x > 0.0 {
        let exponent = x.log2().floor() as i32;
        let mantissa = (x * 2f64.powi(52 - exponent)) as u64;
        let shift = exponent - 52 + 208;
        for bit in 0..64 {
            let to = bit + shift;
            if mantissa >> bit & 1 == 1 && (0..256).contains(&to) {
                bytes[(to / 8) as usize] |= 1 << (to % 8);
            }
        }
    }
    if bytes == [0u8; 32] {
        bytes[0] = 1;
    }
    Target::from_le_bytes(bytes)
}

/// Where a channel's target may lie, from the pool's floor and the current network target.
#[derive(Debug, Clone, Copy)]
pub struct TargetBounds {
    /// The easiest target any channel gets (the minimum share difficulty).
    pub easiest: Target,
    /// The current network target: no channel gets a harder one.
    pub network: Option<Target>,
}

impl TargetBounds {
    pub fn new(min_share_difficulty: f64, network: Option<Target>) -> Self {
        Self {
            easiest: target_from_difficulty(min_share_difficulty),
            network,
        }
    }

    /// The maximum target handed to the channel: the miner's request, made no easier than the
    /// floor and no harder than the network. Where the network is easier than the floor
    /// (regtest), the floor wins: it bounds how many shares a miner can send, and every share
    /// is then a block, credited at the network target's work ([`credited_target`]).
    ///
    /// channels_sv2 derives the target from the nominal hashrate and bounds it only from
    /// above, so a miner claiming a huge hashrate can still get a harder target than the
    /// network's; its shares are then blocks, and [`credited_target`] pays them as such.
    pub fn max_target(&self, requested: Target) -> Target {
        // Zero is not a target but a malformed request: channels_sv2 refuses it with
        // max-target-out-of-range, as the spec asks.
        if requested == Target::ZERO {
            return requested;
        }
        let floored = requested.min(self.easiest);
        match self.network {
            Some(network) if network <= self.easiest => floored.max(network),
            _ => floored,
        }
    }
}

/// What a job's shares are checked against: the job's target and the network target of its tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTarget {
    pub job: Target,
    pub network: Option<Target>,
}

impl JobTarget {
    /// The work an accepted share with header hash `hash` proves: its job target's, when the
    /// hash meets it; else the network target's. channels_sv2 accepts a share that meets the
    /// network target as a block without comparing it to the job target, so a channel whose
    /// target is harder than the network's (a miner's `max_target` of 1, say) would otherwise
    /// be paid the work of a target it never met. `None` for a hash that meets neither (not a
    /// share channels_sv2 accepts).
    pub fn credit(&self, hash: BlockHash) -> Option<Work> {
        if self.job.is_met_by(hash) {
            return Some(Work::from_target(&self.job));
        }
        self.network
            .filter(|n| n.is_met_by(hash))
            .map(|n| Work::from_target(&n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGTEST_NBITS: u32 = 0x207f_ffff;
    const TESTNET_NBITS: u32 = 0x1d00_ffff;

    fn one() -> Target {
        let mut b = [0u8; 32];
        b[0] = 1;
        Target::from_le_bytes(b)
    }

    #[test]
    fn difficulty_one_is_the_max_target_and_difficulty_scales_it() {
        assert_eq!(target_from_difficulty(1.0), Target::MAX);
        let two = Work::from_target(&target_from_difficulty(2.0)).hashes();
        let one = Work::from_target(&target_from_difficulty(1.0)).hashes();
        // Work is linear in difficulty (up to rounding of the last unit).
        assert!((two as f64 / one as f64 - 2.0).abs() < 1e-9);
        let thousandth = Work::from_target(&target_from_difficulty(0.001)).hashes();
        assert!((thousandth as f64 / one as f64 - 0.001).abs() < 1e-9);
    }

    #[test]
    fn nonsense_difficulties_give_a_usable_target() {
        for d in [1e-30, 0.0, f64::MIN_POSITIVE] {
            assert_eq!(
                target_from_difficulty(d),
                Target::from_le_bytes([0xff; 32]),
                "{d}"
            );
        }
        assert_eq!(target_from_difficulty(1e90), one());
        assert_eq!(target_from_difficulty(f64::INFINITY), one());
        // Very hard difficulties keep their precision.
        let hard = Work::from_target(&target_from_difficulty(1e12)).hashes() as f64;
        let one_work = Work::from_target(&Target::MAX).hashes() as f64;
        assert!((hard / one_work / 1e12 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_max_target_of_one_is_raised_to_the_network_target() {
        let network = network_target(TESTNET_NBITS);
        let bounds = TargetBounds::new(0.001, Some(network));
        assert_eq!(bounds.max_target(one()), network);
        assert_eq!(
            bounds.max_target(Target::ZERO),
            Target::ZERO,
            "refused later"
        );
    }

    #[test]
    fn an_all_ff_max_target_is_floored_at_the_minimum_difficulty() {
        let bounds = TargetBounds::new(0.001, Some(network_target(TESTNET_NBITS)));
        let t = bounds.max_target(Target::from_le_bytes([0xff; 32]));
        assert_eq!(t, target_from_difficulty(0.001));
    }

    #[test]
    fn where_the_network_is_easier_than_the_floor_the_floor_is_used() {
        let network = network_target(REGTEST_NBITS);
        let bounds = TargetBounds::new(1.0, Some(network));
        assert_eq!(
            bounds.max_target(Target::from_le_bytes([0xff; 32])),
            Target::MAX
        );
        assert_eq!(bounds.max_target(one()), one());
    }

    fn hash_of(value: Target) -> BlockHash {
        use bitcoin::hashes::Hash;
        BlockHash::from_byte_array(value.to_le_bytes())
    }

    #[test]
    fn a_block_on_a_harder_than_network_job_is_credited_at_the_network_target() {
        let network = network_target(TESTNET_NBITS);
        let attack = JobTarget {
            job: one(),
            network: Some(network),
        };
        // A hash just meeting the network target misses the job's target of 1.
        assert_eq!(
            attack.credit(hash_of(network)),
            Some(Work::from_target(&network))
        );
        // An honest share meets its job target and earns that work, block or not.
        let easy = target_from_difficulty(0.5);
        let honest = JobTarget {
            job: easy,
            network: Some(network),
        };
        assert_eq!(
            honest.credit(hash_of(network)),
            Some(Work::from_target(&easy))
        );
        assert_eq!(honest.credit(hash_of(easy)), Some(Work::from_target(&easy)));
        // A hash meeting neither earns nothing.
        assert_eq!(attack.credit(hash_of(easy)), None);
        let regtest = JobTarget {
            job: target_from_difficulty(1e-6),
            network: Some(network_target(REGTEST_NBITS)),
        };
        assert_eq!(
            regtest.credit(hash_of(target_from_difficulty(1e-6))),
            Some(Work::from_target(&target_from_difficulty(1e-6)))
        );
    }
}
