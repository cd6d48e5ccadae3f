//! The accrual ledger under real mining: every acknowledged share is durable in it, per-key
//! totals equal the work of that key's share rows and the pool's own exact work, and they
//! survive a pool restart.

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    init_tracing, miner_options, test_key, wait_until, PoolOptions, Running, Stack, TestPool,
};
use pool::ledger::AccrualLedger;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_work_is_in_the_ledger_and_survives_a_restart() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let ledger_path = dir.path().join("pool/ledger.sqlite");
    let options = || PoolOptions {
        shares_per_minute: 120.0,
        share_batch_size: 3,
        ledger_path: ledger_path.clone(),
        ..Default::default()
    };
    // A harder network target than regtest's keeps most shares from being blocks. The pool is
    // stopped and started again on its ledger: the test holds the stack's parts.
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        stop,
        ..
    } = Stack::new()
        .nbits(0x1e0f_ffff)
        .with_pool(options())
        .start()
        .await?;
    let miners: Vec<_> = ["gina", "hank"]
        .iter()
        .map(|u| {
            mining_device::start(
                miner_options(pool.address(), u, 40_000.0, true),
                stop.clone(),
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(90),
        "both miners to have shares acknowledged",
        || async {
            miners
                .iter()
                .all(|m| m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 6)
        },
    )
    .await?;

    // While mining: whatever a miner was told was accepted is already in the ledger.
    let ledger = pool.running.ledger.clone();
    for (m, user) in miners.iter().zip(["gina", "hank"]) {
        let acknowledged = m.stats.shares_acknowledged.load(Ordering::Relaxed);
        let accrual = ledger.accrual(&test_key(user)).await?.expect("accrued");
        assert!(
            accrual.shares >= acknowledged,
            "{user}: {acknowledged} acknowledged but only {} in the ledger",
            accrual.shares
        );
    }

    stop.cancel();
    for m in miners {
        m.task.await?;
    }
    // Every share the pool counted is in the ledger (the last ones are committed as their
    // connections close).
    wait_until(
        Duration::from_secs(30),
        "the ledger to hold every accepted share",
        || async {
            let mut in_ledger = 0;
            for user in ["gina", "hank"] {
                if let Ok(Some(a)) = ledger.accrual(&test_key(user)).await {
                    in_ledger += a.shares;
                }
            }
            in_ledger == pool.running.stats.snapshot().shares_accepted
        },
    )
    .await?;
    let exact = pool.running.stats.snapshot();
    let config = &pool.running.config;
    let (unit_name, unit_work) = (config.unit.clone(), config.unit_work);
    let unit = unit_work.work().hashes();
    pool.stop().await?;

    // Reopened from disk: totals equal the share rows, and all of it equals the pool's work.
    let ledger = AccrualLedger::open(&ledger_path, &unit_name, unit_work).await?;
    let mut total = 0u128;
    let mut shares = 0u64;
    for user in ["gina", "hank"] {
        let accrual = ledger.accrual(&test_key(user)).await?.expect("accrued");
        let (rows_work, rows) = ledger.share_work(&test_key(user)).await?;
        assert_eq!(accrual.total, rows_work, "{user}");
        // What the batcher took out as whole units plus what is pending is all of it (a batch
        // the mint refused gave its work back to pending).
        let issued: u64 = ledger
            .batches_of(&test_key(user))
            .await?
            .iter()
            .filter(|b| b.refused_code.is_none())
            .map(|b| b.amount)
            .sum();
        assert_eq!(
            issued as u128 * unit + accrual.pending.hashes(),
            rows_work.hashes(),
            "{user}"
        );
        assert_eq!(accrual.shares, rows, "{user}");
        total += accrual.total.hashes();
        shares += accrual.shares;
    }
    assert_eq!(shares, exact.shares_accepted);
    assert_eq!(total, exact.work_accepted_hashes);

    // A restarted pool keeps accruing on top.
    drop(ledger);
    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    let stop = CancellationToken::new();
    let miner = mining_device::start(
        miner_options(pool.address(), "gina", 40_000.0, true),
        stop.clone(),
    );
    wait_until(
        Duration::from_secs(60),
        "new shares after the restart",
        || async { miner.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3 },
    )
    .await?;
    stop.cancel();
    miner.task.await?;
    let after = pool
        .running
        .ledger
        .accrual(&test_key("gina"))
        .await?
        .expect("accrued");
    let (rows_work, _) = pool.running.ledger.share_work(&test_key("gina")).await?;
    assert!(after.total.hashes() > 0 && after.total == rows_work);
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}

/// A ledger records the unit work it was written with: a pool configured with another one
/// refuses to start on it (all pending work would be repriced) and says how to migrate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_refuses_a_ledger_written_with_another_unit_work() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let ledger_path = dir.path().join("pool/ledger.sqlite");
    let options = |unit_work: f64| PoolOptions {
        ledger_path: ledger_path.clone(),
        unit_work,
        ..Default::default()
    };
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        ..
    } = Stack::new()
        .nbits(0x1e0f_ffff)
        .with_pool(options(1e-6))
        .start()
        .await?;
    pool.stop().await?;

    let err = match TestPool::start(tp.running.listen_address, options(2e-6)).await {
        Ok(_) => anyhow::bail!("the pool started on a ledger written with another unit_work"),
        Err(e) => format!("{e:#}"),
    };
    for part in ["unit_work", "ehash.unit_work", "pool.ledger_path"] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }

    // With the recorded value set back, it starts again on the same ledger.
    let pool = TestPool::start(tp.running.listen_address, options(1e-6)).await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
