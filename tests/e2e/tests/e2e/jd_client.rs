//! The jd-client end to end: template provider (with new mempool transactions all along) +
//! pool + mint + jd-server + jd-client + miners. Its declared jobs are set on the pool, the
//! shares on them earn ehash into the jd-client's wallet exactly, its blocks carry the
//! transactions it chose and connect; without its jd-server it mines the pool's jobs and
//! declares again when the jd-server is back, its miners connected all along.

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, metric_value, miner_options, promtool_check,
    public_key, secret_key, sv1_miner_options, test_key, translator_config, wait_until,
    PoolOptions, Running, Stack, TestJdServer, TestPool, TestProvider,
};
use jd_client::JdClientStats;
use tokio_util::sync::CancellationToken;

mod miners;

fn jd_client_config(
    tp: &TestProvider,
    pool: &TestPool,
    jd_server: std::net::SocketAddr,
    hashrate: f32,
) -> jd_client::JdClientRunConfig {
    let endpoint = |address: std::net::SocketAddr| jd_client::config::Endpoint {
        address: address.into(),
        authority_public_key: Some(public_key()),
    };
    jd_client::JdClientRunConfig {
        listen_address: loopback_any_port(),
        authority_public_key: public_key(),
        authority_secret_key: secret_key(),
        cert_validity_secs: 3600,
        monitoring_address: Some(loopback_any_port()),
        miner_tag: "e2e-jdc".into(),
        shares_per_minute: 120.0,
        max_pool_script_bytes: 64,
        max_payout_outputs: 100,
        vardiff_interval: Duration::from_secs(20),
        template_provider: endpoint(tp.running.listen_address),
        pool: jd_client::config::PoolEndpoint {
            address: pool.address().into(),
            authority_public_key: public_key(),
            user_identity: "e2e-jdc".into(),
            nominal_hashrate: hashrate,
        },
        jd_server: endpoint(jd_server),
        locking_key: None,
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
    }
}

