//! Settlement's arithmetic (docs/settlement.md, "Epochs" and "Rates, in integers"): what each
//! found block pays each epoch of ehash, and what a unit of a final epoch's ehash is worth.
//! Everything is an exact integer: work in hashes (`u128`), value in satoshis (`u64`), the
//! products in 256 bits, every floor's remainder carried to the next block.
//!
//! - An **epoch** is a range of the pool's cumulative accepted work; epochs follow each other
//!   from zero without gaps ([`Epochs`]).
//! - A block found at cumulative work `t` with the network's work per block `D` pays the
//!   **window** of `N = k x D` work that ends `L` before `t`, `L` the length of the epoch
//!   holding `t`: every epoch it pays had closed before the block was found, so no one can
//!   join an epoch once its luck is known.
//! - The block's value less the fee, plus the carry from the block before, is split over the
//!   epochs the window overlaps in proportion to the overlap; the floors' remainder, and the
//!   part of the window before the pool's first share, are carried to the next block.

pub mod audit;
pub mod liabilities;
pub mod merkle_sum;
pub mod rates;
pub mod settle;
pub mod withdrawals;

// The lint fires inside uint's macro expansion, not in code of ours.
#[allow(clippy::manual_div_ceil)]
mod wide {
    uint::construct_uint! {
        /// Products of a satoshi amount and a work amount (under 2^192).
        pub struct U256(4);
    }
}
use wide::U256;

/// Parts per million: the fee's denominator.
pub const PPM: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("fee of {0} ppm is over 1,000,000 (the whole reward)")]
    FeeTooHigh(u32),
    #[error("the window multiplier must be at least 1")]
    NoWindow,
    #[error("an epoch of no work")]
    EmptyEpoch,
    #[error("epochs run out of work beyond 2^128 hashes")]
    WorkOverflow,
    #[error("the block's network work is zero")]
    NoNetworkWork,
    #[error("cumulative work {0} is in no epoch")]
    BeyondEpochs(u128),
    #[error("no open epoch")]
    NoEpoch,
    #[error("epoch {0} is still open")]
    StillOpen(u32),
    #[error("an epoch must start where the last one ended ({end}), not at {start}")]
    NotContiguous { end: u128, start: u128 },
    #[error("{asked} ehash asked of an epoch that issued {issued}")]
    MoreThanIssued { asked: u64, issued: u64 },
    #[error("the carried value overflows")]
    ValueOverflow,
    #[error("signed publication: {0}")]
    BadSheet(String),
}

/// The pool's fee and window (config `settlement.fee_ppm`, `settlement.window_multiplier`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    fee_ppm: u32,
    window_multiplier: u32,
}

impl Params {
    pub fn new(fee_ppm: u32, window_multiplier: u32) -> Result<Self, SettlementError> {
        if fee_ppm > PPM {
            return Err(SettlementError::FeeTooHigh(fee_ppm));
        }
        if window_multiplier == 0 {
            return Err(SettlementError::NoWindow);
        }
        Ok(Self {
            fee_ppm,
            window_multiplier,
        })
    }

    /// The fee on a block worth `value` sats (rounded down: the rounding goes to the miners).
    pub fn fee(&self, value: u64) -> u64 {
        // value < 2^64 and fee_ppm <= 10^6: the product fits in u128.
        (u128::from(value) * u128::from(self.fee_ppm) / u128::from(PPM)) as u64
    }

    /// The window's length for a network work per block of `network_work`.
    pub fn window_work(&self, network_work: u128) -> Result<u128, SettlementError> {
        network_work
            .checked_mul(u128::from(self.window_multiplier))
            .ok_or(SettlementError::WorkOverflow)
    }
}

/// One epoch: from `start` of the pool's cumulative work, planned `length` long; it closes at
/// the first share that starts at or past `start + length` (so `end`, once closed, is where
/// its last share ended: at or a share past the planned end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    pub index: u32,
    pub start: u128,
    pub length: u128,
    /// The network's work per block it was sized with: with `length`, how far back the
    /// windows of blocks found in it reach.
    pub network_work: u128,
    /// `None` while open.
    pub end: Option<u128>,
}

