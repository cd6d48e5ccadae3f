//! From accrued work to announced quotes, against a scripted mint: one request per key per
//! batch, exact amounts with the remainder carried, announcements reaching the miners,
//! unanswered requests resent with the same id after the mint reconnects, and a mint with the
//! wrong key refused.

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    fake_mint::{mint_secret, FakeMint},
    init_tracing, loopback_any_port, miner_options, test_key, wait_until, PoolOptions, TestPool,
    TestProvider,
};
use tokio_util::sync::CancellationToken;

const HARD_NBITS: u32 = 0x1e0f_ffff;

fn options() -> PoolOptions {
    PoolOptions {
        shares_per_minute: 120.0,
        share_batch_size: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accrued_work_becomes_quotes_announced_to_the_miners() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    let mint = FakeMint::connect(pool.running.mint_link_address, mint_secret(), true).await?;
    let stop = CancellationToken::new();
    let users = ["ivy", "jack"];
    let miners: Vec<_> = users
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
        "quotes announced to both miners",
        || async {
            miners
                .iter()
                .all(|m| m.stats.quotes_announced.load(Ordering::Relaxed) >= 2)
        },
    )
    .await?;
    stop.cancel();
    let announced: Vec<u64> = miners
        .iter()
        .map(|m| m.stats.ehash_announced.load(Ordering::Relaxed))
        .collect();
    for m in miners {
        m.task.await?;
    }
    let ledger = pool.running.context.shares.ledger().clone();
    // Let the last batch be created and answered.
    wait_until(Duration::from_secs(10), "every batch answered", || async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        ledger
            .open_batches()
            .await
            .map(|b| b.is_empty())
            .unwrap_or(false)
    })
    .await?;

    let unit = pool.running.context.config.unit_work.work().hashes();
    let requests = mint.requests.lock().unwrap().clone();
    for (user, announced) in users.iter().zip(announced) {
        let key = test_key(user);
        let accrual = ledger.accrual(&key).await?.expect("accrued");
        let batches = ledger.batches_of(&key).await?;
        let issued: u64 = batches.iter().map(|b| b.amount).sum();
        // Nothing lost to rounding: issued units plus the carried remainder are all the work.
        assert_eq!(
            issued as u128 * unit + accrual.pending.hashes(),
            accrual.total.hashes(),
            "{user}"
        );
        assert!(
            accrual.pending.hashes() < unit,
            "{user}: a whole unit left unissued"
        );
        // Every batch was answered, and the miner was told of the quotes it was online for.
        assert!(batches.iter().all(|b| b.quote_id.is_some()));
        assert!(
            announced > 0 && announced <= issued,
            "{user}: announced {announced}, issued {issued}"
        );
        // The mint saw exactly these batches: one request id each, with the batch's amount.
        let seen: Vec<_> = requests
            .iter()
            .filter(|r| r.locking_key.as_bytes() == key.as_bytes())
            .collect();
        let ids: HashSet<[u8; 32]> = seen.iter().map(|r| r.request_id.to_array()).collect();
        assert_eq!(ids.len(), batches.len(), "{user}");
        for b in &batches {
            let r = seen
                .iter()
                .find(|r| r.request_id.to_array() == b.request_id)
                .expect("requested");
            assert_eq!(r.amount, b.amount);
            assert_eq!(r.share_count, b.share_count);
            assert_eq!(hashpool_sv2_io::text(&r.unit), "hash");
        }
        // Batches group many shares: far fewer requests than shares.
        assert!(batches.len() as u64 <= accrual.shares, "{user}");
    }
    mint.close().await;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_go_again_with_the_same_id_when_a_mint_returns() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    let stop = CancellationToken::new();
    let miner = mining_device::start(
        miner_options(pool.address(), "kim", 40_000.0, true),
        stop.clone(),
    );

    // A mint that takes requests and never answers, then goes away.
    let silent = FakeMint::connect(pool.running.mint_link_address, mint_secret(), false).await?;
    wait_until(
        Duration::from_secs(60),
        "requests to the silent mint",
        || async { silent.request_count() >= 2 },
    )
    .await?;
    let unanswered: HashSet<[u8; 32]> = silent
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.request_id.to_array())
        .collect();
    silent.close().await;
    assert_eq!(miner.stats.quotes_announced.load(Ordering::Relaxed), 0);

    // Another mint connects: every unanswered request arrives again, same id, and is answered.
    let mint = FakeMint::connect(pool.running.mint_link_address, mint_secret(), true).await?;
    wait_until(
        Duration::from_secs(30),
        "the unanswered requests to be resent",
        || async {
            let seen: HashSet<[u8; 32]> = mint
                .requests
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.request_id.to_array())
                .collect();
            unanswered.is_subset(&seen)
        },
    )
    .await?;
    wait_until(
        Duration::from_secs(30),
        "announcements to the miner",
        || async {
            miner.stats.quotes_announced.load(Ordering::Relaxed) >= unanswered.len() as u64
        },
    )
    .await?;
    let ledger = pool.running.context.shares.ledger();
    for b in ledger.batches_of(&test_key("kim")).await? {
        if unanswered.contains(&b.request_id) {
            assert!(b.quote_id.is_some(), "batch {} still unanswered", b.id);
        }
    }

    stop.cancel();
    miner.task.await?;
    mint.close().await;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_with_another_key_is_refused() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    let impostor = FakeMint::connect(pool.running.mint_link_address, [7u8; 32], true).await?;
    wait_until(
        Duration::from_secs(15),
        "the pool to close the impostor's link",
        || async { impostor.is_closed() },
    )
    .await?;
    assert_eq!(impostor.request_count(), 0);
    // The real mint is still welcome.
    let mint = FakeMint::connect(pool.running.mint_link_address, mint_secret(), true).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!mint.is_closed());
    mint.close().await;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