fn count(
    stats: &JdClientStats,
    f: impl Fn(&JdClientStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(stats).load(Ordering::Relaxed)
}

/// Until the jd-client's channel on the pool is open (its miners are refused before).
async fn pool_channel_open(jdc: &jd_client::RunningJdClient) -> anyhow::Result<()> {
    wait_until(
        Duration::from_secs(20),
        "the jd-client's pool channel",
        || async { jdc.stats.pool_connected.load(Ordering::Relaxed) },
    )
    .await
}

/// Stops the jd-client (with what `stop` cancels), the jd-server, the pool and the provider,
/// waiting for each.
async fn stop_all(
    stop: CancellationToken,
    jdc: jd_client::RunningJdClient,
    jds: TestJdServer,
    pool: TestPool,
    tp: TestProvider,
) -> anyhow::Result<()> {
    stop.cancel();
    jdc.task.await?;
    jds.stop().await?;
    pool.stop().await?;
    tp.stop().await
}

/// No blocks: the tip stays; new mempool transactions every 300 ms make new templates. A pool
/// taking the jd-server's job tokens and `jd_server` at `jd_server_address`.
fn no_blocks_stack(pool: PoolOptions, jd_server_address: std::net::SocketAddr) -> Stack {
    Stack::new()
        .nbits(0x1d00_ffff)
        .mempool_tx_every_ms(300)
        .with_pool(pool)
        .with_jd_server()
        .jd_server_address(jd_server_address)
}

/// An SV1 miner through a translator in front of the jd-client (aggregated channel), both
/// stopped by `stop`.
async fn sv1_behind(
    jdc: &jd_client::RunningJdClient,
    hashrate: f32,
    user: &str,
    stop: &CancellationToken,
) -> anyhow::Result<(translator::RunningTranslator, mining_device_sv1::Sv1Miner)> {
    let translator = translator::start(
        translator::TranslatorRunConfig {
            nominal_hashrate: hashrate,
            ..translator_config(jdc.listen_address, "jdc-translator", None, 1.0e12)
        },
        stop.clone(),
    )
    .await?;
    let miner = mining_device_sv1::start(
        sv1_miner_options(translator.downstream_address, user, hashrate.into()),
        stop.clone(),
    );
    Ok((translator, miner))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_jobs_earn_exact_ehash_and_their_blocks_carry_the_jd_clients_transactions(
) -> anyhow::Result<()> {
    init_tracing();
    // A block every ~130k hashes (a few seconds of the miner below), new mempool transactions
    // every 500 ms: declarations follow new tips and new templates all along. The jd-client
    // mines into the wallet's key and mints with its minter.
    let stack = Stack::new()
        .nbits(0x1e7f_ffff)
        .mempool_tx_every_ms(500)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 2,
            ..Default::default()
        })
        .with_wallet()
        .with_jd_server()
        .start()
        .await?;
    let (tp, pool, stop) = (&stack.tp, &stack.pool, &stack.stop);
    let (wallet, minter) = (stack.wallet(), stack.minter());
    let mut config = jd_client_config(tp, pool, stack.jd_server().address(), 40_000.0);
    config.locking_key = Some(wallet.sv2_locking_key());
    let jdc = jd_client::start(config, Some(minter.clone()), stop.clone()).await?;
    pool_channel_open(&jdc).await?;

    // An SV2 miner (standard channel) behind the jd-client, no key of its own.
    let mut options = miner_options(jdc.listen_address, "jdc-miner", 40_000.0, true);
    options.locking_key = None;
    let miner_stop = CancellationToken::new();
    let miner = mining_device::start(options, miner_stop.clone());

    let s = jdc.stats.clone();
    // The pool acknowledges shares in batches, after they were forwarded: wait for its
    // acknowledgements too, not only for the forwarding. The bound is for a machine under load;
    // the conditions usually hold within a minute.
    wait_until(
        Duration::from_secs(600),
        "declared shares forwarded and three accepted by the pool, a block found on a declared \
         job and three quotes minted",
        || async {
            count(&s, |s| &s.shares_forwarded_declared) >= 3
                && count(&s, |s| &s.pool_shares_accepted) >= 3
                && count(&s, |s| &s.blocks_found) >= 1
                && minter.stats().quotes_minted.load(Ordering::Relaxed) >= 3
        },
    )
    .await?;
    miner_stop.cancel();
    miner.task.await?;

    // Declared and set: no refusal anywhere on the way.
    assert!(count(&s, |s| &s.jobs_declared) >= 1);
    assert!(count(&s, |s| &s.custom_jobs_set) >= 1);
    assert_eq!(count(&s, |s| &s.declarations_refused), 0);
    assert_eq!(count(&s, |s| &s.custom_jobs_refused), 0);
    assert_eq!(miner.stats.connections.load(Ordering::Relaxed), 1);

    // Every ehash for the jd-client's work went to its wallet's key: exactly the accepted work.
    let key = wallet.sv2_locking_key();
    let ledger = pool.running.ledger.clone();
    let unit = pool.running.config.unit_work.work().hashes();
    pool.wait_until_settled(&key, Duration::from_secs(20))
        .await?;
    let issued: u64 = ledger
        .batches_of(&key)
        .await?
        .iter()
        .map(|b| b.amount)
        .sum();
    let (work, shares) = ledger.share_work(&key).await?;
    assert!(issued > 0);
    assert!(shares >= count(&s, |s| &s.shares_forwarded_declared).min(3));
    assert_eq!(issued as u128, work.hashes() / unit);
    assert_eq!(pool.running.stats.snapshot().shares_without_job_target, 0);
    wallet.recover().await?;
    wait_until(
        Duration::from_secs(20),
        "the wallet holds every quote",
        || async { wallet.balance().await.is_ok_and(|b| b == issued) },
    )
    .await?;

    // Blocks found through the jd-client are in the chain with the transactions it declared.
    let found = s.blocks();
    assert!(!found.is_empty());
    let height = tp.status().await?.height;
    let mut in_chain = 0;
    for h in 1..=height {
        let block: template_provider::http::BlockResponse =
            reqwest::get(format!("http://{}/blocks/{h}", tp.running.http_address))
                .await?
                .json()
                .await?;
        if let Some(f) = found.iter().find(|f| f.hash.to_string() == block.hash) {
            let chosen: Vec<String> = f.txids.iter().map(|t| t.to_string()).collect();
            assert_eq!(
                block.txids[1..],
                chosen[..],
                "the block's transactions are the declared ones"
            );
            in_chain += 1;
        }
    }
    assert!(in_chain >= 1, "a block of the jd-client connected");
    assert!(
        found.iter().any(|f| !f.txids.is_empty()),
        "a found block carried mempool transactions"
    );

    // What an operator sees: valid Prometheus exposition with the same counts, and the status.
    let monitoring = jdc.monitoring_address.expect("monitoring served");
    let exposition = reqwest::get(format!("http://{monitoring}/metrics"))
        .await?
        .text()
        .await?;
    assert_eq!(promtool_check(&exposition)?, Vec::<String>::new());
    assert_eq!(
        metric_value(&exposition, "hashpool_jd_client_blocks_found_total"),
        Some(count(&s, |s| &s.blocks_found) as f64)
    );
    assert_eq!(
        metric_value(&exposition, "hashpool_jd_client_pool_connected"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&exposition, "hashpool_wallet_quotes_minted_total"),
        Some(minter.stats().quotes_minted.load(Ordering::Relaxed) as f64)
    );
    let status: serde_json::Value = reqwest::get(format!("http://{monitoring}/api/v1/status"))
        .await?
        .json()
        .await?;
    assert_eq!(status["pool_connected"], true);
    assert_eq!(
        status["counters"]["jobs_declared"],
        count(&s, |s| &s.jobs_declared)
    );
    assert!(!status["last_blocks"].as_array().expect("blocks").is_empty());

    stop.cancel();
    jdc.task.await?;
    stack.stop().await
}

