//! The pool against miners that try to gain what they did not hash for, or to stall it: each
//! test is an attacker speaking raw SV2 next to an honest miner whose work must stay exact.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use binary_sv2::U256Owned;
use bitcoin::Target;
use hashpool_e2e::{
    grind::{
        self, hash_value, header, max_target_one, network_target, share, target_of, ChannelWork,
    },
    init_tracing, public_key,
    raw_client::{tcp_from, RawClient},
    test_key, test_limits, wait_until, PoolOptions, Stack,
};
use hashpool_ehash::Work;
use mining_sv2::{SubmitSharesStandardOwned, UpdateChannelOwned};
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use pool::miners::{admission::LimitReason, target_from_difficulty};

const WAIT: Duration = Duration::from_secs(60);
/// A block every ~65,000 hashes: the attacker grinds blocks in the test itself.
const EASY_BLOCKS_NBITS: u32 = 0x1f00_ffff;
/// Difficulty 1: no block in a test's lifetime.
const NO_BLOCKS_NBITS: u32 = 0x1d00_ffff;
const HARD_NBITS: u32 = 0x1e0f_ffff;

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn setup(c: &mut RawClient) -> anyhow::Result<()> {
    grind::setup(c, WAIT).await
}

async fn open(
    c: &mut RawClient,
    request_id: u32,
    user: &str,
    hashrate: f32,
    max_target: [u8; 32],
) -> anyhow::Result<MiningOwned> {
    grind::open_standard(c, request_id, user, hashrate, max_target, WAIT).await
}

fn network(nbits: u32) -> Target {
    network_target(nbits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_share_on_a_harder_than_network_target_earns_only_the_network_targets_work(
) -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(EASY_BLOCKS_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    pool.wait_for_work(WAIT).await?;
    let net = network(EASY_BLOCKS_NBITS);
    let ledger = pool.running.ledger.clone();

    // An honest miner beside the attacker.
    let honest = stack.miner("honest", 5_000.0);

    let attacker = test_key("attacker");
    let mut c = RawClient::connect(pool.address(), Some(public_key())).await?;
    setup(&mut c).await?;
    // max_target = 1 with a modest hashrate: the pool raises the maximum to the network target.
    let clamped = match open(&mut c, 1, &format!("{attacker}.a"), 1.0, max_target_one()).await? {
        MiningOwned::OpenStandardMiningChannelSuccess(s) => s,
        other => anyhow::bail!("channel refused: {other:?}"),
    };
    assert_eq!(
        target_of(&clamped.target),
        net,
        "max_target 1 is raised to the network target"
    );
    // UpdateChannel asking for the same gets the same.
    c.send(MiningOwned::UpdateChannel(UpdateChannelOwned {
        channel_id: clamped.channel_id,
        nominal_hash_rate: 1.0,
        maximum_target: U256Owned::from(max_target_one()),
    }))
    .await?;
    let set = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SetTarget(t)) => Some(t.maximum_target.clone()),
            AnyMessageOwned::Mining(MiningOwned::UpdateChannelError(e)) => {
                panic!("update refused: {}", hashpool_sv2_io::text(&e.error_code))
            }
            _ => None,
        })
        .await?;
    assert_eq!(target_of(&set), net);

    // A claimed hashrate so high that the target is far harder than the network's: every share
    // the miner can find is a block, and channels_sv2 takes it without the job target.
    let hard = match open(&mut c, 2, &format!("{attacker}.b"), 1e30, max_target_one()).await? {
        MiningOwned::OpenStandardMiningChannelSuccess(s) => s,
        other => anyhow::bail!("channel refused: {other:?}"),
    };
    let channel_target = target_of(&hard.target);
    assert!(
        channel_target < net,
        "the attack channel's target is harder than the network"
    );

    // Grind blocks on the attack channel; stale refusals after the honest miner's blocks are
    // honest and retried.
    let mut work = ChannelWork::new(hard.channel_id, channel_target);
    let mut accepted = 0u32;
    let mut seq = 0u32;
    // Where the search goes on: (job id, tip time, next nonce), so no share is sent twice.
    let mut from: (u32, u32, u32) = (u32::MAX, 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while accepted < 3 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no 3 blocks in time"
        );
        while let Ok(m) = c.recv(Duration::from_millis(50)).await {
            work.on(&m);
        }
        let Some((job, tip)) = work.active().map(|(j, t)| (j.clone(), t.clone())) else {
            continue;
        };
        let start = if (from.0, from.1) == (job.job_id, tip.min_ntime) {
            from.2
        } else {
            0
        };
        let Some(nonce) = (start..start.saturating_add(2_000_000))
            .find(|n| hash_value(&header(&job, &tip, *n)) <= net)
        else {
            from = (job.job_id, tip.min_ntime, start.saturating_add(2_000_000));
            continue;
        };
        from = (job.job_id, tip.min_ntime, nonce + 1);
        let (job, tip) = (&job, &tip);
        let found = hash_value(&header(job, tip, nonce));
        assert!(
            found > channel_target,
            "the block misses the channel's own target"
        );
        seq += 1;
        c.send(share(hard.channel_id, seq, job, tip, nonce)).await?;
        let verdict = c
            .recv_until(WAIT, |m| {
                work.on(m);
                match m {
                    AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s))
                        if s.channel_id == hard.channel_id =>
                    {
                        Some(Ok(()))
                    }
                    AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e))
                        if e.channel_id == hard.channel_id =>
                    {
                        Some(Err(hashpool_sv2_io::text(&e.error_code)))
                    }
                    _ => None,
                }
            })
            .await?;
        match verdict {
            Ok(()) => accepted += 1,
            // A new block made the job stale before the share arrived: honest, try again.
            Err(code) if code == "stale-share" || code == "invalid-job-id" => {}
            Err(code) => anyhow::bail!("attack share refused with {code}"),
        }
    }

    // Each block share earned exactly the network target's work, nothing of its channel's.
    let credited = wait_for_accrual(&ledger, &attacker, accepted as u64).await?;
    let per_block = Work::from_target(&net).hashes();
    assert_eq!(credited.total.hashes(), per_block * accepted as u128);
    assert!(Work::from_target(&channel_target).hashes() > per_block * 1_000);

    // The honest miner keeps every acknowledged share, before and after.
    let before = honest_total(&ledger).await?;
    wait_until(WAIT, "the honest miner to earn more", || async {
        honest_total(&ledger)
            .await
            .map(|t| t > before)
            .unwrap_or(false)
    })
    .await?;
    let honest_key = test_key("honest");
    let accrual = ledger.accrual(&honest_key).await?.expect("honest accrual");
    let (rows, _) = ledger.share_work(&honest_key).await?;
    assert_eq!(accrual.total, rows);

    stack.stop.cancel();
    honest.task.await?;
    stack.stop().await
}

