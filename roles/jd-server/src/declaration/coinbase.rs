//! The declared coinbase: one the pool's channels can rebuild, for the next height (BIP34),
//! paying the pool's script the whole reward, committing to the declared transactions.

use bitcoin::{script::Builder, Amount, Script, Transaction, TxOut, Wtxid};
use hashpool_job_declaration::{split_coinbase, witness_commitment_script, SplitCoinbase};
use job_declaration_sv2::{
    ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
    ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
    ERROR_CODE_DECLARE_MINING_JOB_STALE_CHAIN_TIP,
};

use super::{Known, Refusal};

fn bad_coinbase(why: String) -> Refusal {
    Refusal(ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX, why)
}

/// The coinbase `DeclareMiningJob.coinbase_tx_prefix` and `_suffix` make, with its
/// extranonce's place; its witness must be the reserved value the commitment is computed with.
pub fn split_declared_coinbase(prefix: &[u8], suffix: &[u8]) -> Result<SplitCoinbase, Refusal> {
    let split = split_coinbase(prefix, suffix).map_err(|e| bad_coinbase(e.to_string()))?;
    // The witness reserved value the commitment is computed with, as every SV2 coinbase.
    let witness = &split.tx.input[0].witness;
    if witness.len() != 1 || witness.nth(0) != Some(&[0u8; 32][..]) {
        return Err(bad_coinbase(
            "the coinbase witness must be one 32-byte all-zero item".into(),
        ));
    }
    Ok(split)
}

/// The coinbase is for `next_height`: a stale tip when it names an earlier one.
pub fn check_height(split: &SplitCoinbase, next_height: u32) -> Result<(), Refusal> {
    // BIP34 as consensus reads it: the minimal push of the height, before the extranonce.
    let expected = Builder::new()
        .push_int(i64::from(next_height))
        .into_script();
    if split.script_sig_prefix.starts_with(expected.as_bytes()) {
        return Ok(());
    }
    Err(match bip34_height(&split.tx) {
        Some(h) if h < next_height => Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_STALE_CHAIN_TIP,
            format!("the coinbase is for height {h}; the next block is {next_height}"),
        ),
        _ => bad_coinbase(format!(
            "the coinbase scriptSig must start with the minimal push of the next height, {next_height} (BIP34)"
        )),
    })
}

/// The height a coinbase's scriptSig starts with (BIP34).
pub fn bip34_height(coinbase: &Transaction) -> Option<u32> {
    hashpool_shares::chain::bip34_height(coinbase.input.first()?.script_sig.as_bytes())
}

/// The block subsidy at `height` on `chain` (regtest halves every 150 blocks).
pub fn subsidy(chain: &str, height: u32) -> Amount {
    let interval = if chain == "regtest" { 150 } else { 210_000 };
    let halvings = height / interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat(5_000_000_000 >> halvings)
}

/// The block's reward: the subsidy and the fees of the mempool's transactions (the fees of
/// provided ones are unknown, so the pool is not owed them).
pub fn block_reward(chain: &str, height: u32, known: &[Known]) -> Result<Amount, Refusal> {
    let fees = known
        .iter()
        .filter_map(|k| match k {
            Known::Mempool { fee, .. } => Some(*fee),
            Known::Provided(_) => None,
        })
        .try_fold(Amount::ZERO, |a, f| a.checked_add(f))
        .ok_or_else(|| {
            Refusal(
                ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
                "fee overflow".into(),
            )
        })?;
    Ok(subsidy(chain, height) + fees)
}

/// The payouts a coinbase at `height` must carry: the token's, when they were offered at that
/// height. A token's payouts offered at another height must not be paid at this one (the pool
/// settles each payout by the block at the height it was offered at, so a payout paid
/// elsewhere could be paid twice).
pub fn required_payouts<'a>(
    outputs: &[TxOut],
    token_height: Option<u32>,
    token_payouts: &'a [TxOut],
    height: u32,
) -> Result<&'a [TxOut], Refusal> {
    match token_height {
        Some(h) if h == height => Ok(token_payouts),
        Some(h) if token_payouts.iter().any(|p| outputs.contains(p)) => Err(bad_coinbase(format!(
            "the coinbase pays withdrawals offered for height {h}, not {height}: allocate a new token"
        ))),
        _ => Ok(&[]),
    }
}

