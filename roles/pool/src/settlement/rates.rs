//! What each epoch has earned so far and what it is worth (docs/settlement.md, "Rates, in
//! integers"): the pool's found blocks, in the order they were found, split over the epochs
//! with `hashpool-settlement`, the carry passed from block to block. Orphaned blocks pay
//! nothing; pending ones are counted apart (`pending_sats`) until they mature. An epoch is
//! final when the pool's work is out of every later block's reach of it
//! (`Epochs::out_of_reach_from`: later blocks do not pay it) and every block that paid it has
//! matured; its rate is then `reward_sats / ehash_quoted`.

use hashpool_settlement::{
    self as scheme,
    settle::{settle, FoundBlock, Paid, Standing},
    Epochs, Params, SettlementError,
};
use serde::Serialize;

use crate::ledger::{BlockStatus, LedgerEpoch, TrackedBlock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochState {
    /// Shares still go to it.
    Open,
    /// Closed, but a later block may still pay it, or a block that paid it is not mature.
    Closed,
    /// Its reward will not change: its rate is published.
    Final,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochReport {
    pub index: u32,
    /// Work range, hashes (as decimal strings: they pass 2^53).
    pub start_work: String,
    pub end_work: Option<String>,
    pub planned_length: String,
    /// The network's work per block it was sized with.
    pub network_work: String,
    pub state: EpochState,
    /// Ehash the mint quoted for it.
    pub ehash_quoted: u64,
    /// Sats from matured blocks.
    pub reward_sats: u64,
    /// Sats from blocks not yet matured (withdrawn if they leave the chain).
    pub pending_sats: u64,
    /// Blocks that paid it, matured or not.
    pub blocks: u32,
    /// `[reward_sats, ehash_quoted]` once final: a unit redeems for the floor of their ratio.
    pub rate: Option<[u64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockReport {
    pub hash: String,
    pub height: Option<u32>,
    pub status: BlockStatus,
    pub value_sats: Option<u64>,
    /// The pool's work when it was found and the network's work per block (what its window
    /// is made from).
    pub pool_work: Option<String>,
    pub network_work: Option<String>,
    pub fee_sats: u64,
    /// `[start, end)` of the pool's work it pays, and its whole length `N`.
    pub window: Option<[String; 3]>,
    /// `(epoch, sats)` it pays.
    pub paid: Vec<(u32, u64)>,
    pub carry_in: u64,
    pub carry_out: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettlementReport {
    pub fee_ppm: u32,
    pub window_multiplier: u32,
    pub pool_work: String,
    pub epochs: Vec<EpochReport>,
    /// In the order found.
    pub blocks: Vec<BlockReport>,
    /// Fees of matured blocks.
    pub fees_sats: u64,
    /// Carried past the last block (to the next one).
    pub carry_sats: u64,
}

/// The settlement as the ledger's records stand.
pub fn report(
    params: (u32, u32),
    ledger_epochs: &[LedgerEpoch],
    found: &[TrackedBlock],
    quoted: &[(u32, u64)],
    pool_work: u128,
) -> Result<SettlementReport, SettlementError> {
    let (fee_ppm, window_multiplier) = params;
    let scheme_params = Params::new(fee_ppm, window_multiplier)?;
    let mut epochs = Epochs::new();
    for e in ledger_epochs {
        epochs.open(e.start.hashes(), e.length.hashes(), e.network_work.hashes())?;
        if let Some(end) = e.end {
            epochs.close(end.hashes())?;
        }
    }
    let quoted: std::collections::HashMap<u32, u64> = quoted.iter().copied().collect();
    let mut reports: Vec<EpochReport> = ledger_epochs
        .iter()
        .map(|e| EpochReport {
            index: e.index,
            start_work: e.start.hashes().to_string(),
            end_work: e.end.map(|w| w.hashes().to_string()),
            planned_length: e.length.hashes().to_string(),
            network_work: e.network_work.hashes().to_string(),
            state: if e.end.is_some() {
                EpochState::Closed
            } else {
                EpochState::Open
            },
            ehash_quoted: quoted.get(&e.index).copied().unwrap_or(0),
            reward_sats: 0,
            pending_sats: 0,
            blocks: 0,
            rate: None,
        })
        .collect();
    let mut ordered: Vec<&TrackedBlock> = found.iter().collect();
    ordered.sort_by_key(|b| (b.pool_work, b.found_at));
    let inputs: Vec<FoundBlock> = ordered
        .iter()
        .map(|b| {
            let facts = (b.pool_work, b.network_work, b.value_sats);
            match facts {
                (Some(pool_work), Some(network_work), Some(value_sats)) => FoundBlock {
                    block: scheme::Block {
                        pool_work: pool_work.hashes(),
                        network_work: network_work.hashes(),
                        value_sats,
                    },
                    standing: match b.status {
                        BlockStatus::Pending => Standing::Pending,
                        BlockStatus::Matured => Standing::Matured,
                        BlockStatus::Orphaned => Standing::Orphaned,
                    },
                },
                // Found before blocks were recorded with their reward: it pays nothing here.
                _ => FoundBlock {
                    block: scheme::Block {
                        pool_work: 0,
                        network_work: 0,
                        value_sats: 0,
                    },
                    standing: Standing::Unknown,
                },
            }
        })
        .collect();
    let settled = settle(&scheme_params, &epochs, &inputs)?;
    let blocks = ordered
        .iter()
        .zip(&settled.blocks)
        .map(|(b, s)| {
            let (fee_sats, window, paid) = match &s.paid {
                Paid::Nothing => (0, None, Vec::new()),
                Paid::Carried { fee } => (*fee, None, Vec::new()),
                Paid::Split(split) => (
                    split.fee,
                    Some([
                        split.window.start.to_string(),
                        split.window.end.to_string(),
                        split.window.length.to_string(),
                    ]),
                    split.epochs.clone(),
                ),
            };
            BlockReport {
                hash: b.hash.to_string(),
                height: b.height,
                status: b.status,
                value_sats: b.value_sats,
                pool_work: b.pool_work.map(|w| w.hashes().to_string()),
                network_work: b.network_work.map(|w| w.hashes().to_string()),
                fee_sats,
                window,
                paid,
                carry_in: s.carry_in,
                carry_out: s.carry_out,
            }
        })
        .collect();
    for (i, r) in reports.iter_mut().enumerate() {
        r.reward_sats = settled.reward.get(i).copied().unwrap_or(0);
        r.pending_sats = settled.pending.get(i).copied().unwrap_or(0);
        r.blocks = settled.payers.get(i).copied().unwrap_or(0);
        if r.state == EpochState::Closed
            && settled.is_final(&scheme_params, &epochs, r.index, pool_work)?
        {
            r.state = EpochState::Final;
            if r.ehash_quoted > 0 {
                r.rate = Some([r.reward_sats, r.ehash_quoted]);
            }
        }
    }
    let (fees, carry) = (settled.fees, settled.carry);
    Ok(SettlementReport {
        fee_ppm,
        window_multiplier,
        pool_work: pool_work.to_string(),
        epochs: reports,
        blocks,
        fees_sats: fees,
        carry_sats: carry,
    })
}

#[cfg(test)]
mod tests {
    use bitcoin::hashes::Hash as _;
    use hashpool_ehash::Work;

    use super::*;

    fn epoch(index: u32, start: u128, length: u128, end: Option<u128>) -> LedgerEpoch {
        LedgerEpoch {
            index,
            start: Work::from_hashes(start),
            length: Work::from_hashes(length),
            network_work: Work::from_hashes(100),
            end: end.map(Work::from_hashes),
            opened_at: 0,
            closed_at: None,
        }
    }

    fn found(n: u8, pool_work: u128, value: u64, status: BlockStatus) -> TrackedBlock {
        TrackedBlock {
            hash: bitcoin::BlockHash::from_byte_array([n; 32]),
            height: Some(u32::from(n)),
            value_sats: Some(value),
            network_work: Some(Work::from_hashes(100)),
            pool_work: Some(Work::from_hashes(pool_work)),
            status,
            confirmations: 0,
            found_at: i64::from(n),
        }
    }

    /// Five epochs of 100 hashes (the last open), a window of 2 x 100.
    fn epochs() -> Vec<LedgerEpoch> {
        (0..5u32)
            .map(|i| {
                let start = u128::from(i) * 100;
                epoch(i, start, 100, (i < 4).then_some(start + 100))
            })
            .collect()
    }

    #[test]
    fn matured_blocks_pay_epochs_pending_ones_are_apart_and_orphans_pay_nothing() {
        let blocks = [
            found(1, 450, 1_000_003, BlockStatus::Matured),
            found(2, 460, 5_000, BlockStatus::Orphaned),
            found(3, 480, 2_000_000, BlockStatus::Pending),
        ];
        let r = report((20_000, 2), &epochs(), &blocks, &[(1, 10), (2, 20)], 499).unwrap();
        // Block 1: fee 20,000; 980,003 over [150, 350): 245,000 / 490,001 / 245,000, carry 2.
        assert_eq!(
            r.blocks[0].paid,
            vec![(1, 245_000), (2, 490_001), (3, 245_000)]
        );
        assert_eq!(r.blocks[0].carry_out, 2);
        // The orphan pays nothing and passes the carry on untouched.
        assert!(r.blocks[1].paid.is_empty());
        assert_eq!((r.blocks[1].carry_in, r.blocks[1].carry_out), (2, 2));
        // Block 3 (pending): 1,960,000 + 2 over [180, 380).
        assert_eq!(r.blocks[2].carry_in, 2);
        let e = &r.epochs;
        assert_eq!((e[1].reward_sats, e[1].pending_sats), (245_000, 196_000));
        assert_eq!((e[2].reward_sats, e[2].pending_sats), (490_001, 980_001));
        assert_eq!(e[2].ehash_quoted, 20);
        assert_eq!(r.fees_sats, 20_000);
        // Epochs the blocks paid are not final; epoch 0 (never paid, out of reach: it ends at
        // 100, the reach is 300) is, with no ehash and so no rate.
        assert!(e[1..4]
            .iter()
            .all(|e| e.state == EpochState::Closed && e.rate.is_none()));
        assert_eq!((e[0].state, e[0].rate), (EpochState::Final, None));
        assert_eq!(e[4].state, EpochState::Open);
        // Every block: fee + paid + carry out = value + carry in.
        for (b, value) in r.blocks.iter().zip([1_000_003u64, 0, 2_000_000]) {
            let paid: u64 = b.paid.iter().map(|(_, s)| s).sum();
            if b.status != BlockStatus::Orphaned {
                assert_eq!(b.fee_sats + paid + b.carry_out, value + b.carry_in);
            }
        }
    }

    #[test]
    fn an_epoch_is_final_once_out_of_reach_with_every_paying_block_matured() {
        let blocks = [
            found(1, 450, 1_000_003, BlockStatus::Matured),
            found(3, 480, 2_000_000, BlockStatus::Pending),
        ];
        // Out of reach: epoch 0 from 400, epoch 1 from 500 (both in the open epoch 4); epoch 1
        // was paid by the pending block.
        let r = report((20_000, 2), &epochs(), &blocks, &[(0, 5), (1, 10)], 600).unwrap();
        assert_eq!(r.epochs[0].state, EpochState::Final);
        assert_eq!(r.epochs[1].state, EpochState::Closed);
        // Epoch 0 earned nothing (both windows start at 150 or later): final at a zero rate.
        assert_eq!(r.epochs[0].rate, Some([0, 5]));
        let matured = [
            found(1, 450, 1_000_003, BlockStatus::Matured),
            found(3, 480, 2_000_000, BlockStatus::Matured),
        ];
        let r = report((20_000, 2), &epochs(), &matured, &[(0, 5), (1, 10)], 600).unwrap();
        assert_eq!(r.epochs[1].state, EpochState::Final);
        assert_eq!(r.epochs[1].rate, Some([245_000 + 196_000, 10]));
        // Epoch 2 ends at 300: blocks of the open epoch 4 (from 400, windows of 200 ending
        // 100 back) can still pay it, however far the pool's work goes, until epoch 5 opens.
        assert_eq!(r.epochs[2].state, EpochState::Closed);
        assert_eq!(r.epochs[2].rate, None);
    }

    #[test]
    fn a_block_found_before_the_first_epoch_is_carried_whole() {
        let epochs = vec![
            epoch(0, 1_000, 100, Some(1_100)),
            epoch(1, 1_100, 100, None),
        ];
        let blocks = [
            found(1, 500, 10_000, BlockStatus::Matured),
            found(2, 1_150, 0, BlockStatus::Matured),
        ];
        let r = report((0, 1), &epochs, &blocks, &[], 1_150).unwrap();
        assert!(r.blocks[0].paid.is_empty());
        assert_eq!(r.blocks[0].carry_out, 10_000);
        // The next block's window [950, 1,050) is half epoch 0's: half the carry.
        assert_eq!(r.blocks[1].paid, vec![(0, 5_000)]);
        assert_eq!(r.blocks[1].carry_out, 5_000);
    }
}
