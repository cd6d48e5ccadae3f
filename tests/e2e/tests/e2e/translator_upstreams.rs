//! Which pool the translator mines on: a fallback list (the first pool is down, the second
//! serves), and a plain SV2 pool without the mint-quote extension (mining works; no ehash is
//! locked to the translator's key).

use std::{sync::atomic::Ordering, time::Duration};

use hashpool_e2e::{
    free_address, init_tracing, public_key, test_key, wait_until, PoolOptions, Stack,
};
use translator::UpstreamEndpoint;

/// A miner difficulty far above the channel's: miners get the channel's target, every share
/// goes to the pool.
const STRICT: f32 = 1.0e12;

const HARD_NBITS: u32 = 0x1e0f_ffff;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_pool_and_mines_without_the_extension() -> anyhow::Result<()> {
    init_tracing();
    // A plain pool: no mint-quote extension; channels without a key accrue to its default key.
    let default_key = test_key("plain-pool-default");
    let translator_key = test_key("translator-own");
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            mint_quote_extension: false,
            default_locking_key: Some(default_key),
            ..Default::default()
        })
        .with_translator("translator-fallback", STRICT, move |c| {
            // Nothing listens on the first pool's address.
            c.upstreams.insert(
                0,
                UpstreamEndpoint {
                    address: free_address().into(),
                    authority_public_key: public_key(),
                },
            );
            c.nominal_hashrate = 30_000.0;
            c.locking_key = Some(translator_key);
        })
        .start()
        .await?;
    let m = stack.sv1_miner("dave.rig", 20_000.0);
    wait_until(
        Duration::from_secs(60),
        "shares accepted via the second pool",
        || async { m.stats.shares_acknowledged.load(Ordering::Relaxed) >= 3 },
    )
    .await?;
    assert_eq!(m.stats.shares_rejected.load(Ordering::Relaxed), 0);
    let ledger = stack.pool.running.ledger.clone();
    // Without the extension the translator's key never reached the pool.
    assert!(ledger.accrual(&translator_key).await?.is_none());
    assert!(ledger.accrual(&default_key).await?.expect("accrued").shares >= 3);
    stack.stop.cancel();
    m.task.await?;
    stack.stop().await
}
