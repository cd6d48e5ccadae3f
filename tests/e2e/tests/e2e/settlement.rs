//! Settlement's chain awareness: the pool records each block it finds (height, reward, the
//! network's work, its own cumulative work) and follows it in the node's chain to maturity, or
//! off the best chain when a reorg takes it.

use std::time::Duration;

use hashpool_e2e::{init_tracing, wait_until, PoolOptions, Stack, TestProvider};
use pool::ledger::{BlockStatus, TrackedBlock};

const WAIT: Duration = Duration::from_secs(90);

/// A call the node must answer without an error: its result.
async fn rpc(
    tp: &TestProvider,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let reply = tp.rpc(method, params).await?;
    anyhow::ensure!(reply["error"].is_null(), "{method}: {reply}");
    Ok(reply["result"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_blocks_are_followed_to_maturity_and_a_reorged_one_is_orphaned() -> anyhow::Result<()>
{
    init_tracing();
    let stack = Stack::new()
        .follow_chain()
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            ..Default::default()
        })
        .start()
        .await?;
    let (tp, pool, stop) = (&stack.tp, &stack.pool, &stack.stop);
    let ledger = &pool.running.ledger;
    let miner = stack.miner("alice", 20_000.0);

    // Blocks found and seen by the follower in the chain.
    wait_until(WAIT, "3 found blocks in the chain", || async {
        ledger.found_blocks(1_000).await.is_ok_and(|blocks| {
            blocks
                .iter()
                .filter(|b| b.status == BlockStatus::Pending && b.confirmations >= 1)
                .count()
                >= 3
        })
    })
    .await?;
    stop.cancel();
    miner.task.await?;

    // Once the chain is still, every found block is in it or (in regtest, where a template's
    // shares are often several blocks, only one of which connects) off it.
    let settled = |blocks: &[TrackedBlock]| {
        blocks.iter().all(|b| {
            (b.status == BlockStatus::Pending && b.confirmations >= 1)
                || b.status == BlockStatus::Orphaned
        })
    };
    wait_until(WAIT, "every found block placed", || async {
        ledger
            .found_blocks(1_000)
            .await
            .is_ok_and(|blocks| settled(&blocks))
    })
    .await?;
    let mut blocks = ledger.found_blocks(1_000).await?;
    blocks.sort_by_key(|b| b.pool_work);
    // Each records its reward and the pool's work up to it; the work only grows.
    for pair in blocks.windows(2) {
        assert!(pair[0].pool_work < pair[1].pool_work, "{pair:?}");
    }
    let mut in_chain = Vec::new();
    for b in &blocks {
        let height = b.height.expect("height recorded");
        assert!(b.network_work.is_some_and(|w| w.hashes() > 0));
        let at_height = rpc(tp, "getblockhash", serde_json::json!([height])).await?;
        if b.status == BlockStatus::Pending {
            assert_eq!(at_height, b.hash.to_string());
            let block: serde_json::Value = reqwest::get(format!(
                "http://{}/blocks/{height}",
                tp.running.http_address
            ))
            .await?
            .json()
            .await?;
            assert_eq!(block["coinbase_value_sats"].as_u64(), b.value_sats);
            in_chain.push(b.clone());
        } else {
            assert_ne!(at_height, b.hash.to_string());
        }
    }
    assert!(in_chain.len() >= 3, "{in_chain:?}");

    // A reorg takes the newest of the pool's blocks off the best chain.
    in_chain.sort_by_key(|b| b.height);
    let taken = in_chain.pop().expect("three blocks");
    rpc(
        tp,
        "invalidateblock",
        serde_json::json!([taken.hash.to_string()]),
    )
    .await?;
    wait_until(WAIT, "the reorged block orphaned", || async {
        ledger.found_blocks(1_000).await.is_ok_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.hash == taken.hash && b.status == BlockStatus::Orphaned)
        })
    })
    .await?;

    // A hundred blocks on top: the others mature; the orphan stays orphaned.
    tp.bury(100).await?;
    wait_until(WAIT, "the pool's other blocks matured", || async {
        ledger.found_blocks(1_000).await.is_ok_and(|blocks| {
            in_chain.iter().all(|kept| {
                blocks
                    .iter()
                    .any(|b| b.hash == kept.hash && b.status == BlockStatus::Matured)
            })
        })
    })
    .await?;
    let blocks = ledger.found_blocks(1_000).await?;
    let orphan = blocks
        .iter()
        .find(|b| b.hash == taken.hash)
        .expect("recorded");
    assert_eq!(orphan.status, BlockStatus::Orphaned);
    assert!(blocks
        .iter()
        .filter(|b| b.status == BlockStatus::Matured)
        .all(|b| b.confirmations >= 100));
    // Matured blocks are no longer asked about; the orphan is, until the tip is 100 past it.
    let (tip, _) = (tp.status().await?.height, ());
    let followed = ledger.blocks_to_follow(tip, 100).await?;
    assert!(followed.iter().all(|b| b.status != BlockStatus::Matured));
    stack.stop().await?;
    Ok(())
}