/// The outputs pay each `required` payout (its script and amount, one output each), the pool's
/// script at least the rest of `reward`, and no more than `reward` in all.
pub fn check_outputs(
    outputs: &[TxOut],
    pool_script: &Script,
    reward: Amount,
    required: &[TxOut],
) -> Result<(), Refusal> {
    let mut unpaid: Vec<&TxOut> = required.iter().collect();
    let mut owed = Amount::ZERO;
    for payout in required {
        owed = owed
            .checked_add(payout.value)
            .ok_or_else(|| bad_coinbase("the payouts' sum overflows".into()))?;
    }
    let Some(pool_share) = reward.checked_sub(owed) else {
        return Err(bad_coinbase(format!(
            "the withdrawals to pay ({} sat) exceed the block's reward",
            owed.to_sat()
        )));
    };
    let mut total = owed;
    let mut paid = Amount::ZERO;
    let mut pays_pool = false;
    for output in outputs {
        if let Some(i) = unpaid.iter().position(|p| *p == output) {
            // A payout's output: counted in `owed`, not again.
            unpaid.swap_remove(i);
            continue;
        }
        if output.value > Amount::MAX_MONEY {
            return Err(bad_coinbase(format!(
                "an output pays {} sat, more than all bitcoin",
                output.value.to_sat()
            )));
        }
        total = total
            .checked_add(output.value)
            .ok_or_else(|| bad_coinbase("the outputs' sum overflows".into()))?;
        if output.script_pubkey.as_script() == pool_script {
            pays_pool = true;
            paid = paid
                .checked_add(output.value)
                .ok_or_else(|| bad_coinbase("the outputs' sum overflows".into()))?;
        }
    }
    if let Some(missing) = unpaid.first() {
        return Err(bad_coinbase(format!(
            "the coinbase does not pay a withdrawal the pool requires: {} sat to {} \
             (AllocateMiningJobToken.Success.coinbase_outputs)",
            missing.value.to_sat(),
            missing.script_pubkey.to_hex_string()
        )));
    }
    if !pays_pool {
        return Err(bad_coinbase(
            "no output pays the pool's script (AllocateMiningJobToken.Success.coinbase_outputs)"
                .into(),
        ));
    }
    if paid < pool_share {
        return Err(bad_coinbase(format!(
            "the pool's output pays {} sat; the block's reward is {} sat (subsidy and the fees of the mempool's transactions), {} of it to withdrawals",
            paid.to_sat(),
            reward.to_sat(),
            owed.to_sat()
        )));
    }
    if total > reward {
        return Err(bad_coinbase(format!(
            "the coinbase pays {} sat in all, more than the block's reward of {} sat",
            total.to_sat(),
            reward.to_sat()
        )));
    }
    Ok(())
}

