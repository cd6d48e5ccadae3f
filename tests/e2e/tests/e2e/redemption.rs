//! Redemption (docs/settlement.md, "Redemption"): a miner's ehash of a final epoch becomes sat
//! ecash of the same mint at the rate the pool signed, locked to the miner's key, once; ehash
//! of another epoch, of an epoch not final, or already redeemed buys nothing.

use std::time::Duration;

use cdk::nuts::{PaymentMethod, Proofs};
use ext_mint_quote::{redeem_request, EpochsResponse, EPOCHS_PATH, REDEEM_METHOD};
use hashpool_e2e::{init_tracing, miner_options, open_wallet, wait_until, PoolOptions, Stack};
use hashpool_settlement::{
    liabilities::{check_mint_report, MintReport},
    rates::EpochCommitment,
};

const WAIT: Duration = Duration::from_secs(120);

/// Proofs of one keyset among the wallet's unspent ones.
async fn proofs_in(wallet: &hashpool_wallet::EhashWallet, keyset: &str) -> anyhow::Result<Proofs> {
    Ok(wallet
        .cdk()
        .get_unspent_proofs()
        .await?
        .into_iter()
        .filter(|p| p.keyset_id.to_string() == keyset)
        .collect())
}

/// A melt of `proofs` claiming `epoch`, sent to the mint as a hostile wallet would send it
/// (no wallet-side checks): the mint's answer's Cashu error code, `None` when it melted.
async fn melt_as(
    mint_url: &str,
    wallet: &hashpool_wallet::EhashWallet,
    epoch: u32,
    proofs: Proofs,
) -> anyhow::Result<Option<u64>> {
    let amount = proofs.iter().map(|p| u64::from(p.amount)).sum();
    let request = redeem_request(epoch, amount, &wallet.locking_key().to_hex());
    let quote = wallet
        .cdk()
        .melt_quote(
            PaymentMethod::Custom(REDEEM_METHOD.into()),
            request,
            None,
            None,
        )
        .await?;
    let answer = reqwest::Client::new()
        .post(format!("{mint_url}/v1/melt/{REDEEM_METHOD}"))
        .json(&serde_json::json!({ "quote": quote.id, "inputs": proofs }))
        .send()
        .await?;
    if answer.status().is_success() {
        return Ok(None);
    }
    let body: serde_json::Value = answer.json().await?;
    Ok(Some(body["code"].as_u64().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_epochs_ehash_redeems_once_for_the_sats_its_rate_gives() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .follow_chain()
        .with_redemption()
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
    let alice = open_wallet(&stack.dir.path().join("alice"), &mint.url()).await?;
    let alice_miner = stack.start_miner(mining_device::MinerOptions {
        locking_key: Some(alice.sv2_locking_key()),
        ..miner_options(pool.address(), "alice", 20_000.0, true)
    });
    let bob = stack.miner("bob", 10_000.0);

    // Epochs 0 and 1 closed, then the miners stop.
    wait_until(Duration::from_secs(180), "epoch 2 open", || async {
        ledger.epochs().await.is_ok_and(|e| e.len() >= 3)
    })
    .await?;
    stack.stop.cancel();
    alice_miner.task.await?;
    bob.task.await?;

    // Not final yet: the mint refuses to price epoch 0 (its blocks have not matured).
    alice.recover().await?;
    let held = alice.balance_by_epoch().await?;
    let early = alice.redeem(0).await;
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not final")),
        "epoch 0 is not final before its blocks mature: {early:?}"
    );
    assert_eq!(
        alice.balance_by_epoch().await?,
        held,
        "a refusal spends nothing"
    );

    // A hundred blocks on top: the pool's blocks mature and epoch 0 becomes final.
    tp.bury(100).await?;
    let rates_url = format!("{api}/rates");
    wait_until(WAIT, "epoch 0 final and every batch quoted", || async {
        let sheet: Option<serde_json::Value> = match reqwest::get(&rates_url).await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let final0 = sheet.is_some_and(|s| {
            s["body"]
                .as_array()
                .is_some_and(|rates| rates.iter().any(|r| r["epoch"] == 0))
        });
        final0 && ledger.open_batches().await.is_ok_and(|b| b.is_empty())
    })
    .await?;
    let sheet: serde_json::Value = reqwest::get(&rates_url).await?.json().await?;
    let rate0 = sheet["body"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["epoch"] == 0))
        .expect("epoch 0's rate")
        .clone();
    let reward = rate0["reward_sats"].as_u64().expect("reward");
    let issued = rate0["ehash"].as_u64().expect("ehash");

    // What alice holds of epoch 0 is what the pool's records quote to her key for it, and
    // the rate's ehash is every key's epoch-0 ehash.
    let alice_key = alice.sv2_locking_key();
    let mut alice_e0 = 0;
    for batch in ledger.batches_of(&alice_key).await? {
        if batch.epoch == Some(0) {
            alice_e0 += batch.amount;
        }
    }
    let mut all_e0 = alice_e0;
    for batch in ledger.batches_of(&hashpool_e2e::test_key("bob")).await? {
        if batch.epoch == Some(0) {
            all_e0 += batch.amount;
        }
    }
    assert_eq!(issued, all_e0, "the rate divides by the epoch's ehash");
    // A recovery cut short by a slow answer is finished by the next.
    wait_until(WAIT, "alice holds her epoch-0 ehash", || async {
        alice.recover().await.is_ok()
            && alice
                .balance_by_epoch()
                .await
                .is_ok_and(|b| b.contains(&(Some(0), alice_e0)))
    })
    .await?;
    let by_epoch = alice.balance_by_epoch().await?;
    assert!(
        by_epoch.contains(&(Some(0), alice_e0)),
        "{by_epoch:?} holds {alice_e0} of epoch 0"
    );
    let e1 = by_epoch
        .iter()
        .find(|(e, _)| *e == Some(1))
        .map(|(_, a)| *a)
        .expect("alice mined in epoch 1");

    let epochs: EpochsResponse = reqwest::get(format!("{}{EPOCHS_PATH}", mint.url()))
        .await?
        .json()
        .await?;
    let k0 = epochs.keyset_of(Some(0)).expect("epoch 0").to_string();
    let k1 = epochs.keyset_of(Some(1)).expect("epoch 1").to_string();

    // The redemption: exactly floor(x * R / H) sats, written out again here. The mint reads
    // the pool's sheet again within seconds of its last read, so it may take a moment to
    // learn that epoch 0 is final.
    let expected = (u128::from(alice_e0) * u128::from(reward) / u128::from(issued)) as u64;
    assert!(expected > 0);
    let spent_e0 = proofs_in(&alice, &k0).await?;
    let started = std::time::Instant::now();
    let redeemed = loop {
        match alice.redeem(0).await {
            Ok(r) => break r,
            Err(e) if started.elapsed() < WAIT => {
                tracing::info!("epoch 0 not redeemable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    assert_eq!((redeemed.ehash, redeemed.sats), (alice_e0, expected));
    assert_eq!(alice.sat_balance().await?, expected);
    let after = alice.balance_by_epoch().await?;
    assert!(
        !after.iter().any(|(e, _)| *e == Some(0)),
        "epoch 0's ehash is spent: {after:?}"
    );
    assert!(after.contains(&(Some(1), e1)), "{after:?}");

    // Redeemed once: the same proofs again are refused, and so is a redemption of nothing.
    // 11001: already spent.
    assert_eq!(
        melt_as(&mint.url(), &alice, 0, spent_e0).await?,
        Some(11001)
    );
    assert!(alice.redeem(0).await.is_err());
    assert_eq!(alice.sat_balance().await?, expected);

    // Epoch 1's ehash melted as epoch 0 (a rate it did not earn): refused for its keyset,
    // nothing spent. As much of it as epoch 0 issued, so only the keyset can refuse it.
    let mut e1_proofs = proofs_in(&alice, &k1).await?;
    e1_proofs.sort_by_key(|p| p.amount);
    let mut sum = 0;
    e1_proofs.retain(|p| {
        sum += u64::from(p.amount);
        sum <= issued
    });
    assert!(!e1_proofs.is_empty());
    // 12002: not the keyset of the quote's epoch.
    assert_eq!(
        melt_as(&mint.url(), &alice, 0, e1_proofs).await?,
        Some(12002)
    );
    assert_eq!(alice.sat_balance().await?, expected);
    assert!(alice.balance_by_epoch().await?.contains(&(Some(1), e1)));
    // An open epoch is never final: no quote for it.
    let open = alice
        .cdk()
        .melt_quote(
            PaymentMethod::Custom(REDEEM_METHOD.into()),
            redeem_request(2, 1, &alice.locking_key().to_hex()),
            None,
            None,
        )
        .await;
    assert!(open.is_err(), "an open epoch priced: {open:?}");

    // The mint's signed report of epoch 0: the same quotes as the pool's commitment, the
    // ehash redeemed, what it still owes, the sats it issued.
    let commitment: EpochCommitment = reqwest::get(format!("{api}/epochs/0"))
        .await?
        .json()
        .await?;
    let report: MintReport = reqwest::get(format!("{}/v1/hashpool/epochs/0/report", mint.url()))
        .await?
        .json()
        .await?;
    let mint_key = hashpool_e2e::public_key().into_bytes();
    let problems = check_mint_report(0, &report, &mint_key, Some(&commitment));
    assert!(problems.is_empty(), "{problems:?}");
    let r = &report.body;
    assert_eq!((r.issued, r.redeemed), (issued, alice_e0));
    assert_eq!(r.outstanding, issued - alice_e0);
    assert_eq!((r.sats_issued, r.keyset.as_str()), (expected, k0.as_str()));
    assert_eq!(r.root, commitment.body.root);
    // A report that owes less than it issued, or leaves a quote out, does not check.
    let mut owes_less = report.clone();
    owes_less.body.outstanding -= 1;
    assert!(!check_mint_report(0, &owes_less, &mint_key, Some(&commitment)).is_empty());
    let mut fewer = report.clone();
    fewer.body.root.sum -= 1;
    fewer.body.issued -= 1;
    fewer.body.outstanding -= 1;
    assert!(!check_mint_report(0, &fewer, &mint_key, Some(&commitment)).is_empty());
    // The wallet's audit with the mint's key: every check passes.
    let mut alice_quotes = Vec::new();
    for batch in ledger.batches_of(&alice_key).await? {
        if let Some(quote) = batch.quote_id {
            alice_quotes.push((quote, batch.amount));
        }
    }
    let audited = hashpool_wallet_cli::audit::audit_pool_and_mint(
        &format!("http://{}", pool.running.api_address.expect("served")),
        &hashpool_e2e::public_key().into_bytes(),
        Some(hashpool_wallet_cli::audit::MintToAudit {
            url: &mint.url(),
            key: mint_key,
        }),
        &alice_key.to_hex(),
        &alice_quotes,
    )
    .await?;
    assert!(audited.problems.is_empty(), "{:?}", audited.problems);

    // The sats are ecash of this mint: they move like any.
    let friend = open_wallet(&stack.dir.path().join("friend"), &mint.url()).await?;
    let token = alice
        .sat_wallet()
        .prepare_send(
            cdk::Amount::from(expected.min(100)),
            cdk::wallet::SendOptions::default(),
        )
        .await?
        .confirm(None)
        .await?
        .to_string();
    let received = friend
        .sat_wallet()
        .receive(&token, cdk::wallet::ReceiveOptions::default())
        .await?;
    assert_eq!(u64::from(received), expected.min(100));
    stack.stop().await
}