fn work(v: &serde_json::Value) -> u128 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .expect("work as a decimal string")
}

/// Each epoch's reward from the ledger's own records, by the rules of docs/settlement.md
/// written out here again (not through `hashpool-settlement`): fee 2 %, `N = 8 D`, the window
/// ending an epoch's planned length before the block and never inside the block's epoch,
/// `floor(R x overlap / N)` per epoch, the rest carried.
fn rewards_by_the_rules(
    epochs: &[pool::ledger::LedgerEpoch],
    blocks: &[TrackedBlock],
) -> (Vec<u128>, u128, u128) {
    let mut reward = vec![0u128; epochs.len()];
    let (mut carry, mut fees) = (0u128, 0u128);
    let mut ordered: Vec<_> = blocks
        .iter()
        .filter(|b| b.status != BlockStatus::Orphaned)
        .collect();
    ordered.sort_by_key(|b| b.pool_work);
    for b in ordered {
        let t = b.pool_work.expect("recorded").hashes();
        let d = b.network_work.expect("recorded").hashes();
        let value = u128::from(b.value_sats.expect("recorded"));
        let fee = value * 20_000 / 1_000_000;
        fees += fee;
        let r = value - fee + carry;
        let own = epochs
            .iter()
            .find(|e| e.start.hashes() < t && e.end.is_none_or(|end| t <= end.hashes()));
        let Some(own) = own else {
            carry = r;
            continue;
        };
        let end = t
            .saturating_sub(own.length.hashes())
            .min(own.start.hashes());
        let n = 8 * d;
        let start = end.saturating_sub(n);
        let mut paid = 0;
        for (i, e) in epochs.iter().enumerate() {
            let Some(e_end) = e.end else { continue };
            let from = e.start.hashes().max(start);
            let to = e_end.hashes().min(end);
            if to > from {
                let sats = r * (to - from) / n;
                reward[i] += sats;
                paid += sats;
            }
        }
        carry = r - paid;
    }
    (reward, fees, carry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_turn_with_the_pools_work_and_a_matured_epoch_becomes_final_at_the_rate_the_rules_give(
) -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .follow_chain()
        .with_mint()
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        })
        .start()
        .await?;
    let (tp, pool, stop) = (&stack.tp, &stack.pool, &stack.stop);
    let ledger = &pool.running.ledger;
    let api = format!(
        "http://{}/api/v1/settlement",
        pool.running.api_address.expect("the miner API is served")
    );
    let alice = stack.miner("alice", 20_000.0);
    let bob = stack.miner("bob", 10_000.0);

    // Three epochs: the first two closed.
    wait_until(Duration::from_secs(180), "epoch 2 open", || async {
        ledger.epochs().await.is_ok_and(|e| e.len() >= 3)
    })
    .await?;
    stop.cancel();
    alice.task.await?;
    bob.task.await?;
    wait_until(
        WAIT,
        "every batch quoted and every block placed",
        || async {
            let quoted = ledger.open_batches().await.is_ok_and(|b| b.is_empty());
            let placed = ledger.found_blocks(100_000).await.is_ok_and(|blocks| {
                blocks.iter().all(|b| {
                    (b.status == BlockStatus::Pending && b.confirmations >= 1)
                        || b.status == BlockStatus::Orphaned
                })
            });
            quoted && placed
        },
    )
    .await?;

    // Every batch belongs to one epoch, and the epochs follow each other without gaps.
    let epochs = ledger.epochs().await?;
    for pair in epochs.windows(2) {
        assert_eq!(pair[0].end, Some(pair[1].start));
        assert!(
            pair[0].end.expect("closed").hashes()
                >= pair[0].start.hashes() + pair[0].length.hashes()
        );
    }

    // Before maturity nothing the blocks paid is final.
    let report: serde_json::Value = reqwest::get(&api).await?.json().await?;
    for e in report["epochs"].as_array().expect("epochs") {
        if e["pending_sats"].as_u64() > Some(0) {
            assert_eq!(e["state"], "closed", "{e}");
        }
    }

    // A hundred blocks on top: every block of the pool matures.
    tp.bury(100).await?;
    wait_until(WAIT, "every block matured or orphaned", || async {
        ledger.found_blocks(100_000).await.is_ok_and(|blocks| {
            blocks
                .iter()
                .all(|b| matches!(b.status, BlockStatus::Matured | BlockStatus::Orphaned))
        })
    })
    .await?;
    // Shares in flight when the miners stopped are credited and batched by now: every batch
    // quoted.
    wait_until(WAIT, "every batch quoted", || async {
        ledger.open_batches().await.is_ok_and(|b| b.is_empty())
    })
    .await?;
    let epochs = ledger.epochs().await?;
    let mut quoted_by_epoch = vec![0u64; epochs.len()];
    let mut alice_by_epoch = vec![0u64; epochs.len()];
    for key in ["alice", "bob"] {
        for batch in ledger.batches_of(&hashpool_e2e::test_key(key)).await? {
            assert!(batch.quote_id.is_some(), "{batch:?}");
            if let Some(e) = batch.epoch {
                quoted_by_epoch[e as usize] += batch.amount;
                if key == "alice" {
                    alice_by_epoch[e as usize] += batch.amount;
                }
            }
        }
    }
    // The miner API gives a key its ehash per epoch, newest first.
    let alice: serde_json::Value = reqwest::get(format!(
        "http://{}/api/v1/miners/{}",
        pool.running.api_address.expect("served"),
        hashpool_e2e::test_key("alice").to_hex()
    ))
    .await?
    .json()
    .await?;
    let listed: Vec<(usize, u64)> = alice["epochs"]
        .as_array()
        .expect("epochs")
        .iter()
        .map(|e| {
            (
                e["epoch"].as_u64().unwrap_or(0) as usize,
                e["ehash"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expected: Vec<(usize, u64)> = alice_by_epoch
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, &a)| a > 0)
        .map(|(e, &a)| (e, a))
        .collect();
    assert_eq!(listed, expected);
    assert!(
        quoted_by_epoch[0] > 0 && quoted_by_epoch[1] > 0,
        "{quoted_by_epoch:?}"
    );
    let blocks = ledger.found_blocks(100_000).await?;
    let report: serde_json::Value = reqwest::get(&api).await?.json().await?;
    let (rewards, fees, carry) = rewards_by_the_rules(&epochs, &blocks);
    let reported = report["epochs"].as_array().expect("epochs");
    assert_eq!(reported.len(), epochs.len());
    for (i, e) in reported.iter().enumerate() {
        assert_eq!(
            e["reward_sats"].as_u64().map(u128::from),
            Some(rewards[i]),
            "epoch {i}"
        );
        assert_eq!(e["pending_sats"], 0);
        assert_eq!(e["ehash_quoted"], quoted_by_epoch[i]);
    }
    assert_eq!(report["fees_sats"].as_u64().map(u128::from), Some(fees));
    assert_eq!(report["carry_sats"].as_u64().map(u128::from), Some(carry));
    // Nothing made or lost: the matured rewards are the epochs', the fees and the carry.
    let matured: u128 = blocks
        .iter()
        .filter(|b| b.status == BlockStatus::Matured)
        .map(|b| u128::from(b.value_sats.expect("recorded")))
        .sum();
    assert_eq!(rewards.iter().sum::<u128>() + fees + carry, matured);
    assert!(matured > 0);
    // Regtest's blocks are most shares: epoch 0 was paid by the blocks of the whole of epoch 1.
    // (Epoch 1's payers are epoch 2's blocks, and the miners stopped as it opened.)
    assert!(rewards[0] > 0, "{rewards:?}");
    // Epoch 0 is out of every later window (the pool's work is past its end by the open
    // epoch's length and 8 blocks' work) and every block that paid it matured: final, at its
    // reward over its ehash.
    let first = &reported[0];
    assert_eq!(first["state"], "final", "{first}");
    assert_eq!(
        first["rate"],
        serde_json::json!([rewards[0] as u64, quoted_by_epoch[0]])
    );
    assert!(work(&report["pool_work"]) >= work(&first["end_work"]));
    assert_eq!(reported.last().expect("open epoch")["state"], "open");
    // The final rates, signed with the pool's authority key; a changed one does not verify.
    let sheet: hashpool_settlement::rates::RateSheet =
        reqwest::get(format!("{api}/rates")).await?.json().await?;
    let pool_key = hashpool_e2e::public_key().into_bytes();
    sheet.verify(hashpool_settlement::rates::RATES_TAG, &pool_key)?;
    let signed = sheet
        .body
        .iter()
        .find(|r| r.epoch == 0)
        .expect("epoch 0 is final");
    assert_eq!(
        (u128::from(signed.reward_sats), signed.ehash),
        (rewards[0], quoted_by_epoch[0])
    );
    assert!(sheet
        .body
        .iter()
        .all(|r| reported[r.epoch as usize]["state"] == "final"));
    let mut tampered = sheet.clone();
    tampered.body[0].reward_sats += 1;
    assert!(tampered
        .verify(hashpool_settlement::rates::RATES_TAG, &pool_key)
        .is_err());

    // Epoch 0's quotes, committed to as a signed Merkle-sum root whose sum is its ehash; each
    // of alice's quotes proves its place in it. An open epoch has no commitment yet.
    use hashpool_settlement::{
        merkle_sum::{verify, Leaf, Proof},
        rates::{EpochCommitment, EPOCH_TAG},
    };
    let commitment: EpochCommitment = reqwest::get(format!("{api}/epochs/0"))
        .await?
        .json()
        .await?;
    commitment.verify(EPOCH_TAG, &pool_key)?;
    assert_eq!(commitment.body.root.sum, quoted_by_epoch[0]);
    assert_eq!(commitment.body.unanswered, 0);
    let alice_key = hashpool_e2e::test_key("alice");
    let mut proven = 0;
    for batch in ledger.batches_of(&alice_key).await? {
        if batch.epoch != Some(0) {
            continue;
        }
        let quote_id = batch.quote_id.expect("quoted");
        let answer: serde_json::Value = reqwest::get(format!("{api}/epochs/0/quotes/{quote_id}"))
            .await?
            .json()
            .await?;
        let leaf: Leaf = serde_json::from_value(answer["leaf"].clone())?;
        let proof: Proof = serde_json::from_value(answer["proof"].clone())?;
        assert_eq!(
            (leaf.id.as_str(), leaf.key.as_str(), leaf.amount),
            (quote_id.as_str(), alice_key.to_hex().as_str(), batch.amount)
        );
        assert!(verify(&leaf, &proof, &commitment.body.root));
        proven += batch.amount;
    }
    assert_eq!(proven, alice_by_epoch[0]);
    // The wallet's audit: alice's quotes, against what the pool publishes.
    let base = format!("http://{}", pool.running.api_address.expect("served"));
    let mut alice_quotes = Vec::new();
    for batch in ledger.batches_of(&alice_key).await? {
        alice_quotes.push((batch.quote_id.expect("quoted"), batch.amount));
    }
    let audited = hashpool_wallet_cli::audit::audit_quotes(
        &base,
        &pool_key,
        &alice_key.to_hex(),
        &alice_quotes,
    )
    .await?;
    assert!(audited.problems.is_empty(), "{audited:?}");
    let first_epoch = audited
        .epochs
        .iter()
        .find(|e| e.epoch == 0)
        .expect("alice mined in epoch 0");
    assert_eq!(first_epoch.ehash, alice_by_epoch[0]);
    assert_eq!(first_epoch.state, "final");
    assert_eq!(
        first_epoch.sats,
        Some(hashpool_settlement::redemption_sats(
            alice_by_epoch[0],
            rewards[0] as u64,
            quoted_by_epoch[0]
        )?)
    );
    // A pool that signs a richer rate than its blocks give, or commits its quotes to a smaller
    // total (a dearer rate), or whose quote proof was altered, fails the audit.
    use hashpool_settlement::audit::{audit, Published, QuoteAnswer, WalletQuote};
    let secret = hashpool_e2e::secret_key().into_bytes();
    let report: serde_json::Value = reqwest::get(&api).await?.json().await?;
    let mut wallet_quotes = Vec::new();
    for (id, amount) in &alice_quotes {
        let answer = reqwest::get(format!("{api}/quotes/{id}")).await?;
        let answer: Option<QuoteAnswer> = match answer.status().as_u16() {
            200 => Some(answer.json().await?),
            _ => None,
        };
        wallet_quotes.push(WalletQuote {
            id: id.clone(),
            amount: *amount,
            answer,
        });
    }
    let mut commitments = std::collections::BTreeMap::new();
    for epoch in wallet_quotes
        .iter()
        .filter_map(|q| q.answer.as_ref().map(|a| a.epoch))
    {
        if let std::collections::btree_map::Entry::Vacant(slot) = commitments.entry(epoch) {
            let signed: EpochCommitment = reqwest::get(format!("{api}/epochs/{epoch}"))
                .await?
                .json()
                .await?;
            slot.insert(signed);
        }
    }
    let honest = Published {
        report: report.clone(),
        sheet: sheet.clone(),
        commitments,
    };
    let problems = audit(&pool_key, &alice_key.to_hex(), &wallet_quotes, &honest).problems;
    assert!(problems.is_empty(), "{problems:?}");
    let mut richer = sheet.body.clone();
    richer[0].reward_sats += 1;
    let lying = Published {
        sheet: hashpool_settlement::rates::RateSheet::sign(
            hashpool_settlement::rates::RATES_TAG,
            &secret,
            richer,
        )?,
        ..honest.clone()
    };
    let found = audit(&pool_key, &alice_key.to_hex(), &wallet_quotes, &lying).problems;
    assert!(
        found
            .iter()
            .any(|p| p.contains("not what the published blocks give")),
        "{found:?}"
    );
    let mut fewer = commitment.body.clone();
    fewer.root.sum -= 1;
    let mut shrunk = honest.clone();
    shrunk
        .commitments
        .insert(0, EpochCommitment::sign(EPOCH_TAG, &secret, fewer)?);
    let found = audit(&pool_key, &alice_key.to_hex(), &wallet_quotes, &shrunk).problems;
    assert!(
        found.iter().any(|p| p.contains("not counted"))
            && found.iter().any(|p| p.contains("commit to")),
        "{found:?}"
    );
    let mut altered = wallet_quotes.clone();
    if let Some(a) = altered.iter_mut().find_map(|q| q.answer.as_mut()) {
        a.leaf.amount += 1;
    }
    let found = audit(&pool_key, &alice_key.to_hex(), &altered, &honest).problems;
    assert!(found.iter().any(|p| p.contains("not counted")), "{found:?}");

    let open = reqwest::get(format!("{api}/epochs/{}", epochs.len() - 1)).await?;
    assert_eq!(open.status(), reqwest::StatusCode::NOT_FOUND);
    let unknown = reqwest::get(format!("{api}/epochs/0/quotes/no-such-quote")).await?;
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    stack.stop().await?;
    Ok(())
}
