//! Withdrawals in the coinbase (docs/settlement.md): sats a miner redeemed leave the mint by a
//! melt naming an address, and a later block the pool finds pays exactly that amount to that
//! address in its coinbase, once: a block that leaves the best chain takes its payouts with it
//! and a later block pays them again, never both in the best chain.

use std::time::Duration;

use bitcoin::{BlockHash, Network};
use hashpool_e2e::{
    init_tracing, miner_options, open_wallet,
    payouts::{address, node, paid_in_best_chain, payout},
    wait_until, PoolOptions, Stack,
};
use hashpool_settlement::{
    liabilities::{check_mint_report, MintReport},
    withdrawals::PayoutState,
};

const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_is_paid_once_in_a_later_coinbase_even_when_its_block_is_orphaned(
) -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .with_withdrawals()
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        })
        .start()
        .await?;
    let (tp, pool, mint) = (&stack.tp, &stack.pool, stack.mint());
    let ledger = &pool.running.ledger;
    let api = format!(
        "http://{}/api/v1/settlement",
        pool.running.api_address.expect("the miner API is served")
    );
    let node = node(tp.running.http_address)?;
    let alice = open_wallet(&stack.dir.path().join("alice"), &mint.url()).await?;
    let options = || mining_device::MinerOptions {
        locking_key: Some(alice.sv2_locking_key()),
        ..miner_options(pool.address(), "alice", 20_000.0, true)
    };

    // Epoch 0 closes and leaves every window; its blocks mature under a hundred more; alice
    // redeems it.
    let miner_stop = tokio_util::sync::CancellationToken::new();
    let miner = mining_device::start(options(), miner_stop.clone());
    // Epoch 2 open: the pool's work is past epoch 0's reach (docs/settlement.md, finality).
    wait_until(WAIT, "epoch 2 open", || async {
        ledger.epochs().await.is_ok_and(|e| e.len() >= 3)
    })
    .await?;
    miner_stop.cancel();
    miner.task.await?;
    tp.bury(100).await?;
    // The wallet values epoch 0 once it is final, at the rate the mint redeems it at; epoch 1
    // (still in the windows of later blocks) has no value yet.
    wait_until(WAIT, "epoch 0 valued", || async {
        let _ = alice.recover().await;
        alice.holdings_by_epoch().await.is_ok_and(|h| {
            h.iter()
                .any(|e| e.epoch == Some(0) && e.sats.is_some_and(|s| s > 0))
        })
    })
    .await?;
    let holdings = alice.holdings_by_epoch().await?;
    let valued = holdings
        .iter()
        .find(|e| e.epoch == Some(0))
        .and_then(|e| e.sats)
        .expect("epoch 0's value");
    assert!(
        holdings
            .iter()
            .filter(|e| e.epoch == Some(1))
            .all(|e| e.sats.is_none()),
        "{holdings:?}"
    );
    let started = std::time::Instant::now();
    let redeemed = loop {
        let _ = alice.recover().await;
        match alice.redeem(0).await {
            Ok(r) => break r,
            Err(e) if started.elapsed() < WAIT => {
                tracing::info!("epoch 0 not redeemable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let sats = redeemed.sats;
    assert_eq!(sats, valued, "the value shown is what the redemption paid");
    assert!(sats > 100_000, "alice redeemed {sats} sats");

    // Refused, nothing spent: under the minimum, an address of another chain, more than held.
    let first = address(Network::Regtest);
    let mainnet = address(Network::Bitcoin);
    // The mint says why (code 20103, the reason in `detail`).
    let small = alice.withdraw(9_999, &first.to_string()).await;
    assert!(
        small.as_ref().is_err_and(|e| e
            .to_string()
            .contains("a withdrawal is of 10000 to 100000000 sats")),
        "{small:?}"
    );
    let elsewhere = alice.withdraw(20_000, &mainnet.to_string()).await;
    assert!(
        elsewhere.as_ref().is_err_and(|e| e
            .to_string()
            .contains("not an address of this mint's chain")),
        "{elsewhere:?}"
    );
    assert!(alice.withdraw(sats + 1, &first.to_string()).await.is_err());
    assert_eq!(alice.sat_balance().await?, sats);

    // Two withdrawals: the sats leave the wallet at once.
    let second = address(Network::Regtest);
    let (w1, w2) = (25_000u64, 40_000u64);
    let one = alice.withdraw(w1, &first.to_string()).await?;
    let two = alice.withdraw(w2, &second.to_string()).await?;
    assert_eq!(alice.sat_balance().await?, sats - w1 - w2);
    let listed: Vec<_> = alice
        .withdrawals()
        .await?
        .into_iter()
        .map(|w| (w.quote_id, w.sats))
        .collect();
    assert_eq!(
        listed,
        vec![(one.quote_id.clone(), w1), (two.quote_id.clone(), w2)]
    );
    let (_, before) = node.chain().await?;

    // The pool finds blocks again: a later coinbase pays each, to its address, exactly.
    let miner_stop = tokio_util::sync::CancellationToken::new();
    let miner = mining_device::start(options(), miner_stop.clone());
    wait_until(WAIT, "both withdrawals in a block", || async {
        let (a, b) = (
            payout(&api, &one.quote_id).await,
            payout(&api, &two.quote_id).await,
        );
        [a, b]
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| p.state == PayoutState::InBlock))
    })
    .await?;
    let p1 = payout(&api, &one.quote_id).await.expect("payout");
    let hash1: BlockHash = p1.block_hash.as_deref().expect("block").parse()?;
    let coinbase = node.block(&hash1).await?.txdata.remove(0);
    let vout = p1.vout.expect("vout") as usize;
    assert_eq!(coinbase.output[vout].script_pubkey, first.script_pubkey());
    assert_eq!(coinbase.output[vout].value.to_sat(), w1);
    assert_eq!(p1.txid, Some(coinbase.compute_txid().to_string()));
    assert!(
        p1.height.is_some_and(|h| h > before),
        "paid after the withdrawal"
    );
    assert_eq!(
        paid_in_best_chain(&node, before + 1, &first.script_pubkey(), w1).await?,
        vec![hash1]
    );
    assert_eq!(
        paid_in_best_chain(&node, before + 1, &second.script_pubkey(), w2)
            .await?
            .len(),
        1
    );

    // The block paying the first withdrawal leaves the best chain: its payouts are queued
    // again and a later block pays them; the chain holds each once.
    let reply = tp
        .rpc("invalidateblock", serde_json::json!([hash1.to_string()]))
        .await?;
    assert!(reply["error"].is_null(), "invalidateblock: {reply}");
    wait_until(
        WAIT,
        "the first withdrawal paid again in another block",
        || async {
            payout(&api, &one.quote_id).await.is_some_and(|p| {
                p.state == PayoutState::InBlock && p.block_hash != Some(hash1.to_string())
            })
        },
    )
    .await?;
    let p1 = payout(&api, &one.quote_id).await.expect("payout");
    let again: BlockHash = p1.block_hash.as_deref().expect("block").parse()?;
    wait_until(WAIT, "the second withdrawal in a block", || async {
        payout(&api, &two.quote_id)
            .await
            .is_some_and(|p| p.state == PayoutState::InBlock)
    })
    .await?;
    assert_eq!(
        paid_in_best_chain(&node, before + 1, &first.script_pubkey(), w1).await?,
        vec![again]
    );
    assert_eq!(
        paid_in_best_chain(&node, before + 1, &second.script_pubkey(), w2)
            .await?
            .len(),
        1
    );
    miner_stop.cancel();
    miner.task.await?;

    // Buried by a hundred blocks, the payouts mature.
    tp.bury(100).await?;
    wait_until(WAIT, "both payouts matured", || async {
        let (a, b) = (
            payout(&api, &one.quote_id).await,
            payout(&api, &two.quote_id).await,
        );
        [a, b]
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| p.state == PayoutState::Matured))
    })
    .await?;
    let listing: serde_json::Value = reqwest::get(format!("{api}/payouts")).await?.json().await?;
    assert_eq!(listing["owed_sats"], 0, "{listing}");
    assert_eq!(listing["by_state"]["matured"]["sats"], w1 + w2, "{listing}");

    // The mint's signed report counts the sats withdrawn.
    let report: MintReport = reqwest::get(format!("{}/v1/hashpool/epochs/0/report", mint.url()))
        .await?
        .json()
        .await?;
    let mint_key = hashpool_e2e::public_key().into_bytes();
    assert!(check_mint_report(0, &report, &mint_key, None).is_empty());
    assert_eq!(
        (report.body.mint_sats_issued, report.body.sats_withdrawn),
        (sats, w1 + w2)
    );
    stack.stop().await
}
