use super::*;

/// Epochs of `lengths` from zero, each closed at its planned end but the last.
fn epochs(lengths: &[u128]) -> Epochs {
    epochs_at(lengths, 100)
}

/// [`epochs`] sized at a network work per block of `network_work`.
fn epochs_at(lengths: &[u128], network_work: u128) -> Epochs {
    let mut e = Epochs::new();
    let mut start = 0;
    for (i, &l) in lengths.iter().enumerate() {
        e.open(start, l, network_work).unwrap();
        if i + 1 < lengths.len() {
            e.close(start + l).unwrap();
            start += l;
        }
    }
    e
}

/// Where an epoch ends: its close, or while open its planned end.
fn end_or_planned(e: &Epoch) -> u128 {
    e.end.unwrap_or(e.start + e.length)
}

fn block(pool_work: u128, network_work: u128, value_sats: u64) -> Block {
    Block {
        pool_work,
        network_work,
        value_sats,
    }
}

/// A small deterministic generator (xorshift64*), so the randomized checks repeat exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn a_block_pays_the_window_one_epoch_back_in_proportion_and_carries_the_floors() {
    // Epochs of 100 hashes; the window is 2 x D = 200 hashes.
    let e = epochs(&[100; 5]);
    let p = Params::new(20_000, 2).unwrap();
    let s = split(&p, &e, &block(450, 100, 1_000_003), 0).unwrap();
    // Found in epoch 4 ([400, 500)): the window ends 100 before it, at 350.
    assert_eq!(
        s.window,
        Window {
            start: 150,
            end: 350,
            length: 200,
            unfilled: 0
        }
    );
    assert_eq!(s.fee, 20_000); // 2 % of 1,000,003, rounded down
                               // 980,003 over [150, 350): 50 in epoch 1, 100 in epoch 2, 50 in epoch 3.
    assert_eq!(s.epochs, vec![(1, 245_000), (2, 490_001), (3, 245_000)]);
    assert_eq!(s.carry_out, 2);
    assert_eq!(s.fee + s.paid() + s.carry_out, 1_000_003);

    // The next block takes the carry in.
    let next = split(&p, &e, &block(480, 100, 1_000_003), s.carry_out).unwrap();
    assert_eq!(next.carry_in, 2);
    assert_eq!(
        next.fee + next.paid() + next.carry_out,
        1_000_003 + next.carry_in
    );
}

#[test]
fn work_before_the_first_share_is_carried_and_the_first_epoch_pays_nothing_yet() {
    let e = epochs(&[100; 3]);
    let p = Params::new(0, 2).unwrap();
    // In epoch 0 the window ends before any work: everything is carried.
    let s = split(&p, &e, &block(60, 100, 1_000), 0).unwrap();
    assert!(s.epochs.is_empty());
    assert_eq!((s.window.unfilled, s.carry_out), (200, 1_000));
    // In epoch 1 the window [0, 50) holds a quarter of N.
    let s = split(&p, &e, &block(150, 100, 1_000), 0).unwrap();
    assert_eq!(s.window.unfilled, 150);
    assert_eq!(s.epochs, vec![(0, 250)]);
    assert_eq!(s.carry_out, 750);
}

#[test]
fn a_block_pays_only_epochs_closed_before_it_was_found() {
    let mut rng = Rng(7);
    let lengths: Vec<u128> = (0..40).map(|_| 1 + u128::from(rng.below(500))).collect();
    let e = epochs(&lengths);
    let p = Params::new(10_000, 8).unwrap();
    let last = end_or_planned(&e.get(39).unwrap());
    for _ in 0..2_000 {
        let t = u128::from(rng.below(last as u64));
        let s = split(
            &p,
            &e,
            &block(t, 1 + u128::from(rng.below(300)), 5_000_000_000),
            0,
        )
        .unwrap();
        let found_in = e.at(t).unwrap();
        for (index, _) in &s.epochs {
            assert!(
                e.get(*index).unwrap().end.unwrap() <= found_in.start,
                "t {t}"
            );
        }
    }
}

