//! Settlement's chain awareness: the pool records each block it finds (height, reward, the
//! network's work, its own cumulative work) and follows it in the node's chain to maturity, or
//! off the best chain when a reorg takes it.

use std::time::Duration;

use hashpool_e2e::{init_tracing, json_rpc, wait_until, PoolOptions, Stack};
use pool::ledger::{BlockStatus, TrackedBlock};

const WAIT: Duration = Duration::from_secs(90);

/// A call the node must answer without an error: its result.
async fn rpc(
    url: &str,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let reply = json_rpc(&reqwest::Client::new(), url, method, params).await?;
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
    let url = format!("http://{}/", tp.running.http_address);
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
        let at_height = rpc(&url, "getblockhash", serde_json::json!([height])).await?;
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
        &url,
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
    let address = bitcoin::Address::p2wsh(
        &bitcoin::ScriptBuf::new_op_return([9u8; 4]),
        bitcoin::KnownHrp::Regtest,
    );
    rpc(
        &url,
        "generatetoaddress",
        serde_json::json!([100, address.to_string()]),
    )
    .await?;
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
