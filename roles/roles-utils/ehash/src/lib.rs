//! Ehash accounting, shared by every role that counts work or issues ehash.
//!
//! Work is an exact integer (expected hashes, [`Work`]); it is linear in a target's
//! difficulty. Ehash is work divided by [`UnitWork`]; an [`Accrual`] keeps the remainder, so
//! rounding never loses work. Distinct types keep work, amounts and targets from being mixed up.

use bitcoin::Target;

/// Expected number of hashes a share proves: 2^256 / (target + 1), exact in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Work(u128);

/// Work of one difficulty-1 share (target 0x00000000ffff0000...0000): 2^48 / 0xffff, rounded up.
pub const DIFFICULTY_1_WORK: Work = Work(0x1_0001_0001);

impl Work {
    pub const ZERO: Work = Work(0);

    pub const fn from_hashes(hashes: u128) -> Self {
        Work(hashes)
    }

    pub const fn hashes(self) -> u128 {
        self.0
    }

    /// The work a share meeting `target` proves. Saturates at `u128::MAX` for targets below
    /// 2^128 (work no real share reaches).
    pub fn from_target(target: &Target) -> Self {
        let bytes = target.to_work().to_le_bytes();
        if bytes[16..].iter().any(|b| *b != 0) {
            return Work(u128::MAX);
        }
        let mut low = [0u8; 16];
        low.copy_from_slice(&bytes[..16]);
        Work(u128::from_le_bytes(low))
    }

    /// In difficulty-1 shares (for display and stats; accounting stays in [`Work`]).
    pub fn as_difficulty(self) -> f64 {
        self.0 as f64 / DIFFICULTY_1_WORK.0 as f64
    }

    pub fn checked_add(self, other: Work) -> Option<Work> {
        self.0.checked_add(other.0).map(Work)
    }
}

/// Amount of ehash (units of the `hash` currency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EhashAmount(pub u64);

/// Work that earns one unit of ehash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitWork(Work);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EhashError {
    #[error("unit work must be a positive, finite number of difficulty-1 shares, got {0}")]
    BadUnitWork(f64),
    #[error("accrued work overflows")]
    Overflow,
}

impl UnitWork {
    /// From the configured number of difficulty-1 shares per unit of ehash.
    pub fn from_difficulty(shares: f64) -> Result<Self, EhashError> {
        let hashes = shares * DIFFICULTY_1_WORK.0 as f64;
        if !shares.is_finite() || shares <= 0.0 || hashes < 1.0 || hashes >= u128::MAX as f64 {
            return Err(EhashError::BadUnitWork(shares));
        }
        Ok(UnitWork(Work(hashes.round() as u128)))
    }

    pub fn from_work(work: Work) -> Result<Self, EhashError> {
        if work.0 == 0 {
            return Err(EhashError::BadUnitWork(0.0));
        }
        Ok(UnitWork(work))
    }

    pub fn work(self) -> Work {
        self.0
    }
}

/// Work accrued for one locking key: whole units leave as ehash, the remainder stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accrual {
    pending: Work,
}

impl Accrual {
    pub fn with_pending(pending: Work) -> Self {
        Self { pending }
    }

    pub fn pending(&self) -> Work {
        self.pending
    }

    pub fn add(&mut self, work: Work) -> Result<(), EhashError> {
        self.pending = self.pending.checked_add(work).ok_or(EhashError::Overflow)?;
        Ok(())
    }

    /// Ehash the pending work is worth now, without taking it.
    pub fn issuable(&self, unit: UnitWork) -> EhashAmount {
        EhashAmount(u64::try_from(self.pending.0 / unit.0 .0).unwrap_or(u64::MAX))
    }

    /// Takes the whole units out as ehash; what is left stays pending.
    pub fn take(&mut self, unit: UnitWork) -> EhashAmount {
        let amount = self.issuable(unit);
        self.pending = Work(self.pending.0 - amount.0 as u128 * unit.0 .0);
        amount
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_1_work_matches_the_max_target() {
        assert_eq!(Work::from_target(&Target::MAX), DIFFICULTY_1_WORK);
        assert!((DIFFICULTY_1_WORK.as_difficulty() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn work_is_linear_in_difficulty() {
        // Halving a target (roughly) doubles the work; for power-of-two targets exactly.
        let t = |shift: u32| {
            let mut bytes = [0u8; 32];
            let bit = 255 - shift as usize; // target = 2^bit - 1
            for (i, b) in bytes.iter_mut().enumerate() {
                let lo = i * 8;
                *b = if lo + 8 <= bit {
                    0xff
                } else if lo < bit {
                    (1u16 << (bit - lo)) as u8 - 1
                } else {
                    0
                };
            }
            Target::from_le_bytes(bytes)
        };
        let w1 = Work::from_target(&t(40));
        let w2 = Work::from_target(&t(41));
        assert_eq!(w1.hashes(), 1u128 << 41);
        assert_eq!(w2.hashes(), 2 * w1.hashes());
    }

    #[test]
    fn tiny_targets_saturate_instead_of_wrapping() {
        assert_eq!(
            Work::from_target(&Target::from_le_bytes([0; 32])).hashes(),
            u128::MAX
        );
    }

    #[test]
    fn remainder_is_carried_so_no_work_is_lost() {
        let unit = UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        let mut accrual = Accrual::default();
        let mut issued = 0u128;
        let mut total = 0u128;
        for i in 1..=500u128 {
            let w = (i * 7919) % 1_733;
            total += w;
            accrual.add(Work::from_hashes(w)).unwrap();
            if i % 13 == 0 {
                issued += accrual.take(unit).0 as u128 * 1_000;
            }
        }
        issued += accrual.take(unit).0 as u128 * 1_000;
        assert!(accrual.pending().hashes() < 1_000);
        assert_eq!(issued + accrual.pending().hashes(), total);
    }

    #[test]
    fn unit_work_is_validated() {
        assert!(UnitWork::from_difficulty(1.0).is_ok());
        assert_eq!(
            UnitWork::from_difficulty(1.0).unwrap().work(),
            DIFFICULTY_1_WORK
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-12] {
            assert!(UnitWork::from_difficulty(bad).is_err(), "{bad}");
        }
        assert!(UnitWork::from_work(Work::ZERO).is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let mut a = Accrual::with_pending(Work::from_hashes(u128::MAX));
        assert_eq!(a.add(Work::from_hashes(1)), Err(EhashError::Overflow));
        assert_eq!(a.pending().hashes(), u128::MAX);
    }
}