/// Withdrawals in declared coinbases (docs/job-declaration.md): a withdrawal queued at the
/// pool is handed to the jd-client with its tokens, the jd-server requires it in the declared
/// coinbase, and a block found on a declared job pays it, once, in the best chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_found_on_a_declared_job_pays_the_pools_withdrawals_once() -> anyhow::Result<()> {
    use hashpool_e2e::payouts::{address, node, paid_in_best_chain, payout};
    use hashpool_settlement::withdrawals::{PayoutState, Withdrawal};

    init_tracing();
    let stack = Stack::new()
        .nbits(0x1e7f_ffff)
        .mempool_tx_every_ms(500)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 2,
            ..Default::default()
        })
        .with_wallet()
        .with_withdrawals()
        .with_jd_server()
        .start()
        .await?;
    let (tp, pool, stop) = (&stack.tp, &stack.pool, &stack.stop);
    let (wallet, minter) = (stack.wallet(), stack.minter());
    let api = format!(
        "http://{}/api/v1/settlement",
        pool.running.api_address.expect("the miner API is served")
    );
    let mut config = jd_client_config(tp, pool, stack.jd_server().address(), 40_000.0);
    config.locking_key = Some(wallet.sv2_locking_key());
    let jdc = jd_client::start(config, Some(minter.clone()), stop.clone()).await?;
    pool_channel_open(&jdc).await?;

    // A withdrawal the pool owes (as read from the mint's list), before any miner works.
    let to = address(bitcoin::Network::Regtest);
    let sats = 30_000;
    let (_, before) = node(tp.running.http_address)?.chain().await?;
    pool.running
        .ledger
        .record_withdrawals(vec![Withdrawal {
            quote_id: "jd-withdrawal".into(),
            sats,
            address: to.to_string(),
            script: to.script_pubkey().to_hex_string(),
            recorded_at: 1,
        }])
        .await?;

    // The only miner mines the jd-client's declared jobs.
    let mut options = miner_options(jdc.listen_address, "jdc-miner", 40_000.0, true);
    options.locking_key = None;
    let miner_stop = CancellationToken::new();
    let miner = mining_device::start(options, miner_stop.clone());
    let s = jdc.stats.clone();
    wait_until(
        Duration::from_secs(600),
        "the withdrawal paid in a block",
        || async {
            payout(&api, "jd-withdrawal")
                .await
                .is_some_and(|p| p.state == PayoutState::InBlock)
        },
    )
    .await?;
    miner_stop.cancel();
    miner.task.await?;

    // Paid by a block the jd-client found, exactly once in the best chain, and the declared
    // jobs carrying it were accepted (a refusal would have left the withdrawal unpaid).
    let p = payout(&api, "jd-withdrawal").await.expect("payout");
    let block = p.block_hash.clone().expect("block");
    assert!(
        s.blocks().iter().any(|f| f.hash.to_string() == block),
        "the jd-client found {block}"
    );
    let chain = node(tp.running.http_address)?;
    let paid = paid_in_best_chain(&chain, before + 1, &to.script_pubkey(), sats).await?;
    assert_eq!(
        paid.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        vec![block]
    );
    assert!(count(&s, |s| &s.custom_jobs_set) >= 1);

    stop.cancel();
    jdc.task.await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_jd_server_the_jd_client_mines_pool_jobs_and_declares_again_when_it_returns(
) -> anyhow::Result<()> {
    init_tracing();
    // The jd-server is stopped and started again at its address: the test holds the stack's
    // parts.
    let jds_address = free_address();
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        jd_server,
        stop,
        ..
    } = no_blocks_stack(
        PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 1,
            ..Default::default()
        },
        jds_address,
    )
    .start()
    .await?;
    let jds = jd_server.expect("a jd-server");
    let mut config = jd_client_config(&tp, &pool, jds_address, 30_000.0);
    config.locking_key = Some(test_key("jdc-fallback"));
    let jdc = jd_client::start(config, None, stop.clone()).await?;
    pool_channel_open(&jdc).await?;

    // SV1 miners through the translator in front of the jd-client (aggregated channel).
    let (translator, miner) = sv1_behind(&jdc, 30_000.0, "dave.rig", &stop).await?;

    let s = jdc.stats.clone();
    let on_pool_jobs = |s: &JdClientStats| {
        count(s, |s| &s.shares_forwarded) - count(s, |s| &s.shares_forwarded_declared)
    };
    wait_until(
        Duration::from_secs(90),
        "shares on declared jobs",
        || async {
            s.mining_declared.load(Ordering::Relaxed)
                && count(&s, |s| &s.shares_forwarded_declared) >= 2
        },
    )
    .await?;

    // The jd-server goes away: the pool's jobs, same miners, same channel.
    jds.stop().await?;
    wait_until(
        Duration::from_secs(30),
        "mining the pool's jobs",
        || async { !s.mining_declared.load(Ordering::Relaxed) },
    )
    .await?;
    let before = on_pool_jobs(&s);
    let accepted = count(&s, |s| &s.pool_shares_accepted);
    wait_until(
        Duration::from_secs(90),
        "shares on the pool's jobs accepted",
        || async {
            on_pool_jobs(&s) >= before + 2 && count(&s, |s| &s.pool_shares_accepted) >= accepted + 2
        },
    )
    .await?;
    assert!(!s.mining_declared.load(Ordering::Relaxed));
    assert!(!s.jds_connected.load(Ordering::Relaxed));

    // Back: declared jobs resume.
    let declared = count(&s, |s| &s.shares_forwarded_declared);
    let jobs = count(&s, |s| &s.custom_jobs_set);
    let jds = TestJdServer::start(jds_address, &tp).await?;
    wait_until(
        Duration::from_secs(90),
        "declared jobs again, with shares",
        || async {
            count(&s, |s| &s.custom_jobs_set) > jobs
                && count(&s, |s| &s.shares_forwarded_declared) >= declared + 2
        },
    )
    .await?;
    assert_eq!(count(&s, |s| &s.declarations_refused), 0);
    assert_eq!(count(&s, |s| &s.custom_jobs_refused), 0);
    // The SV1 miner never lost its connection, nor the translator its channel.
    assert_eq!(miner.stats.connections.load(Ordering::Relaxed), 1);
    assert_eq!(translator.stats.pool_connections.load(Ordering::Relaxed), 1);

    stop_all(stop, jdc, jds, pool, tp).await
}

