//! Which pool the translator mines on: a fallback list (the first pool is down, the second
//! serves), and a plain SV2 pool without the mint-quote extension (mining works; no ehash is
//! locked to the translator's key).

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, public_key, test_key, translator_config,
    wait_until, PoolOptions, TestPool, TestProvider,
};
use mining_device_sv1::{Sv1Miner, Sv1MinerOptions};
use tokio_util::sync::CancellationToken;
use translator::{TranslatorRunConfig, UpstreamEndpoint};

/// A miner difficulty far above the channel's: miners get the channel's target, every share
/// goes to the pool.
const STRICT: f32 = 1.0e12;

const HARD_NBITS: u32 = 0x1e0f_ffff;

fn miner(address: std::net::SocketAddr, stop: &CancellationToken) -> Sv1Miner {
    mining_device_sv1::start(
        Sv1MinerOptions {
            address,
            user: "dave.rig".into(),
            threads: 1,
            limit_hashrate: Some(20_000.0),
        },
        stop.clone(),
    )
}

fn endpoint(address: std::net::SocketAddr) -> UpstreamEndpoint {
    UpstreamEndpoint {
        address,
        authority_public_key: public_key(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_pool_and_mines_without_the_extension() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    // A plain pool: no mint-quote extension; channels without a key accrue to its default key.
    let default_key = test_key("plain-pool-default");
    let pool = TestPool::start(
        tp.running.listen_address,
        PoolOptions {
            shares_per_minute: 120.0,
            mint_quote_extension: false,
            default_locking_key: Some(default_key),
            ..Default::default()
        },
    )
    .await?;
    let translator_key = test_key("translator-own");
    let stop = CancellationToken::new();
    let translator = translator::start(
        TranslatorRunConfig {
            // Nothing listens on the first pool's address.
            upstreams: vec![endpoint(free_address()), endpoint(pool.address())],
            nominal_hashrate: 30_000.0,
            ..translator_config(
                pool.address(),
                "translator-fallback",
                Some(translator_key),
                STRICT,
            )
        },
        stop.clone(),
    )
    .await?;
    let m = miner(translator.downstream_address, &stop);
    wait_until(
        Duration::from_secs(60),
        "shares accepted via the second pool",
        || async { m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3 },
    )
    .await?;
    assert_eq!(m.stats.shares_rejected.load(Ordering::Relaxed), 0);
    let ledger = pool.running.ledger.clone();
    // Without the extension the translator's key never reached the pool.
    assert!(ledger.accrual(&translator_key).await?.is_none());
    assert!(ledger.accrual(&default_key).await?.expect("accrued").shares >= 3);
    stop.cancel();
    m.task.await?;
    translator.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
