//! From accrued work to announced quotes, against a scripted mint: one request per key per
//! batch, exact amounts with the remainder carried, announcements reaching the miners,
//! unanswered requests resent with the same id after the mint reconnects, refused batches'
//! work returned to pending and issued later, and a mint with the wrong key refused.

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    fake_mint::{mint_secret, Answer, Answers, FakeMint},
    init_tracing, miner_options, test_key, wait_until, PoolOptions, Stack,
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
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(options())
        .start()
        .await?;
    let pool = &stack.pool;
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
    let ledger = pool.running.ledger.clone();
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

    let unit = pool.running.config.unit_work.work().hashes();
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
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_go_again_with_the_same_id_when_a_mint_returns() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(options())
        .start()
        .await?;
    let pool = &stack.pool;
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
    let ledger = &pool.running.ledger;
    for b in ledger.batches_of(&test_key("kim")).await? {
        if unanswered.contains(&b.request_id) {
            assert!(b.quote_id.is_some(), "batch {} still unanswered", b.id);
        }
    }

    stop.cancel();
    miner.task.await?;
    mint.close().await;
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_with_another_key_is_refused() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(options())
        .start()
        .await?;
    let pool = &stack.pool;
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
    stack.stop().await?;
    Ok(())
}

/// What the ledger says of one key, read so that the figures belong together: the accrual
/// before and after the batches, equal (no share or batch in between), and no batch open.
struct Settled {
    accrual: pool::ledger::KeyAccrual,
    batches: Vec<pool::ledger::Batch>,
}