/// The pool goes away and comes back (its channel for the jd-client now with another
/// extranonce prefix): miners stay connected to the jd-client, and declared jobs and accepted
/// shares resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_restart_keeps_the_miners_and_declared_jobs_resume() -> anyhow::Result<()> {
    use binary_sv2::U256Owned;
    use common_messages_sv2::Protocol;
    use hashpool_e2e::raw_client::{setup_connection, RawClient};
    use mining_sv2::OpenExtendedMiningChannelOwned;
    use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};

    init_tracing();
    // The pool is stopped and started again at its address, on its ledger: the test holds the
    // stack's parts.
    let ledger_dir = tempfile::tempdir()?;
    let listen = free_address();
    let options = || PoolOptions {
        shares_per_minute: 120.0,
        share_batch_size: 1,
        jd_server_public_key: Some(public_key()),
        ledger_path: ledger_dir.path().join("ledger.sqlite"),
        listen_address: listen,
        ..Default::default()
    };
    let Running {
        dir: _stack_dir,
        tp,
        pool,
        jd_server,
        stop,
        ..
    } = no_blocks_stack(options(), loopback_any_port())
        .start()
        .await?;
    let jds = jd_server.expect("a jd-server");
    let mut config = jd_client_config(&tp, &pool, jds.address(), 40_000.0);
    config.locking_key = Some(test_key("jdc-pool-restart"));
    // Slow to come back: another miner reaches the restarted pool first.
    config.reconnect_initial = Duration::from_secs(2);
    config.reconnect_max = Duration::from_secs(2);
    let jdc = jd_client::start(config, None, stop.clone()).await?;
    let s = jdc.stats.clone();
    pool_channel_open(&jdc).await?;
    // An SV1 miner through the translator (extended channel) and an SV2 miner (standard).
    let (translator, sv1) = sv1_behind(&jdc, 20_000.0, "erin.rig", &stop).await?;
    let mut options_sv2 = miner_options(jdc.listen_address, "sv2-rig", 20_000.0, true);
    options_sv2.locking_key = None;
    let sv2 = mining_device::start(options_sv2, stop.clone());
    wait_until(
        Duration::from_secs(90),
        "shares on declared jobs",
        || async { count(&s, |s| &s.shares_forwarded_declared) >= 3 },
    )
    .await?;

    // The jd-client's channel as the pool's monitoring shows it (refreshed periodically).
    async fn jdc_prefix(pool: &TestPool) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = pool
                .extended_channels()
                .await?
                .into_iter()
                .find(|c| c.user_identity == "e2e-jdc")
            {
                return Ok(c.extranonce_prefix_hex);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the jd-client's channel never showed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let before = jdc_prefix(&pool).await?;
    pool.stop().await?;
    wait_until(
        Duration::from_secs(20),
        "the jd-client to see the pool go",
        || async { !s.pool_connected.load(Ordering::Relaxed) },
    )
    .await?;
    let pool = TestPool::start(tp.running.listen_address, options()).await?;
    // Another miner takes the new pool's first channel, so the jd-client's gets another prefix.
    let mut other = RawClient::connect(listen, Some(public_key())).await?;
    other
        .send(CommonMessagesOwned::SetupConnection(setup_connection(
            Protocol::MiningProtocol,
        )))
        .await?;
    other.recv(Duration::from_secs(10)).await?;
    other
        .send(MiningOwned::OpenExtendedMiningChannel(
            OpenExtendedMiningChannelOwned {
                request_id: 1,
                user_identity: hashpool_sv2_io::str0255(&test_key("other").to_hex()),
                nominal_hash_rate: 1_000.0,
                max_target: U256Owned::from([0xff; 32]),
                min_extranonce_size: 8,
            },
        ))
        .await?;
    other
        .recv_until(Duration::from_secs(10), |m| match m {
            AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(_)) => Some(()),
            _ => None,
        })
        .await?;

    let declared = count(&s, |s| &s.shares_forwarded_declared);
    let accepted = count(&s, |s| &s.pool_shares_accepted);
    let jobs_before = count(&s, |s| &s.custom_jobs_set);
    wait_until(
        Duration::from_secs(90),
        "declared shares accepted by the restarted pool",
        || async {
            count(&s, |s| &s.shares_forwarded_declared) >= declared + 3
                && count(&s, |s| &s.pool_shares_accepted) >= accepted + 3
        },
    )
    .await?;
    let after = jdc_prefix(&pool).await?;
    assert_ne!(
        before, after,
        "the new channel has another extranonce prefix"
    );
    // Both miners kept their one connection, and the translator its one upstream connection.
    assert_eq!(sv1.stats.connections.load(Ordering::Relaxed), 1);
    assert_eq!(sv2.stats.connections.load(Ordering::Relaxed), 1);
    assert_eq!(translator.stats.pool_connections.load(Ordering::Relaxed), 1);
    assert!(count(&s, |s| &s.custom_jobs_set) > jobs_before);

    stop_all(stop, jdc, jds, pool, tp).await
}
