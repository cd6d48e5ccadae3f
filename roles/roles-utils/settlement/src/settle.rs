//! The whole settlement of a run of found blocks (docs/settlement.md, "Rates, in integers"):
//! each block in the order found split over the epochs with the carry passed on, orphans paying
//! nothing, blocks found before the first epoch carried whole; what each epoch earned from
//! matured blocks and from blocks not matured yet; which epochs are final. The pool reports
//! with it and a wallet's audit recomputes the pool's published rates with it.

use crate::{split, Block, Epochs, Params, SettlementError, Split};

/// Where a found block stands in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Pending,
    Matured,
    Orphaned,
    /// Recorded without its reward (before blocks were recorded with it): pays nothing.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundBlock {
    pub block: Block,
    pub standing: Standing,
}

/// What one block paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    /// Orphaned or unknown: nothing, the carry passes by.
    Nothing,
    /// Found before the first epoch: its value less the fee is carried.
    Carried {
        fee: u64,
    },
    Split(Split),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSettlement {
    pub paid: Paid,
    pub carry_in: u64,
    pub carry_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// In the order given.
    pub blocks: Vec<BlockSettlement>,
    /// Per epoch index: sats from matured blocks.
    pub reward: Vec<u64>,
    /// Per epoch index: sats from blocks not matured yet.
    pub pending: Vec<u64>,
    /// Per epoch index: the blocks that paid it.
    pub payers: Vec<u32>,
    /// Per epoch index: the position of the last block that paid it.
    pub last_payer: Vec<Option<usize>>,
    /// The position of the first block not matured yet (its maturing or leaving the chain
    /// changes the carry of every block after it).
    pub first_pending: Option<usize>,
    /// Fees of matured blocks.
    pub fees: u64,
    /// Carried past the last block.
    pub carry: u64,
}

/// Sums of sats: real ones stay far below 2^64, but a report read from elsewhere (an audit)
/// may not.
fn add(a: u64, b: u64) -> Result<u64, SettlementError> {
    a.checked_add(b).ok_or(SettlementError::ValueOverflow)
}

/// Settles `blocks` (in the order found) over `epochs`.
pub fn settle(
    params: &Params,
    epochs: &Epochs,
    blocks: &[FoundBlock],
) -> Result<Settlement, SettlementError> {
    let n = epochs.len();
    let mut out = Settlement {
        blocks: Vec::with_capacity(blocks.len()),
        reward: vec![0; n],
        pending: vec![0; n],
        payers: vec![0; n],
        last_payer: vec![None; n],
        first_pending: None,
        fees: 0,
        carry: 0,
    };
    for (position, found) in blocks.iter().enumerate() {
        let carry_in = out.carry;
        if found.standing == Standing::Pending && out.first_pending.is_none() {
            out.first_pending = Some(position);
        }
        let b = &found.block;
        let matured = found.standing == Standing::Matured;
        let paid = match found.standing {
            Standing::Orphaned | Standing::Unknown => Paid::Nothing,
            _ if epochs.at(b.pool_work.saturating_sub(1)).is_none() => {
                let fee = params.fee(b.value_sats);
                out.carry = out
                    .carry
                    .checked_add(b.value_sats - fee)
                    .ok_or(SettlementError::ValueOverflow)?;
                if matured {
                    out.fees = add(out.fees, fee)?;
                }
                Paid::Carried { fee }
            }
            _ => {
                let s = split(params, epochs, b, out.carry)?;
                for &(index, sats) in &s.epochs {
                    let i = index as usize;
                    if i >= n {
                        continue;
                    }
                    out.payers[i] = out.payers[i].saturating_add(1);
                    out.last_payer[i] = Some(position);
                    if matured {
                        out.reward[i] = add(out.reward[i], sats)?;
                    } else {
                        out.pending[i] = add(out.pending[i], sats)?;
                    }
                }
                if matured {
                    out.fees = add(out.fees, s.fee)?;
                }
                out.carry = s.carry_out;
                Paid::Split(s)
            }
        };
        out.blocks.push(BlockSettlement {
            paid,
            carry_in,
            carry_out: out.carry,
        });
    }
    Ok(out)
}

impl Settlement {
    /// Whether epoch `index` is final with the pool's work at `pool_work`: out of every later
    /// block's reach, and every block up to the last that paid it settled (a pending one
    /// changes, as it matures or leaves the chain, the carry into every block after it).
    /// An orphan counts as settled: a reorg bringing it back past an epoch's last payer would
    /// have to undo that payer's confirmations too.
    pub fn is_final(
        &self,
        params: &Params,
        epochs: &Epochs,
        index: u32,
        pool_work: u128,
    ) -> Result<bool, SettlementError> {
        let out_of_reach = epochs
            .out_of_reach_from(index, params)?
            .is_some_and(|at| at <= pool_work);
        let unsettled = match (self.first_pending, self.last_payer.get(index as usize)) {
            (Some(pending), Some(Some(last))) => pending <= *last,
            _ => false,
        };
        Ok(out_of_reach && !unsettled)
    }
}