async fn honest_total(ledger: &pool::ledger::AccrualLedger) -> anyhow::Result<u128> {
    Ok(ledger
        .accrual(&test_key("honest"))
        .await?
        .map(|a| a.total.hashes())
        .unwrap_or(0))
}

async fn wait_for_accrual(
    ledger: &pool::ledger::AccrualLedger,
    key: &ext_mint_quote::LockingKey,
    shares: u64,
) -> anyhow::Result<pool::ledger::KeyAccrual> {
    wait_until(WAIT, "the attacker's shares in the ledger", || async {
        ledger
            .accrual(key)
            .await
            .ok()
            .flatten()
            .is_some_and(|a| a.shares >= shares)
    })
    .await?;
    Ok(ledger.accrual(key).await?.expect("accrual"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_hashrates_are_refused_and_a_channel_at_the_floor_cannot_send_unhashed_nonces(
) -> anyhow::Result<()> {
    init_tracing();
    let floor = 0.001;
    let stack = Stack::new()
        .nbits(NO_BLOCKS_NBITS)
        .with_pool(PoolOptions {
            limits: pool::config::MinerLimits {
                min_share_difficulty: floor,
                ..test_limits()
            },
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    pool.wait_for_work(WAIT).await?;
    let key = test_key("freeloader");
    let user = format!("{key}.w");
    let mut c = RawClient::connect(pool.address(), Some(public_key())).await?;
    setup(&mut c).await?;
    for (i, bad) in [f32::NAN, -1.0, f32::INFINITY, f32::NEG_INFINITY]
        .into_iter()
        .enumerate()
    {
        match open(&mut c, 10 + i as u32, &user, bad, [0xff; 32]).await? {
            MiningOwned::OpenMiningChannelError(e) => assert_eq!(
                hashpool_sv2_io::text(&e.error_code),
                "invalid-nominal-hashrate",
                "hashrate {bad}"
            ),
            other => panic!("hashrate {bad} accepted: {other:?}"),
        }
    }
    // Zero hashrate and the easiest maximum: floored at the minimum difficulty.
    let floor_target = target_from_difficulty(floor);
    let channel = match open(&mut c, 20, &user, 0.0, [0xff; 32]).await? {
        MiningOwned::OpenStandardMiningChannelSuccess(s) => s,
        other => anyhow::bail!("zero hashrate refused: {other:?}"),
    };
    assert_eq!(target_of(&channel.target), floor_target);

    // Unhashed nonces (those that happen to meet the floor are left out) are all refused.
    let mut work = ChannelWork::new(channel.channel_id, floor_target);
    while work.active().is_none() {
        let m = c.recv(WAIT).await?;
        work.on(&m);
    }
    let (job, tip) = work
        .active()
        .map(|(j, t)| (j.clone(), t.clone()))
        .expect("work");
    let mut sent = 0u32;
    for nonce in 0..60u32 {
        if hash_value(&header(&job, &tip, nonce)) <= floor_target {
            continue;
        }
        sent += 1;
        c.send(share(channel.channel_id, nonce, &job, &tip, nonce))
            .await?;
    }
    let mut refused = 0u32;
    while refused < sent {
        let code = c
            .recv_until(WAIT, |m| match m {
                AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                    Some(hashpool_sv2_io::text(&e.error_code))
                }
                AnyMessageOwned::Mining(MiningOwned::SubmitSharesSuccess(s)) => {
                    panic!("an unhashed share was accepted: {s:?}")
                }
                _ => None,
            })
            .await?;
        assert_eq!(code, "difficulty-too-low");
        refused += 1;
    }
    assert!(pool.running.ledger.accrual(&key).await?.is_none());

    // UpdateChannel cannot go under the floor either.
    c.send(MiningOwned::UpdateChannel(UpdateChannelOwned {
        channel_id: channel.channel_id,
        nominal_hash_rate: 0.0,
        maximum_target: U256Owned::from([0xff; 32]),
    }))
    .await?;
    let set = c
        .recv_until(WAIT, |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SetTarget(t)) => Some(t.maximum_target.clone()),
            _ => None,
        })
        .await?;
    assert_eq!(target_of(&set), floor_target);

    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_time_outs_drop_the_attacker_while_an_honest_miner_keeps_mining(
) -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            limits: pool::config::MinerLimits {
                max_connections: 4,
                max_connections_per_address: 2,
                setup_timeout_secs: 1,
                first_channel_timeout_secs: 2,
                write_timeout_secs: 1,
                ..test_limits()
            },
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    let admission = pool.running.admission.clone();
    let honest = stack.miner("honest", 20_000.0);
    wait_until(WAIT, "the honest miner's first shares", || async {
        pool.shares_accepted().await >= 1
    })
    .await?;
    let connect = |last: u8| {
        RawClient::connect_from(pool.address(), Some(public_key()), loopback(last), None)
    };

    // Per address: two from 127.0.0.2, the third refused before the handshake.
    // (open_standard_channel sends SetupConnection first.)
    let mut a1 = connect(2).await?;
    a1.open_standard_channel("a1").await?;
    let mut a2 = connect(2).await?;
    a2.open_standard_channel("a2").await?;
    assert!(
        connect(2).await.is_err(),
        "a third connection from one address"
    );
    assert_eq!(admission.hits_of(LimitReason::ConnectionsPerAddress), 1);
    // In total: the honest miner, two and one more make four; a fifth is refused.
    let mut b = connect(3).await?;
    b.open_standard_channel("b").await?;
    assert!(connect(4).await.is_err(), "a fifth connection");
    assert_eq!(admission.hits_of(LimitReason::Connections), 1);
    // Channels per connection (16 in the test pool): the 17th is refused, the rest stay.
    for i in 1..16u32 {
        match open(
            &mut b,
            100 + i,
            &format!("{}.b{i}", test_key("b")),
            1_000.0,
            [0xff; 32],
        )
        .await?
        {
            MiningOwned::OpenStandardMiningChannelSuccess(_) => {}
            other => anyhow::bail!("channel {i} refused: {other:?}"),
        }
    }
    match open(
        &mut b,
        200,
        &format!("{}.b17", test_key("b")),
        1_000.0,
        [0xff; 32],
    )
    .await?
    {
        MiningOwned::OpenMiningChannelError(e) => assert_eq!(
            hashpool_sv2_io::text(&e.error_code),
            "channel-capacity-exhausted"
        ),
        other => anyhow::bail!("a 17th channel: {other:?}"),
    }
    assert_eq!(admission.hits_of(LimitReason::ChannelsPerConnection), 1);
    drop((a1, a2, b));
    wait_until(WAIT, "the attacker's places to be freed", || async {
        admission.open_connections() == 1
    })
    .await?;

    // No Noise handshake at all: closed after the setup time-out.
    let mut silent = tcp_from(pool.address(), loopback(5), None).await?;
    let closed = tokio::time::timeout(WAIT, async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent TCP connection is closed");
    // A handshake but no SetupConnection.
    let mut no_setup = connect(6).await?;
    assert!(no_setup.closed_within(WAIT).await);
    wait_until(WAIT, "two setup time-outs counted", || async {
        admission.hits_of(LimitReason::SetupTimeout) >= 2
    })
    .await?;
    // SetupConnection but no channel.
    let mut no_channel = connect(7).await?;
    setup(&mut no_channel).await?;
    assert!(no_channel.closed_within(WAIT).await);
    assert_eq!(admission.hits_of(LimitReason::FirstChannelTimeout), 1);

    // A miner that stops reading: shares that each draw an answer, never read (a tiny receive
    // buffer fills after a few answers), until the pool's write times out and it hangs up.
    let mut reader_gone =
        RawClient::connect_from(pool.address(), Some(public_key()), loopback(8), Some(2048))
            .await?;
    let channel_id = reader_gone.open_standard_channel("silent").await?;
    let flood = tokio::spawn(async move {
        for seq in 0..2_000_000u32 {
            let bogus = MiningOwned::SubmitSharesStandard(SubmitSharesStandardOwned {
                channel_id: channel_id + 1_000,
                sequence_number: seq,
                job_id: 1,
                nonce: seq,
                ntime: 0,
                version: 0,
            });
            // The send blocks once the pool stops reading, and fails once it hung up.
            match tokio::time::timeout(Duration::from_secs(30), reader_gone.send(bogus)).await {
                Ok(Ok(())) => {}
                _ => return seq,
            }
        }
        u32::MAX
    });
    wait_until(Duration::from_secs(90), "the write time-out", || async {
        admission.hits_of(LimitReason::WriteTimeout) >= 1
    })
    .await?;
    let sent = flood.await?;
    assert!(sent < u32::MAX, "the pool hung up on the flooder");

    // The honest miner never noticed.
    let before = pool.shares_accepted().await;
    wait_until(WAIT, "the honest miner to keep mining", || async {
        pool.shares_accepted().await >= before + 2
    })
    .await?;
    assert_eq!(admission.open_connections(), 1);

    // Every limit met is in the pool's /metrics by reason, in valid exposition.
    let url = format!(
        "http://{}/metrics",
        pool.running
            .metrics_address
            .expect("the test pool serves metrics")
    );
    let text = reqwest::get(url).await?.text().await?;
    let lint = hashpool_e2e::promtool_check(&text)?;
    assert!(lint.is_empty(), "{lint:?}");
    let hits = |limit: &str| {
        hashpool_e2e::metric_value(
            &text,
            &format!("hashpool_pool_limit_hits_total{{limit=\"{limit}\"}}"),
        )
        .unwrap_or(-1.0)
    };
    assert_eq!(hits("max_connections"), 1.0, "{text}");
    assert_eq!(hits("max_connections_per_address"), 1.0);
    assert!(hits("setup_timeout") >= 2.0);
    assert_eq!(hits("first_channel_timeout"), 1.0);
    assert!(hits("write_timeout") >= 1.0);
    assert_eq!(hits("idle_timeout"), 0.0);
    assert_eq!(hits("max_channels_per_connection"), 1.0);
    assert_eq!(
        hashpool_e2e::metric_value(&text, "hashpool_pool_miner_connections"),
        Some(1.0)
    );

    stack.stop.cancel();
    honest.task.await?;
    stack.stop().await
}