/// One of the coinbase's outputs is the witness commitment to exactly `wtxids`.
pub fn check_witness_commitment(coinbase: &Transaction, wtxids: &[Wtxid]) -> Result<(), Refusal> {
    let commitment_script = witness_commitment_script(wtxids);
    if !coinbase
        .output
        .iter()
        .any(|o| o.script_pubkey == commitment_script)
    {
        return Err(bad_coinbase(
            "the witness commitment for these transactions is missing or wrong".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declaration::fixtures::{
        coinbase_at, declared_coinbase, own_transaction, pool_script,
    };
    use bitcoin::{hashes::Hash, ScriptBuf, Txid};

    #[test]
    fn heights_are_read_as_bip34_writes_them() {
        for height in [1u32, 16, 17, 150, 1_000, 840_000] {
            let script = Builder::new()
                .push_int(i64::from(height))
                .push_slice(b"tag")
                .into_script();
            assert_eq!(bip34_height(&coinbase_at(script)), Some(height));
        }
        assert_eq!(bip34_height(&coinbase_at(bitcoin::ScriptBuf::new())), None);
    }

    #[test]
    fn subsidy_halves_per_chain() {
        assert_eq!(subsidy("regtest", 149), Amount::from_sat(5_000_000_000));
        assert_eq!(subsidy("regtest", 150), Amount::from_sat(2_500_000_000));
        assert_eq!(subsidy("testnet4", 150), Amount::from_sat(5_000_000_000));
        assert_eq!(
            subsidy("testnet4", 210_000),
            Amount::from_sat(2_500_000_000)
        );
        assert_eq!(subsidy("main", 64 * 210_000), Amount::ZERO);
    }

    #[test]
    fn a_coinbase_splits_with_the_reserved_witness_only() {
        let head = Builder::new().push_int(101).into_bytes();
        let ok = declared_coinbase(head.clone(), vec![], &[], |_| {});
        let split = split_declared_coinbase(&ok.prefix, &ok.suffix).unwrap();
        assert_eq!(split.extranonce_len, 16);
        assert_eq!(split.script_sig_prefix, head);

        let witnesses: [(&str, Vec<Vec<u8>>); 3] = [
            ("none", vec![]),
            ("not zero", vec![vec![1u8; 32]]),
            ("two items", vec![vec![0u8; 32], vec![0u8; 32]]),
        ];
        for (what, items) in witnesses {
            let cb = declared_coinbase(head.clone(), vec![], &[], |tx| {
                tx.input[0].witness = bitcoin::Witness::from(items.clone());
            });
            let Refusal(code, details) =
                split_declared_coinbase(&cb.prefix, &cb.suffix).expect_err(what);
            assert_eq!(
                code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "{what}"
            );
            assert!(details.contains("32-byte all-zero"), "{what}: {details}");
        }

        // Not a transaction at all: split_coinbase's own reason.
        let Refusal(code, details) = split_declared_coinbase(&[1, 2, 3], &[4]).unwrap_err();
        assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX);
        assert!(details.contains("prefix and suffix"), "{details}");
    }

    #[test]
    fn the_coinbase_must_be_for_the_next_height() {
        let next = 100;
        let split = |head: Vec<u8>| {
            let cb = declared_coinbase(head, vec![], &[], |_| {});
            split_declared_coinbase(&cb.prefix, &cb.suffix).unwrap()
        };
        let push = |h: i64| Builder::new().push_int(h).into_bytes();
        assert_eq!(check_height(&split(push(100)), next), Ok(()));
        // The height may be followed by anything before the extranonce.
        let mut tagged = push(100);
        tagged.extend_from_slice(b"/tag/");
        assert_eq!(check_height(&split(tagged), next), Ok(()));

        let non_minimal = {
            // 100 pushed on two bytes where one suffices.
            let mut s = vec![0x02, 100, 0];
            s.extend_from_slice(b"x");
            s
        };
        let cases: [(&str, Vec<u8>, &str, &str); 4] = [
            (
                "an earlier height",
                push(99),
                ERROR_CODE_DECLARE_MINING_JOB_STALE_CHAIN_TIP,
                "the coinbase is for height 99; the next block is 100",
            ),
            (
                "a later height",
                push(101),
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "minimal push of the next height, 100",
            ),
            (
                "no height",
                b"hello".to_vec(),
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "(BIP34)",
            ),
            (
                "a non-minimal push",
                non_minimal,
                ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "minimal push",
            ),
        ];
        for (what, head, want_code, part) in cases {
            let Refusal(code, details) = check_height(&split(head), next).expect_err(what);
            assert_eq!(code, want_code, "{what}");
            assert!(details.contains(part), "{what}: {details}");
        }
    }

    #[test]
    fn the_reward_is_the_subsidy_and_the_mempools_fees() {
        let mempool = |sat| Known::Mempool {
            txid: Txid::all_zeros(),
            fee: Amount::from_sat(sat),
        };
        let provided = Known::Provided(own_transaction(1));
        assert_eq!(
            block_reward("regtest", 1, &[]),
            Ok(Amount::from_sat(5_000_000_000))
        );
        assert_eq!(
            block_reward("regtest", 150, &[mempool(300), provided, mempool(200)]),
            Ok(Amount::from_sat(2_500_000_500))
        );
        let Refusal(code, details) =
            block_reward("regtest", 1, &[mempool(u64::MAX), mempool(1)]).unwrap_err();
        assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR);
        assert_eq!(details, "fee overflow");
    }

    #[test]
    fn outputs_pay_the_pool_the_whole_reward_and_no_more() {
        let pool = pool_script();
        let other = ScriptBuf::new_op_return([1, 2, 3]);
        let reward = Amount::from_sat(1_000);
        let out = |script: &ScriptBuf, sat: u64| TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: script.clone(),
        };
        let accepted: [(&str, Vec<TxOut>); 3] = [
            ("exactly the reward", vec![out(&pool, 1_000)]),
            (
                "beside a zero output",
                vec![out(&other, 0), out(&pool, 1_000)],
            ),
            ("in two outputs", vec![out(&pool, 600), out(&pool, 400)]),
        ];
        for (what, outputs) in accepted {
            assert_eq!(
                check_outputs(&outputs, &pool, reward, &[]),
                Ok(()),
                "{what}"
            );
        }

        let too_much = Amount::MAX_MONEY.to_sat() + 1;
        let overflowing = vec![out(&other, Amount::MAX_MONEY.to_sat()); 9_000];
        let refused: [(&str, Vec<TxOut>, &str); 6] = [
            ("no outputs", vec![], "no output pays the pool's script"),
            (
                "another script",
                vec![out(&other, 1_000)],
                "no output pays the pool's script",
            ),
            (
                "underpaid",
                vec![out(&pool, 999)],
                "the pool's output pays 999 sat; the block's reward is 1000 sat",
            ),
            (
                "more than the reward",
                vec![out(&pool, 1_000), out(&other, 1)],
                "the coinbase pays 1001 sat in all, more than the block's reward of 1000 sat",
            ),
            (
                "more than all bitcoin",
                vec![out(&pool, too_much)],
                "more than all bitcoin",
            ),
            (
                "an overflowing sum",
                overflowing,
                "the outputs' sum overflows",
            ),
        ];
        for (what, outputs, part) in refused {
            let Refusal(code, details) =
                check_outputs(&outputs, &pool, reward, &[]).expect_err(what);
            assert_eq!(
                code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "{what}"
            );
            assert!(details.contains(part), "{what}: {details}");
        }
    }

    #[test]
    fn withdrawals_the_token_carries_are_paid_at_its_height_and_nowhere_else() {
        let pool = pool_script();
        let alice = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        let reward = Amount::from_sat(100_000);
        let out = |script: &ScriptBuf, sat: u64| TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: script.clone(),
        };
        let payouts = vec![out(&alice, 20_000), out(&alice, 20_000)];

        // At the token's height: both paid, the pool the rest.
        let paying = vec![out(&pool, 60_000), out(&alice, 20_000), out(&alice, 20_000)];
        let required = required_payouts(&paying, Some(7), &payouts, 7).unwrap();
        assert_eq!(check_outputs(&paying, &pool, reward, required), Ok(()));
        // One output cannot pay two payouts; the pool keeping a payout's sats is refused.
        for (what, outputs, part) in [
            (
                "one of two paid",
                vec![out(&pool, 80_000), out(&alice, 20_000)],
                "does not pay a withdrawal",
            ),
            (
                "none paid",
                vec![out(&pool, 100_000)],
                "does not pay a withdrawal",
            ),
            (
                "the pool underpaid",
                vec![out(&pool, 59_999), out(&alice, 20_000), out(&alice, 20_000)],
                "the pool's output pays 59999 sat",
            ),
        ] {
            let Refusal(code, details) =
                check_outputs(&outputs, &pool, reward, required).expect_err(what);
            assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX);
            assert!(details.contains(part), "{what}: {details}");
        }
        // Payouts worth more than the block: refused.
        let Refusal(_, details) =
            check_outputs(&paying, &pool, Amount::from_sat(30_000), required).unwrap_err();
        assert!(details.contains("exceed the block's reward"), "{details}");

        // At another height the token's payouts are not required, and must not be paid.
        assert_eq!(
            required_payouts(&[out(&pool, 100_000)], Some(7), &payouts, 8),
            Ok(&[][..])
        );
        let Refusal(_, details) = required_payouts(&paying, Some(7), &payouts, 8).unwrap_err();
        assert!(details.contains("offered for height 7, not 8"), "{details}");
        // A token without payouts requires none.
        assert_eq!(required_payouts(&paying, None, &[], 8), Ok(&[][..]));
    }

    #[test]
    fn the_witness_commitment_must_be_to_the_declared_transactions() {
        let txs = [own_transaction(1), own_transaction(2)];
        let wtxids: Vec<Wtxid> = txs.iter().map(Transaction::compute_wtxid).collect();
        let head = Builder::new().push_int(5).into_bytes();
        let cb = declared_coinbase(head, vec![], &wtxids, |_| {});
        assert_eq!(check_witness_commitment(&cb.tx, &wtxids), Ok(()));

        let cases: [(&str, Vec<Wtxid>); 3] = [
            ("one left out", wtxids[..1].to_vec()),
            ("reordered", vec![wtxids[1], wtxids[0]]),
            ("none", vec![]),
        ];
        for (what, declared) in cases {
            let Refusal(code, details) =
                check_witness_commitment(&cb.tx, &declared).expect_err(what);
            assert_eq!(
                code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_COINBASE_TX,
                "{what}"
            );
            assert!(details.contains("witness commitment"), "{what}: {details}");
        }
        let mut without = cb.tx.clone();
        without.output.clear();
        assert!(check_witness_commitment(&without, &wtxids).is_err());
    }
}