/// The epochs so far, contiguous from the first one's start; all closed but the last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epochs {
    list: Vec<Epoch>,
}

impl Epochs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the first epoch at `start` (work done before epochs began is no epoch's), or the
    /// next one where the last closed, `length` hashes of work planned.
    pub fn open(
        &mut self,
        start: u128,
        length: u128,
        network_work: u128,
    ) -> Result<Epoch, SettlementError> {
        if length == 0 {
            return Err(SettlementError::EmptyEpoch);
        }
        if network_work == 0 {
            return Err(SettlementError::NoNetworkWork);
        }
        if let Some(last) = self.list.last() {
            match last.end {
                Some(end) if end == start => {}
                Some(end) => return Err(SettlementError::NotContiguous { end, start }),
                None => return Err(SettlementError::StillOpen(last.index)),
            }
        }
        start
            .checked_add(length)
            .ok_or(SettlementError::WorkOverflow)?;
        let epoch = Epoch {
            index: self.list.len() as u32,
            start,
            length,
            network_work,
            end: None,
        };
        self.list.push(epoch);
        Ok(epoch)
    }

    /// Closes the open epoch at `end` (where its last share ended).
    pub fn close(&mut self, end: u128) -> Result<Epoch, SettlementError> {
        let last = self.list.last_mut().ok_or(SettlementError::NoEpoch)?;
        if last.end.is_some() {
            return Err(SettlementError::NoEpoch);
        }
        if end <= last.start {
            return Err(SettlementError::EmptyEpoch);
        }
        last.end = Some(end);
        Ok(*last)
    }

    pub fn get(&self, index: u32) -> Option<Epoch> {
        self.list.get(index as usize).copied()
    }

    /// The epoch holding cumulative work `t` (the open one holds everything from its start).
    pub fn at(&self, t: u128) -> Option<Epoch> {
        let i = self.list.partition_point(|e| e.start <= t).checked_sub(1)?;
        let epoch = self.list[i];
        match epoch.end {
            Some(end) if t >= end => None,
            _ => Some(epoch),
        }
    }

    /// The pool's work from which no later block pays epoch `index`: the first point of a later
    /// epoch that starts at least a window (`N` at that epoch's network work) after its end,
    /// past its end by that window and the later epoch's planned length.
    /// `None` while it, or the epoch after it, is open with no such point known. A block found
    /// past this point does not pay the epoch even if its own window (at a higher network work)
    /// would reach it: the part is carried, so a final rate never changes.
    pub fn out_of_reach_from(
        &self,
        index: u32,
        params: &Params,
    ) -> Result<Option<u128>, SettlementError> {
        let Some(end) = self.get(index).and_then(|e| e.end) else {
            return Ok(None);
        };
        for later in &self.list[index as usize + 1..] {
            // A block found in `later` at `t` pays from `min(t - length, start) - window`: while
            // `start - window` is before `end`, every block of `later` can reach back into
            // the epoch.
            let window = params.window_work(later.network_work)?;
            if later.start < end.saturating_add(window) {
                continue;
            }
            let at = end
                .saturating_add(window)
                .saturating_add(later.length)
                .max(later.start);
            match later.end {
                Some(later_end) if at >= later_end => continue,
                _ => return Ok(Some(at)),
            }
        }
        Ok(None)
    }

    /// The epochs that can hold work in `[start, end)`, in order (binary search: a block's
    /// window is a few epochs of however many there are).
    pub fn overlapping(&self, start: u128, end: u128) -> impl Iterator<Item = &Epoch> {
        let first = self
            .list
            .partition_point(|e| e.end.is_some_and(|e_end| e_end <= start));
        self.list[first..].iter().take_while(move |e| e.start < end)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Epoch> {
        self.list.iter()
    }
}

/// What settlement knows of a found block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The pool's cumulative accepted work when it was found, its share included.
    pub pool_work: u128,
    /// The network's expected work per block at its nBits.
    pub network_work: u128,
    /// What its coinbase pays in all (subsidy and fees), sats.
    pub value_sats: u64,
}

