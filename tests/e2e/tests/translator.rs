//! SV1 miners through the translator: two SV1 CPU miners share one extended channel on the
//! pool; their shares are accepted by the pool, and every share a miner was told was accepted
//! is one the pool accepted (and accrued to the translator's key).

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    init_tracing, loopback_any_port, public_key, test_key, wait_until, PoolOptions, TestPool,
    TestProvider,
};
use mining_device_sv1::Sv1MinerOptions;
use tokio_util::sync::CancellationToken;

const HARD_NBITS: u32 = 0x1e0f_ffff;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv1_miners_mine_on_the_pool_and_hear_only_the_pools_verdicts() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 300).await?;
    let pool = TestPool::start(
        tp.running.listen_address,
        PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 3,
            ..Default::default()
        },
    )
    .await?;
    let key = test_key("translator");
    let stop = CancellationToken::new();
    let translator = translator::start(
        translator::TranslatorRunConfig {
            downstream_address: loopback_any_port(),
            upstream_address: pool.address(),
            upstream_authority_public_key: public_key(),
            user_identity: "translator-test".into(),
            nominal_hashrate: 60_000.0,
            locking_key: Some(key),
        },
        stop.clone(),
    )
    .await?;
    let miners_stop = CancellationToken::new();
    let miners: Vec<_> = ["rig1", "rig2"]
        .iter()
        .map(|u| {
            mining_device_sv1::start(
                Sv1MinerOptions {
                    address: translator.downstream_address,
                    user: format!("alice.{u}"),
                    threads: 1,
                    limit_hashrate: Some(30_000.0),
                },
                miners_stop.clone(),
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(90),
        "both SV1 miners' shares accepted",
        || async {
            miners
                .iter()
                .all(|m| m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3)
        },
    )
    .await?;
    miners_stop.cancel();
    let mut acked = 0;
    let mut rejected = 0;
    for m in miners {
        let stats = m.stats.clone();
        m.task.await?;
        acked += stats.shares_acknowledged.load(Ordering::Relaxed);
        rejected += stats.shares_rejected.load(Ordering::Relaxed);
    }
    // Every "accepted" a miner heard is a share the pool accepted for the translator's key.
    let ledger = pool.running.context.shares.ledger().clone();
    let accrued = ledger.accrual(&key).await?.expect("accrued").shares;
    assert!(acked >= 6);
    assert!(
        acked <= accrued,
        "miners told {acked} accepted, pool accepted {accrued}"
    );
    assert_eq!(rejected, 0);
    let stats = pool.running.context.stats.snapshot();
    assert_eq!(stats.shares_without_job_target, 0);
    stop.cancel();
    translator.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
