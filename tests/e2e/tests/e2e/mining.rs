//! Template provider + pool + SV2 CPU miner on 127.0.0.1: shares accepted, blocks found and
//! connected, vardiff, and a template provider restart under running miners.

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    free_address, init_tracing, miner_options, wait_until, PoolOptions, Running, Stack,
    TestProvider, REGTEST_NBITS,
};
use mining_device::MinerStats;

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    MinerStats::get(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miner_finds_blocks_that_the_chain_connects() -> anyhow::Result<()> {
    init_tracing();
    // Synthetic mempool transactions, so blocks carry more than a coinbase.
    let stack = Stack::new()
        .mempool_tx_every_ms(100)
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            ..Default::default()
        })
        .start()
        .await?;
    let (tp, pool, stop) = (&stack.tp, &stack.pool, &stack.stop);
    let miner = stack.miner("alice", 20_000.0);

    wait_until(
        Duration::from_secs(90),
        "3 accepted shares and 2 blocks",
        || async {
            pool.shares_accepted().await >= 3
                && tp.status().await.map(|s| s.height >= 2).unwrap_or(false)
        },
    )
    .await?;

    let status = tp.status().await?;
    assert!(status.blocks_connected >= 2, "{status:?}");
    // Every connected block is on our chain with the pool's coinbase; some carry mempool txs.
    let mut with_txs = 0;
    for h in 1..=status.height {
        let url = format!("http://{}/blocks/{h}", tp.running.http_address);
        let block: serde_json::Value = reqwest::get(url).await?.json().await?;
        let txids = block["txids"].as_array().expect("txids").len();
        if txids > 1 {
            with_txs += 1;
        }
        assert!(block["coinbase_value_sats"].as_u64().unwrap() > 0);
    }
    assert!(with_txs >= 1, "no block carried mempool transactions");

    // The miner was told its shares were accepted (batch size 1: one Success per share).
    assert!(get(&miner.stats.shares_acknowledged) >= 3);
    let channels = pool.standard_channels().await?;
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].user_identity, "alice");
    assert!(channels[0].blocks_found >= 2, "{:?}", channels[0]);

    stop.cancel();
    miner.task.await?;
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vardiff_moves_the_target_toward_the_configured_rate() -> anyhow::Result<()> {
    init_tracing();
    // A harder network target than regtest's, so shares are shares and not all blocks.
    let stack = Stack::new().nbits(0x1e0f_ffff).start().await?;
    let (pool, stop) = (&stack.pool, &stack.stop);
    // Announces 1 kH/s but hashes as fast as it can: far more shares than 6 a minute.
    let miner = stack.start_miner(miner_options(pool.address(), "fast", 1_000.0, false));
    wait_until(Duration::from_secs(30), "first shares", || async {
        pool.shares_accepted().await >= 5
    })
    .await?;
    let before = pool.standard_channels().await?[0].clone();

    // Vardiff acts once more than 15 s of shares are in.
    wait_until(
        Duration::from_secs(60),
        "vardiff to raise the difficulty",
        || async {
            get(&miner.stats.set_targets) >= 1
                && pool
                    .standard_channels()
                    .await
                    .map(|c| c[0].nominal_hashrate > 10.0 * before.nominal_hashrate)
                    .unwrap_or(false)
        },
    )
    .await?;
    let after = pool.standard_channels().await?[0].clone();
    // Big-endian hex of equal length: a smaller string is a smaller (harder) target.
    assert_eq!(before.target_hex.len(), after.target_hex.len());
    assert!(
        after.target_hex < before.target_hex,
        "target did not get harder: {} -> {}",
        before.target_hex,
        after.target_hex
    );

    // The pool's exact work (from each share's job target) agrees with the difficulty
    // channels_sv2 credited share by share, across the target change.
    stop.cancel();
    miner.task.await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exact = pool.running.stats.snapshot();
    let credited: f64 = pool
        .running
        .registry
        .connections()
        .iter()
        .flat_map(|set| {
            let set = set.lock().unwrap();
            set.channels()
                .values()
                .map(|e| e.channel().share_accounting().get_share_work_sum())
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(exact.shares_accepted > 0);
    let relative = (exact.work_accepted - credited).abs() / credited;
    assert!(
        relative < 1e-6,
        "exact work {} vs credited {credited} (relative difference {relative})",
        exact.work_accepted
    );

    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_stay_connected_while_the_template_provider_restarts() -> anyhow::Result<()> {
    init_tracing();
    let tp_address = free_address();
    // The provider is stopped and started again on the same chain: the test holds its parts.
    let Running {
        dir,
        tp,
        pool,
        stop,
        ..
    } = Stack::new()
        .provider_address(tp_address)
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            ..Default::default()
        })
        .start()
        .await?;
    let miner = mining_device::start(
        miner_options(pool.address(), "bob", 20_000.0, true),
        stop.clone(),
    );
    wait_until(
        Duration::from_secs(60),
        "a block before the restart",
        || async { tp.status().await.map(|s| s.height >= 1).unwrap_or(false) },
    )
    .await?;
    let height_before = tp.status().await?.height;
    let first_block = reqwest::get(format!("http://{}/blocks/1", tp.running.http_address))
        .await?
        .text()
        .await?;

    tp.stop().await?;
    wait_until(
        Duration::from_secs(10),
        "the pool to notice the provider is gone",
        || async { !pool.running.stats.snapshot().provider_connected },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The miner is still on its one connection.
    assert!(miner.stats.connected.load(Ordering::Relaxed));
    assert_eq!(get(&miner.stats.connections), 1);
    let jobs_before = get(&miner.stats.jobs);
    let shares_before = pool.shares_accepted().await;

    let tp = TestProvider::start(&dir.path().join("chain"), tp_address, REGTEST_NBITS, 0).await?;
    // The chain continued from disk.
    let status = tp.status().await?;
    assert!(status.height >= height_before, "{status:?}");
    let same_first = reqwest::get(format!("http://{}/blocks/1", tp.running.http_address))
        .await?
        .text()
        .await?;
    assert_eq!(first_block, same_first);

    wait_until(
        Duration::from_secs(60),
        "new jobs and shares after the restart",
        || async {
            get(&miner.stats.jobs) > jobs_before && pool.shares_accepted().await > shares_before
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(60),
        "a block on the restarted provider",
        || async {
            tp.status()
                .await
                .map(|s| s.blocks_connected >= 1)
                .unwrap_or(false)
        },
    )
    .await?;
    assert_eq!(
        get(&miner.stats.connections),
        1,
        "the miner had to reconnect"
    );

    stop.cancel();
    miner.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