#[test]
fn nothing_is_made_or_lost_over_a_run_of_blocks() {
    let mut rng = Rng(42);
    let lengths: Vec<u128> = (0..200)
        .map(|_| 1 + u128::from(rng.next()) * u128::from(rng.next() >> 20))
        .collect();
    let total = lengths.iter().sum::<u128>();
    let e = epochs_at(&lengths, (total / 100).max(1) * 4);
    let total_work = end_or_planned(&e.get(199).unwrap());
    let p = Params::new(rng.below(50_000) as u32, 1 + rng.below(16) as u32).unwrap();
    let mut t = 0u128;
    let mut carry = 0u64;
    let (mut values, mut fees, mut paid) = (0u128, 0u128, 0u128);
    let mut per_epoch = vec![0u128; 200];
    while let Some(step) = (total_work / 300).checked_mul(u128::from(1 + rng.below(3))) {
        t += step;
        if t >= total_work {
            break;
        }
        let value = 312_500_000 + rng.below(50_000_000);
        let d = (total_work / 100).max(1) * u128::from(1 + rng.below(4));
        let s = split(&p, &e, &block(t, d, value), carry).unwrap();
        // Conservation per block, and a bound on what is carried: under one sat per epoch
        // paid, plus the shares of the unfilled part and of epochs already out of reach (a
        // longer epoch later delays windows further back than the reach its predecessors
        // were judged by).
        assert_eq!(
            u128::from(s.fee) + u128::from(s.paid()) + u128::from(s.carry_out),
            u128::from(value) + u128::from(carry)
        );
        let reward = value - s.fee + carry;
        let unfilled_share = share_of(reward, s.window.unfilled, s.window.length);
        let mut clipped = 0u128;
        for epoch in e.iter() {
            let Some(end) = epoch.end else { break };
            let overlap = end
                .min(s.window.end)
                .saturating_sub(epoch.start.max(s.window.start));
            let out = e
                .out_of_reach_from(epoch.index, &p)
                .unwrap()
                .is_some_and(|at| at < t);
            if out {
                clipped += overlap;
            }
        }
        let clipped_share = share_of(reward, clipped, s.window.length);
        assert!(s.carry_out <= unfilled_share + clipped_share + s.epochs.len() as u64 + 1);
        for (i, sats) in &s.epochs {
            per_epoch[*i as usize] += u128::from(*sats);
        }
        values += u128::from(value);
        fees += u128::from(s.fee);
        paid += u128::from(s.paid());
        carry = s.carry_out;
    }
    assert!(values > 0);
    // Over the run: every sat is a fee, an epoch's, or still carried.
    assert_eq!(fees + paid + u128::from(carry), values);
    assert_eq!(per_epoch.iter().sum::<u128>(), paid);
}

/// Hop-proofness: with a block at every point of the pool's work, every unit of work (away
/// from the ends) is inside exactly `N` blocks' windows, whatever its place in its epoch. So
/// the expected payout per unit of work does not depend on when it was mined.
#[test]
fn every_unit_of_work_is_in_the_same_number_of_windows_wherever_it_falls() {
    let (l, d, k) = (4u128, 3u128, 2u32);
    let e = epochs(&[l; 40]);
    let p = Params::new(0, k).unwrap();
    let n = d * u128::from(k);
    let mut covered = vec![0u128; 160];
    for t in 0..160u128 {
        let w = window(&p, &e, &block(t, d, 1)).unwrap();
        for s in w.start..w.end {
            covered[s as usize] += 1;
        }
    }
    for (s, &count) in covered.iter().enumerate().take(160 - (l + n) as usize) {
        assert_eq!(count, n, "unit {s}");
    }
}

#[test]
fn redemption_pays_the_floor_of_the_rate_and_never_more_than_the_epoch_earned() {
    assert_eq!(redemption_sats(3, 10, 7).unwrap(), 4); // 30 / 7 = 4.28
    assert_eq!(redemption_sats(7, 10, 7).unwrap(), 10);
    assert_eq!(redemption_sats(0, 10, 7).unwrap(), 0);
    assert_eq!(
        redemption_sats(8, 10, 7),
        Err(SettlementError::MoreThanIssued {
            asked: 8,
            issued: 7
        })
    );
    // An epoch's ehash redeemed in pieces: the sum never exceeds its reward, and what rounding
    // keeps is under one sat per redemption.
    let mut rng = Rng(3);
    let (reward, issued) = (987_654_321u64, 123_457u64);
    let mut left = issued;
    let (mut sats, mut redemptions) = (0u64, 0u64);
    while left > 0 {
        let x = (1 + rng.below(5_000)).min(left);
        sats += redemption_sats(x, reward, issued).unwrap();
        left -= x;
        redemptions += 1;
    }
    assert!(sats <= reward);
    assert!(reward - sats < redemptions);
}

