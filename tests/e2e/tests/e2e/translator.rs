//! SV1 miners through the translator: two SV1 CPU miners share one extended channel on the
//! pool, each at its own difficulty (vardiff); every share the translator forwarded and reported
//! accepted is one the pool accepted, and the translator's wallet ends up with exactly the ehash
//! of the work the pool accepted from it. In channel-per-miner mode each miner has its own
//! channel, every share it is told was accepted is the pool's, and vardiff retargets the channel.

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, open_wallet, sv1_miner_options, test_key,
    wait_until, PoolOptions, Running, Stack, TestPool,
};
use tokio_util::sync::CancellationToken;
use translator::{ChannelMode, TranslatorStats};

const HARD_NBITS: u32 = 0x1e0f_ffff;

/// Refusals an honest miner hears: its share's job went stale under it (a block found, the
/// translator's answer or the pool's).
fn stale_refusals(s: &TranslatorStats) -> u64 {
    TranslatorStats::get(&s.shares_refused_stale)
        + TranslatorStats::get(&s.shares_refused_upstream_stale)
}

/// Refusals no honest miner should get: whatever the translator refused but stale shares, and
/// whatever the pool judged and refused but stale shares (shares nobody judged, because their
/// miner or channel went first, are not refusals of anyone's work).
fn wrong_refusals(s: &TranslatorStats) -> u64 {
    let get = TranslatorStats::get;
    let here = get(&s.shares_refused_here).saturating_sub(get(&s.shares_refused_stale));
    let by_pool = get(&s.shares_refused_upstream)
        .saturating_sub(get(&s.shares_refused_upstream_stale))
        .saturating_sub(get(&s.shares_unjudged_upstream));
    here + by_pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv1_miners_mine_on_the_pool_and_hear_only_the_pools_verdicts() -> anyhow::Result<()> {
    init_tracing();
    // The translator mines into the wallet's key and mints with its minter. Its miners start
    // at a difficulty under the channel's (the default floor's, 1e-6; 1 kH/s would be lower):
    // most of their shares are answered by the translator itself until vardiff raises their
    // difficulty.
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .mempool_tx_every_ms(300)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 3,
            ..Default::default()
        })
        .with_wallet()
        .with_translator("translator-test", 1_000.0, |_| {})
        .start()
        .await?;
    let (tp, pool, mint, stop) = (&stack.tp, &stack.pool, stack.mint(), &stack.stop);
    let (wallet, minter) = (stack.wallet(), stack.minter());
    let wallet_dir = stack.dir.path().join("wallet");
    let key = wallet.sv2_locking_key();
    let translator = &stack.translator().running;
    let miners_stop = CancellationToken::new();
    let miners: Vec<_> = ["rig1", "rig2"]
        .iter()
        .map(|u| {
            mining_device_sv1::start(
                sv1_miner_options(
                    translator.downstream_address,
                    &format!("alice.{u}"),
                    30_000.0,
                ),
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
    let stats = translator.stats.clone();
    wait_until(
        Duration::from_secs(90),
        "vardiff to raise both miners' difficulty",
        || async { TranslatorStats::get(&stats.vardiff_updates) >= 2 },
    )
    .await?;
    assert!(miners
        .iter()
        .all(|m| m.stats.set_targets.load(Ordering::Relaxed) >= 2));
    miners_stop.cancel();
    let mut acked = 0;
    let mut rejected = 0;
    for m in miners {
        let stats = m.stats.clone();
        m.task.await?;
        acked += stats.shares_acknowledged.load(Ordering::Relaxed);
        rejected += stats.shares_rejected.load(Ordering::Relaxed);
    }
    // Every forwarded share reported accepted is one the pool accepted for the translator's key;
    // the others were valid at the miner's difficulty but under the channel's.
    let ledger = pool.running.ledger.clone();
    let accrued = ledger.accrual(&key).await?.expect("accrued").shares;
    let by_pool = TranslatorStats::get(&stats.shares_accepted_by_pool);
    let below = TranslatorStats::get(&stats.shares_below_channel_target);
    assert!(acked >= 6);
    assert!(
        below > 0,
        "the miners' own difficulty was under the channel's"
    );
    assert!(by_pool > 0);
    assert!(
        by_pool <= accrued,
        "translator reported {by_pool} accepted by the pool, pool accepted {accrued}"
    );
    assert!(acked <= by_pool + below, "{acked} > {by_pool} + {below}");
    // Every refusal a miner heard is one the translator counted: its own (stale, duplicate...)
    // or the pool's verdict. The only honest ones are shares that crossed a new tip (the miners
    // find blocks at this difficulty): without a block, nothing is refused.
    let refused_upstream = TranslatorStats::get(&stats.shares_refused_upstream);
    let refused_here = TranslatorStats::get(&stats.shares_refused_here);
    assert_eq!(rejected, refused_upstream + refused_here);
    assert_eq!(wrong_refusals(&stats), 0, "{stats:?}");
    assert!(
        rejected <= stale_refusals(&stats),
        "{rejected} refused: {stats:?}"
    );
    if tp.status().await?.height == 0 {
        assert_eq!(rejected, 0);
    }
    let stats = pool.running.stats.snapshot();
    assert_eq!(stats.shares_without_job_target, 0);

    // The translator's wallet holds exactly the ehash of the work accepted from it.
    let unit = pool.running.config.unit_work.work().hashes();
    pool.wait_until_settled(&key, Duration::from_secs(20))
        .await?;
    let issued: u64 = ledger
        .batches_of(&key)
        .await?
        .iter()
        .map(|b| b.amount)
        .sum();
    let (work, _) = ledger.share_work(&key).await?;
    assert_eq!(issued as u128, work.hashes() / unit);
    assert!(issued > 0);
    wait_until(
        Duration::from_secs(20),
        "the wallet holds every quote",
        || async {
            let _ = wallet.recover().await;
            wallet.balance().await.is_ok_and(|b| b == issued)
        },
    )
    .await?;
    assert!(minter.stats().quotes_minted.load(Ordering::Relaxed) > 0);

    // The wallet over HTTP; its spending routes need the token from the wallet's token file.
    let token_path = translator::wallet_api::default_token_path(&wallet_dir.join("w"));
    let token = translator::wallet_api::ApiToken::load_or_create(&token_path)?;
    let (api, _) = translator::wallet_api::serve(
        loopback_any_port(),
        wallet.clone(),
        translator::wallet_api::FaucetSettings {
            amount: 2,
            interval: Duration::from_secs(3600),
        },
        token.clone(),
        stop.clone(),
    )
    .await?;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{api}/api/v1/{p}");
    let bearer = format!("Bearer {}", token.secret());
    // Without the token, or with another, nothing is spent: 401 with a JSON error.
    for (auth, what) in [
        (None, "no token"),
        (Some("Bearer 00ff".to_string()), "wrong"),
    ] {
        for route in ["tokens", "faucet"] {
            let mut r = http
                .post(url(route))
                .json(&serde_json::json!({"amount": 1}));
            if let Some(auth) = &auth {
                r = r.header("Authorization", auth);
            }
            let r = r.send().await?;
            assert_eq!(r.status().as_u16(), 401, "{what} on {route}");
            let e: serde_json::Value = r.json().await?;
            assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        }
    }
    assert_eq!(wallet.balance().await?, issued);
    let balance: serde_json::Value = http.get(url("balance")).send().await?.json().await?;
    assert_eq!(balance["balance"], issued);
    assert_eq!(balance["locking_key"], wallet.locking_key().to_hex());
    // Another site's page cannot spend the wallet: a foreign Origin or Host is refused.
    let foreign = http
        .post(url("faucet"))
        .header("Origin", "http://evil.example")
        .send()
        .await?;
    assert_eq!(foreign.status().as_u16(), 403);
    let rebound = http
        .post(url("tokens"))
        .header("Host", "evil.example:8083")
        .json(&serde_json::json!({"amount": 1}))
        .send()
        .await?;
    assert_eq!(rebound.status().as_u16(), 403);
    let history: serde_json::Value = http
        .get(url("history?limit=1000"))
        .send()
        .await?
        .json()
        .await?;
    let items = history["issuance"].as_array().unwrap();
    assert!(!items.is_empty());
    assert_eq!(
        items
            .iter()
            .map(|i| i["amount"].as_u64().unwrap())
            .sum::<u64>(),
        issued
    );
    // A token of 3 goes to a fresh wallet.
    let r: serde_json::Value = http
        .post(url("tokens"))
        .header("Authorization", &bearer)
        .json(&serde_json::json!({"amount": 3}))
        .send()
        .await?
        .json()
        .await?;
    let token = r["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cashuB"));
    let other_dir = tempfile::tempdir()?;
    let other = open_wallet(other_dir.path(), &mint.url()).await?;
    assert_eq!(other.receive(&token).await?, 3);
    assert_eq!(other.balance().await?, 3);
    // Refusals: zero, more than the balance, not JSON, a token already spent.
    for (body, what) in [
        (serde_json::json!({"amount": 0}), "zero"),
        (serde_json::json!({"amount": issued * 10}), "too much"),
        (serde_json::json!({"nope": 1}), "malformed"),
    ] {
        let r = http
            .post(url("tokens"))
            .header("Authorization", &bearer)
            .json(&body)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 400, "{what}");
        let e: serde_json::Value = r.json().await?;
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
    }
    let r = http
        .post(url("receive"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400, "a spent token is refused");
    // The faucet: one token per address per interval.
    let faucet = || {
        http.post(url("faucet"))
            .header("Authorization", &bearer)
            .send()
    };
    let r = faucet().await?;
    assert_eq!(r.status().as_u16(), 200);
    let again = faucet().await?;
    assert_eq!(again.status().as_u16(), 429);
    let e: serde_json::Value = again.json().await?;
    assert!(e["retry_after_secs"].as_u64().unwrap() > 0);
    assert_eq!(wallet.balance().await?, issued - 3 - 2);
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sv1_miners_stay_connected_while_the_pool_is_away() -> anyhow::Result<()> {
    pool_away(ChannelMode::Aggregated).await
}

/// In channel-per-miner mode the miner's channel is reopened on the pool that comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_miner_channels_are_reopened_when_the_pool_returns() -> anyhow::Result<()> {
    pool_away(ChannelMode::PerMiner).await
}

async fn pool_away(channel_mode: ChannelMode) -> anyhow::Result<()> {
    init_tracing();
    // The pool is stopped and started again at its address, on its ledger: the test holds the
    // stack's parts.
    let ledger_dir = tempfile::tempdir()?;
    let listen = free_address();
    let options = || PoolOptions {
        shares_per_minute: 120.0,
        share_batch_size: 1,
        ledger_path: ledger_dir.path().join("ledger.sqlite"),
        listen_address: listen,
        ..Default::default()
    };
    let key = test_key("away");
    // Aggregated: every share the miner finds is at the channel's target, so every "accepted"
    // it hears is the pool's. Per miner: its channel starts at 20 kH/s.
    let initial_hashrate = match channel_mode {
        ChannelMode::Aggregated => 1.0e12,
        ChannelMode::PerMiner | ChannelMode::PerKey => 20_000.0,
    };
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(options())
        .with_translator("translator-away", initial_hashrate, move |c| {
            c.nominal_hashrate = 30_000.0;
            c.channel_mode = channel_mode;
            c.locking_key = Some(key);
        })
        .start()
        .await?;
    let miner = stack.sv1_miner("carol.rig", 20_000.0);
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        translator,
        stop,
        ..
    } = stack;
    let translator = translator.expect("a translator").running;
    let acked =
        |m: &mining_device_sv1::Sv1Miner| m.stats.shares_acknowledged.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(60), "shares accepted", || async {
        acked(&miner) >= 2
    })
    .await?;

    pool.stop().await?;
    let stats = translator.stats.clone();
    wait_until(
        Duration::from_secs(30),
        "the translator to notice the pool is gone",
        || async { TranslatorStats::get(&stats.pool_connected) == 0 },
    )
    .await?;
    // The miner kept its one connection to the translator.
    assert_eq!(miner.stats.connections.load(Ordering::Relaxed), 1);
    assert!(miner.stats.connected.load(Ordering::Relaxed));
    let during = acked(&miner);

    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    wait_until(
        Duration::from_secs(60),
        "shares accepted after the pool returned",
        || async { acked(&miner) >= during + 3 },
    )
    .await?;
    assert_eq!(
        miner.stats.connections.load(Ordering::Relaxed),
        1,
        "no reconnect"
    );
    if channel_mode == ChannelMode::PerMiner {
        // The monitoring API's snapshot refreshes every second.
        wait_until(
            Duration::from_secs(10),
            "the miner's channel, reopened, in the pool's monitoring API",
            || async { pool.extended_channels().await.is_ok_and(|c| c.len() == 1) },
        )
        .await?;
        let reopened = pool.extended_channels().await?;
        assert_eq!(reopened[0].user_identity, "translator-away.1");
    }
    stop.cancel();
    let total = acked(&miner);
    miner.task.await?;
    translator.task.await?;
    // Every share the miner was told was accepted is in the pool's ledger, across the outage.
    let accrued = pool
        .running
        .ledger
        .accrual(&key)
        .await?
        .expect("accrued")
        .shares;
    assert!(
        total <= accrued,
        "told {total} accepted, ledger has {accrued}"
    );
    pool.stop().await?;
    tp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_per_miner_retargeted_by_the_miners_vardiff() -> anyhow::Result<()> {
    init_tracing();
    let key = test_key("per-miner");
    let mut stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            // Batches never fill: each miner hears its verdicts through the pool's
            // acknowledgement deadline.
            share_batch_size: 1_000,
            share_ack_interval_ms: 300,
            ..Default::default()
        })
        // Its miners start far under their real rate: vardiff must raise it.
        .with_translator("translator-pm", 1_000.0, move |c| {
            c.channel_mode = ChannelMode::PerMiner;
            c.locking_key = Some(key);
        })
        .start()
        .await?;
    // Stopped before the ledger is read; the rest of the stack after.
    let translator = stack.translator.take().expect("a translator").running;
    let (pool, stop) = (&stack.pool, &stack.stop);
    let stats = translator.stats.clone();
    let miner = |user: &str, stop: &CancellationToken| {
        mining_device_sv1::start(
            sv1_miner_options(translator.downstream_address, user, 30_000.0),
            stop.clone(),
        )
    };
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = miner("erin.rig1", &first_stop);
    let second = miner("erin.rig2", &second_stop);
    let channels = || async {
        pool.extended_channels()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.user_identity.starts_with("translator-pm."))
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(60), "a channel per miner", || async {
        channels().await.len() == 2
    })
    .await?;
    // Vardiff measures each miner and the pool retargets its channel: the channel's hashrate
    // rises far above the 1 kH/s it was opened with, and the miner hears a new difficulty.
    wait_until(
        Duration::from_secs(90),
        "both channels retargeted by vardiff",
        || async {
            let c = channels().await;
            c.len() == 2 && c.iter().all(|c| c.nominal_hashrate >= 5_000.0)
        },
    )
    .await?;
    assert!(TranslatorStats::get(&stats.vardiff_updates) >= 2);
    assert!(first.stats.set_targets.load(Ordering::Relaxed) >= 2);
    // A miner that leaves takes its channel with it.
    first_stop.cancel();
    first.task.await?;
    wait_until(
        Duration::from_secs(20),
        "the left miner's channel closed",
        || async { channels().await.len() == 1 },
    )
    .await?;
    // The miner goes before the translator: the shares its shutdown leaves unanswered reach
    // no miner.
    second_stop.cancel();
    second.task.await?;
    stop.cancel();
    translator.task.await?;
    // Every share a miner was told was accepted is a share the pool accepted.
    let acked = first.stats.shares_acknowledged.load(Ordering::Relaxed)
        + second.stats.shares_acknowledged.load(Ordering::Relaxed);
    let accrued = pool
        .running
        .ledger
        .accrual(&key)
        .await?
        .expect("accrued")
        .shares;
    assert!(acked > 0);
    assert!(
        acked <= accrued,
        "told {acked} accepted, ledger has {accrued}"
    );
    assert_eq!(TranslatorStats::get(&stats.shares_below_channel_target), 0);
    // A refusal a miner heard is honest only if its share went stale under it (a block the
    // miners found: the translator answered 21, or the pool said stale-share); none is wrong.
    let heard = first.stats.shares_rejected.load(Ordering::Relaxed)
        + second.stats.shares_rejected.load(Ordering::Relaxed);
    assert_eq!(wrong_refusals(&stats), 0, "{stats:?}");
    assert!(
        heard <= stale_refusals(&stats),
        "{heard} refused: {stats:?}"
    );
    stack.stop().await
}
