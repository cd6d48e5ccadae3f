//! Upstreams named by host name: a translator pointed at the pool as `localhost:<port>` mines;
//! one whose first pool does not resolve keeps retrying (the name resolved again every round,
//! no panic) and mines as soon as its fallback, also a name, answers; a mint dialing the pool's
//! mint link by name links up.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, mint_run_config, public_key, sv1_miner_options,
    test_key, translator_config, wait_until, PoolOptions, Stack, TestPool, TestProvider,
};
use hashpool_sv2_io::HostPort;
use tokio_util::sync::CancellationToken;
use translator::{Sv1Limits, UpstreamEndpoint};

/// A miner difficulty far above the channel's: miners get the channel's target, every share
/// goes to the pool.
const STRICT: f32 = 1.0e12;

/// Hard enough that shares are not blocks.
const HARD_NBITS: u32 = 0x1e0f_ffff;

/// A plain pool (no mint-quote extension): channels accrue to its default key.
fn plain_pool(listen_address: std::net::SocketAddr) -> PoolOptions {
    PoolOptions {
        shares_per_minute: 120.0,
        mint_quote_extension: false,
        default_locking_key: Some(test_key("dns-pool-default")),
        listen_address,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translator_reaches_the_pool_by_name() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(plain_pool(free_address()))
        .with_translator("translator-dns", STRICT, |c| {
            let port = c.upstreams[0].address.port();
            c.upstreams[0].address = HostPort::new("localhost", port).expect("a valid name");
            c.nominal_hashrate = 30_000.0;
        })
        .start()
        .await?;
    let m = stack.sv1_miner("erin.rig", 20_000.0);
    wait_until(
        Duration::from_secs(60),
        "shares accepted through the pool named localhost",
        || async { m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3 },
    )
    .await?;
    assert_eq!(m.stats.shares_rejected.load(Ordering::Relaxed), 0);
    let stats = &stack.translator().running.stats;
    assert_eq!(stats.pool_connected.load(Ordering::Relaxed), 1);
    stack.stop.cancel();
    m.task.await?;
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_pool_is_retried_until_the_named_fallback_answers() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(&dir.path().join("chain"), free_address(), HARD_NBITS, 0).await?;
    // The fallback pool's port: until the pool starts, a listener that counts the translator's
    // attempts and hangs up on each.
    let placeholder = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let pool_address = placeholder.local_addr()?;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counting = tokio::spawn({
        let attempts = attempts.clone();
        async move {
            while let Ok((stream, _)) = placeholder.accept().await {
                attempts.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        }
    });

    let stop = CancellationToken::new();
    let mut config = translator_config(pool_address, "translator-dns-fallback", None, STRICT);
    config.nominal_hashrate = 30_000.0;
    config.upstreams = vec![
        // `.invalid` never resolves (RFC 2606).
        UpstreamEndpoint {
            address: "no-such-host.invalid:1".parse()?,
            authority_public_key: public_key(),
        },
        UpstreamEndpoint {
            address: format!("localhost:{}", pool_address.port()).parse()?,
            authority_public_key: public_key(),
        },
    ];
    let translator =
        translator::start_with_limits(config, Sv1Limits::default(), None, stop.clone()).await?;

    // Round after round: the name fails to resolve, the fallback's placeholder hangs up, a
    // back-off, and again. The translator neither gives up nor panics.
    wait_until(
        Duration::from_secs(60),
        "three rounds of attempts past the unresolvable pool",
        || async { attempts.load(Ordering::SeqCst) >= 3 },
    )
    .await?;
    assert!(!translator.task.is_finished(), "the translator stopped");
    assert_eq!(translator.stats.pool_connected.load(Ordering::Relaxed), 0);
    assert_eq!(translator.stats.pool_connections.load(Ordering::Relaxed), 0);

    // The fallback pool comes up on its port: the translator's next round mines on it.
    counting.abort();
    let _ = counting.await;
    let pool = TestPool::start(tp.running.listen_address, plain_pool(pool_address)).await?;
    let m = mining_device_sv1::start(
        sv1_miner_options(translator.downstream_address, "frank.rig", 20_000.0),
        stop.clone(),
    );
    wait_until(
        Duration::from_secs(60),
        "shares accepted through the named fallback pool",
        || async { m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3 },
    )
    .await?;
    assert_eq!(m.stats.shares_rejected.load(Ordering::Relaxed), 0);
    assert_eq!(translator.stats.pool_connected.load(Ordering::Relaxed), 1);

    stop.cancel();
    m.task.await?;
    translator.task.await?;
    pool.stop().await?;
    tp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mint_links_to_the_pool_by_name() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new().start().await?;
    let dir = tempfile::tempdir()?;
    let link = stack.pool.running.mint_link_address;
    let mut config = mint_run_config(dir.path(), link, loopback_any_port());
    config.pool_address = HostPort::new("localhost", link.port())?;
    let shutdown = CancellationToken::new();
    let mint = mint::start(config, shutdown.clone()).await?;
    wait_until(
        Duration::from_secs(30),
        "the mint link up through the name localhost",
        || async { mint.issuer.stats().pool_link_up.load(Ordering::Relaxed) == 1 },
    )
    .await?;
    shutdown.cancel();
    mint.task.await?;
    stack.stop().await
}