#[test]
fn products_beyond_128_bits_are_exact() {
    // Mainnet-sized work: D near 2^77, a window of 8 D, and a reward of 3.125 BTC.
    let d: u128 = 1 << 77;
    let e = epochs_at(&[d / 2; 40], d);
    let p = Params::new(20_000, 8).unwrap();
    let s = split(&p, &e, &block(d * 10, d, 312_500_000), 0).unwrap();
    assert_eq!(s.fee + s.paid() + s.carry_out, 312_500_000);
    // Found where epoch 20 begins: the window [1.5 D, 9.5 D) is sixteen whole epochs of D/2.
    assert_eq!(s.window.length, 8 * d);
    assert_eq!(s.epochs.len(), 16);
    let per_epoch = (312_500_000 - s.fee) / 16;
    assert!(s
        .epochs
        .iter()
        .all(|&(_, sats)| sats.abs_diff(per_epoch) <= 1));
}

#[test]
fn bad_parameters_and_blocks_are_refused() {
    assert_eq!(
        Params::new(1_000_001, 8),
        Err(SettlementError::FeeTooHigh(1_000_001))
    );
    assert_eq!(Params::new(0, 0), Err(SettlementError::NoWindow));
    assert_eq!(Params::new(PPM, 1).unwrap().fee(999), 999);
    let mut e = Epochs::new();
    assert_eq!(e.open(0, 0, 1), Err(SettlementError::EmptyEpoch));
    assert_eq!(e.open(1, u128::MAX, 1), Err(SettlementError::WorkOverflow));
    assert_eq!(e.close(5), Err(SettlementError::NoEpoch));
    let p = Params::new(0, 8).unwrap();
    assert_eq!(
        split(&p, &e, &block(100, 1, 1), 0),
        Err(SettlementError::BeyondEpochs(100))
    );
    e.open(10, 100, 1).unwrap();
    assert_eq!(e.open(110, 100, 1), Err(SettlementError::StillOpen(0)));
    assert_eq!(e.close(10), Err(SettlementError::EmptyEpoch));
    e.close(120).unwrap();
    assert_eq!(
        e.open(110, 100, 1),
        Err(SettlementError::NotContiguous {
            end: 120,
            start: 110
        })
    );
    // Work before the first epoch is no epoch's.
    assert_eq!(
        split(&p, &e, &block(5, 1, 1), 0),
        Err(SettlementError::BeyondEpochs(5))
    );
    let e = epochs(&[100]);
    assert_eq!(
        split(&p, &e, &block(50, 0, 1), 0),
        Err(SettlementError::NoNetworkWork)
    );
    assert_eq!(
        split(&p, &e, &block(50, 1, u64::MAX), 1),
        Err(SettlementError::ValueOverflow)
    );
    assert_eq!(
        Params::new(0, 2).unwrap().window_work(u128::MAX),
        Err(SettlementError::WorkOverflow)
    );
}

#[test]
fn an_epoch_closed_past_its_planned_end_still_pays_only_before_the_block_and_work_before_epochs_is_carried(
) {
    // Epochs begin at 1,000 (work before them is no epoch's); epoch 0's last share ended at
    // 1,130, past its planned 1,100.
    let mut e = Epochs::new();
    e.open(1_000, 100, 1).unwrap();
    e.close(1_130).unwrap();
    e.open(1_130, 100, 1).unwrap();
    assert_eq!(e.at(1_129).unwrap().index, 0);
    assert_eq!(e.at(1_130).unwrap().index, 1);
    assert_eq!(e.at(999), None);
    let p = Params::new(0, 3).unwrap();
    // Found early in epoch 1: the window ends 100 back, at 1,060, inside epoch 0.
    let s = split(&p, &e, &block(1_160, 100, 3_000), 0).unwrap();
    assert_eq!((s.window.start, s.window.end), (760, 1_060));
    // [1,000, 1,060) is epoch 0's; [760, 1,000) was mined before epochs: carried.
    assert_eq!(s.epochs, vec![(0, 600)]);
    assert_eq!(s.carry_out, 2_400);
    // A share of epoch 1 ending past epoch 1's planned end: the window never enters epoch 1.
    let s = split(&p, &e, &block(1_250, 100, 3_000), 0).unwrap();
    assert_eq!(s.window.end, 1_130);
}