async fn settled(
    ledger: &pool::ledger::AccrualLedger,
    key: &ext_mint_quote::LockingKey,
    unit: u128,
) -> anyhow::Result<Option<Settled>> {
    let Some(before) = ledger.accrual(key).await? else {
        return Ok(None);
    };
    let batches = ledger.batches_of(key).await?;
    let open = ledger.open_batches().await?;
    let after = ledger.accrual(key).await?;
    let quiet = after == Some(before)
        && open.is_empty()
        && before.pending.hashes() < unit
        && batches
            .iter()
            .all(|b| b.quote_id.is_some() || b.refused_code.is_some());
    Ok(quiet.then_some(Settled {
        accrual: before,
        batches,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_batches_the_mint_refuses_goes_back_to_pending_and_is_issued_later(
) -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(options())
        .start()
        .await?;
    let pool = &stack.pool;
    // Refused for good: a retry of the same request cannot succeed (SPEC.md, error codes).
    let code = ext_mint_quote::error_code::AMOUNT_OUT_OF_RANGE;
    let refusals = 2;
    let mint = FakeMint::connect_with(
        pool.running.mint_link_address,
        mint_secret(),
        Answers::RefuseFirst {
            n: refusals,
            code: code.into(),
        },
    )
    .await?;
    let stop = CancellationToken::new();
    let user = "lea";
    let key = test_key(user);
    let miner = mining_device::start(
        miner_options(pool.address(), user, 40_000.0, true),
        stop.clone(),
    );
    let ledger = pool.running.ledger.clone();
    let stats = pool.running.stats.clone();

    // The first batches are refused, and counted by code.
    wait_until(Duration::from_secs(60), "the refusals counted", || async {
        stats.snapshot().batches_refused.amount_out_of_range >= refusals as u64
    })
    .await?;
    // Later batches, carrying the refused work, are quoted and announced to the miner.
    wait_until(
        Duration::from_secs(60),
        "quotes announced after the refusals",
        || async { miner.stats.quotes_announced.load(Ordering::Relaxed) >= 2 },
    )
    .await?;
    stop.cancel();
    miner.task.await?;

    let unit = pool.running.config.unit_work.work().hashes();
    // Shares already in the pool are still committed and batched: wait until nothing moves.
    wait_until(
        Duration::from_secs(30),
        "every batch answered and no whole unit pending",
        || async { settled(&ledger, &key, unit).await.ok().flatten().is_some() },
    )
    .await?;
    let Settled { accrual, batches } = settled(&ledger, &key, unit).await?.expect("settled");

    let snapshot = stats.snapshot().batches_refused;
    assert_eq!(
        (
            snapshot.amount_out_of_range,
            snapshot.invalid_locking_key,
            snapshot.unit_mismatch,
            snapshot.other
        ),
        (refusals as u64, 0, 0, 0),
        "each refusal counted once, under its code"
    );
    let refused: Vec<_> = batches
        .iter()
        .filter(|b| b.refused_code.is_some())
        .collect();
    let answered: Vec<_> = batches.iter().filter(|b| b.quote_id.is_some()).collect();
    assert_eq!(refused.len(), refusals, "the first batches were refused");
    assert!(refused
        .iter()
        .all(|b| b.refused_code.as_deref() == Some(code)));
    assert!(
        refused.iter().all(|b| b.quote_id.is_none()),
        "a refused batch has no quote"
    );
    assert!(refused.iter().all(|b| b.amount > 0));
    // The refused work went into batches created after the refusals.
    let last_refused = refused.iter().map(|b| b.id).max().expect("refused");
    assert!(answered.iter().any(|b| b.id > last_refused));

    // Nothing lost: the answered batches issued every unit of the work, the refused work
    // included; the rest (under a unit) is pending. Share rows agree with the accrual.
    let (rows, shares) = ledger.share_work(&key).await?;
    assert_eq!(accrual.total, rows);
    assert_eq!(accrual.shares, shares);
    let issued: u64 = answered.iter().map(|b| b.amount).sum();
    let refused_amount: u64 = refused.iter().map(|b| b.amount).sum();
    assert_eq!(
        issued as u128 * unit + accrual.pending.hashes(),
        accrual.total.hashes(),
        "issued {issued} units ({refused_amount} of them refused once) + pending = all the work"
    );
    assert!(
        issued >= refused.iter().map(|b| b.amount).max().unwrap_or(0),
        "the refused work was issued later"
    );
    // Every share went into an answered batch, or is still waiting for the next one.
    assert!(answered.iter().map(|b| b.share_count as u64).sum::<u64>() <= shares);

    // The mint: each request id answered one way only (a resend gets the same answer), the
    // refused ones never quoted, each quoted one exactly its batch.
    let answers = mint.answers.lock().unwrap().clone();
    let mut first: std::collections::HashMap<[u8; 32], Answer> = Default::default();
    for (id, a) in &answers {
        let was = first.entry(*id).or_insert_with(|| a.clone());
        assert_eq!(was, a, "request {} answered two ways", hex(id));
    }
    let refused_ids: HashSet<[u8; 32]> = first
        .iter()
        .filter(|(_, a)| matches!(a, Answer::Refused { .. }))
        .map(|(id, _)| *id)
        .collect();
    let quoted_ids: HashSet<[u8; 32]> = first
        .iter()
        .filter(|(_, a)| matches!(a, Answer::Quote { .. }))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        refused_ids,
        refused.iter().map(|b| b.request_id).collect::<HashSet<_>>()
    );
    assert_eq!(
        quoted_ids,
        answered
            .iter()
            .map(|b| b.request_id)
            .collect::<HashSet<_>>()
    );
    let batch_ids: HashSet<[u8; 32]> = batches.iter().map(|b| b.request_id).collect();
    assert_eq!(
        batch_ids.len(),
        batches.len(),
        "a fresh request id per batch"
    );
    for b in &answered {
        let Some(Answer::Quote { quote_id, amount }) = first.get(&b.request_id) else {
            panic!("batch {} answered without a quote", b.id);
        };
        assert_eq!(b.quote_id.as_deref(), Some(quote_id.as_str()));
        assert_eq!(*amount, b.amount);
    }
    // Announced to the miner: only quoted ehash, never a refused batch's.
    let announced = miner.stats.ehash_announced.load(Ordering::Relaxed);
    assert!(
        announced > 0 && announced <= issued,
        "announced {announced}, issued {issued}"
    );

    mint.close().await;
    stack.stop().await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