/// The work a block's reward pays: `[start, end)`, and how much of the window reached before
/// the pool's first share (`unfilled`, whose part of the reward is carried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u128,
    pub end: u128,
    /// `N`: the whole window's length, `end - start + unfilled`.
    pub length: u128,
    pub unfilled: u128,
}

/// The window of `block`: `N = k x D` of work ending one epoch (the planned length of the
/// epoch holding the block) before the block, and never inside that epoch (the epoch's last
/// share can end past its planned end).
pub fn window(params: &Params, epochs: &Epochs, block: &Block) -> Result<Window, SettlementError> {
    if block.network_work == 0 {
        return Err(SettlementError::NoNetworkWork);
    }
    // The block's share ends at `pool_work`: it was mined in the epoch holding its start.
    let current = epochs
        .at(block.pool_work.saturating_sub(1))
        .ok_or(SettlementError::BeyondEpochs(block.pool_work))?;
    let length = params.window_work(block.network_work)?;
    let end = block
        .pool_work
        .saturating_sub(current.length)
        .min(current.start);
    let start = end.saturating_sub(length);
    Ok(Window {
        start,
        end,
        length,
        unfilled: length - (end - start),
    })
}

/// One block's reward as it is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub window: Window,
    pub fee: u64,
    pub carry_in: u64,
    /// Sats per epoch index, in epoch order, each `floor(R x overlap / N)`.
    pub epochs: Vec<(u32, u64)>,
    /// What the floors and the unfilled part of the window leave, for the next block.
    pub carry_out: u64,
}

impl Split {
    /// `fee + paid + carry_out == value + carry_in`: nothing made or lost.
    pub fn paid(&self) -> u64 {
        self.epochs.iter().map(|(_, sats)| sats).sum()
    }
}

/// `floor(a x b / c)`, exactly (`b <= c`, so the result is at most `a`).
fn share_of(a: u64, b: u128, c: u128) -> u64 {
    let q = U256::from(a) * U256::from(b) / U256::from(c);
    q.low_u64()
}

/// Splits `block`'s value: the fee, then the rest with `carry_in` over the epochs its window
/// overlaps.
pub fn split(
    params: &Params,
    epochs: &Epochs,
    block: &Block,
    carry_in: u64,
) -> Result<Split, SettlementError> {
    let window = window(params, epochs, block)?;
    let fee = params.fee(block.value_sats);
    let reward = (block.value_sats - fee)
        .checked_add(carry_in)
        .ok_or(SettlementError::ValueOverflow)?;
    let mut paid = Vec::new();
    let mut total = 0u64;
    // Work before the first epoch is no epoch's: its part is carried with the floors.
    for epoch in epochs.overlapping(window.start, window.end) {
        let Some(end) = epoch.end else { break };
        if epoch.start >= window.end {
            break;
        }
        let from = epoch.start.max(window.start);
        let to = end.min(window.end);
        let final_before = epochs
            .out_of_reach_from(epoch.index, params)?
            .is_some_and(|at| at < block.pool_work);
        if to > from && !final_before {
            let sats = share_of(reward, to - from, window.length);
            total += sats;
            paid.push((epoch.index, sats));
        }
    }
    Ok(Split {
        window,
        fee,
        carry_in,
        epochs: paid,
        carry_out: reward - total,
    })
}

/// Sats for `amount` ehash of an epoch that earned `reward` sats over `issued` ehash:
/// `floor(amount x reward / issued)`.
pub fn redemption_sats(amount: u64, reward: u64, issued: u64) -> Result<u64, SettlementError> {
    if amount > issued {
        return Err(SettlementError::MoreThanIssued {
            asked: amount,
            issued,
        });
    }
    if amount == 0 {
        return Ok(0);
    }
    Ok(share_of(reward, u128::from(amount), u128::from(issued)))
}

#[cfg(test)]
mod tests;