#[test]
fn a_block_past_an_epochs_reach_never_pays_it_even_when_the_network_work_rose() {
    // Epochs of 100 sized at D = 100, windows of 2 D: epoch 0 leaves the reach of later blocks
    // at 100 + 100 + 200 = 400, where epoch 4 begins.
    let e = epochs(&[100; 5]);
    let p = Params::new(0, 2).unwrap();
    assert_eq!(e.out_of_reach_from(0, &p).unwrap(), Some(400));
    // Every block of the open epoch 4 (from 400) pays from 400 - 100 - 200 = 100 or later:
    // epoch 2 stays in reach until a later epoch starts at 500 or past.
    assert_eq!(e.out_of_reach_from(2, &p).unwrap(), None);
    assert_eq!(e.out_of_reach_from(4, &p).unwrap(), None);
    // Found at 450 after the difficulty rose tenfold: its window [0, 350) reaches epoch 0,
    // which is out of reach: its part is carried, the others are paid as the window gives.
    let s = split(&p, &e, &block(450, 1_000, 2_000), 0).unwrap();
    assert_eq!((s.window.start, s.window.end), (0, 350));
    assert_eq!(s.epochs, vec![(1, 100), (2, 100), (3, 50)]);
    assert_eq!(s.carry_out, 1_750);
    // Found at 399 (epoch 3), before epoch 0 left the reach: epoch 0 is paid.
    let s = split(&p, &e, &block(399, 1_000, 2_000), 0).unwrap();
    assert_eq!(s.epochs[0], (0, 100));
}

#[test]
fn a_pending_block_before_an_epochs_last_payer_keeps_it_from_final() {
    use crate::settle::{settle, FoundBlock, Paid, Standing};
    let e = epochs(&[100; 6]);
    let p = Params::new(0, 2).unwrap();
    let found = |t: u128, standing| FoundBlock {
        block: block(t, 100, 1_000),
        standing,
    };
    // Epoch 0 is paid by blocks in epoch 1 and 2 (windows of 200 ending 100 back).
    let run = [
        found(150, Standing::Pending),
        found(160, Standing::Orphaned),
        found(250, Standing::Matured),
    ];
    let s = settle(&p, &e, &run).unwrap();
    assert_eq!(s.blocks[1].paid, Paid::Nothing);
    assert_eq!(s.blocks[1].carry_in, s.blocks[1].carry_out);
    assert_eq!(s.first_pending, Some(0));
    assert_eq!(s.last_payer[0], Some(2));
    // Out of reach of epoch 0 from 400; the pending block before its last payer holds it.
    assert!(!s.is_final(&p, &e, 0, 1_000).unwrap());
    let matured = [
        found(150, Standing::Matured),
        found(160, Standing::Orphaned),
        found(250, Standing::Matured),
    ];
    let s = settle(&p, &e, &matured).unwrap();
    assert!(s.is_final(&p, &e, 0, 400).unwrap());
    assert!(!s.is_final(&p, &e, 0, 399).unwrap());
    // Everything matured is the epochs', the fees (none here) or carried.
    let paid: u64 = s.reward.iter().sum();
    assert_eq!(paid + s.fees + s.carry, 2_000);
}

#[test]
fn a_run_whose_sums_pass_u64_is_refused_not_wrapped() {
    use crate::settle::{settle, FoundBlock, Standing};
    // A report from elsewhere (an audit reads the pool's) can claim any value.
    let e = epochs(&[100; 3]);
    let p = Params::new(0, 1).unwrap();
    let huge = |t| FoundBlock {
        block: block(t, 100, u64::MAX / 2 + 1),
        standing: Standing::Matured,
    };
    assert_eq!(
        settle(&p, &e, &[huge(150), huge(160), huge(170), huge(180)]),
        Err(SettlementError::ValueOverflow)
    );
}
