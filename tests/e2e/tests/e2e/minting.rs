//! The whole issuance path with the real mint and wallet: template provider + pool + mint + an
//! SV2 miner whose wallet mints every announced quote. The wallet ends up holding exactly the
//! ehash of the work the pool accepted from it, and the tokens are spendable.

use std::time::Duration;

use hashpool_e2e::{init_tracing, miner_options, open_wallet, wait_until, PoolOptions, Stack};
use tokio_util::sync::CancellationToken;

const HARD_NBITS: u32 = 0x1e0f_ffff;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_balance_is_exactly_the_ehash_of_accepted_work() -> anyhow::Result<()> {
    init_tracing();
    // New mempool transactions every 300 ms: jobs change under the miner all along.
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .mempool_tx_every_ms(300)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 2,
            ..Default::default()
        })
        .with_wallet()
        .start()
        .await?;
    let (pool, mint) = (&stack.pool, stack.mint());
    let (wallet, minter) = (stack.wallet(), stack.minter());
    let mut options = miner_options(pool.address(), "wallet-miner", 40_000.0, true);
    options.locking_key = Some(wallet.sv2_locking_key());
    options.minter = Some(minter.clone());
    let miner_stop = CancellationToken::new();
    let miner = mining_device::start(options, miner_stop.clone());

    wait_until(
        Duration::from_secs(120),
        "three quotes minted into the wallet",
        || async {
            minter
                .stats()
                .quotes_minted
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 3
        },
    )
    .await?;
    // Stop mining; the minter keeps running.
    miner_stop.cancel();
    miner.task.await?;

    let key = wallet.sv2_locking_key();
    let ledger = pool.running.ledger.clone();
    let unit = pool.running.config.unit_work.work().hashes();
    // The last whole unit of accrued work becomes a batch, and every batch gets its quote.
    pool.wait_until_settled(&key, Duration::from_secs(20))
        .await?;
    let batches = ledger.batches_of(&key).await?;
    let issued: u64 = batches.iter().map(|b| b.amount).sum();
    assert!(issued > 0);

    // Independently of the accrual: the work of every share the pool accepted for this key.
    let (work, shares) = ledger.share_work(&key).await?;
    assert!(shares > 0);
    assert_eq!(
        issued as u128,
        work.hashes() / unit,
        "ehash issued is the accepted work in whole units"
    );

    // Every accepted share was credited at the target of its own job.
    let stats = pool.running.stats.snapshot();
    assert_eq!(stats.shares_without_job_target, 0);
    assert!(stats.shares_accepted >= shares);

    // Quotes announced while the miner was connected were minted at once; the rest (announced
    // after it stopped) are found by a recovery.
    wallet.recover().await?;
    wait_until(
        Duration::from_secs(20),
        "the wallet holds every quote",
        || async { wallet.balance().await.is_ok_and(|b| b == issued) },
    )
    .await?;
    assert_eq!(wallet.balance().await?, issued);

    // Spendable: a token of part of it goes to a fresh wallet through a swap at the mint.
    let send = issued / 2 + 1;
    let token = wallet.send(send).await?;
    assert!(token.starts_with("cashuB"), "{token}");
    let other_dir = tempfile::tempdir()?;
    let other = open_wallet(other_dir.path(), &mint.url()).await?;
    assert_eq!(other.receive(&token).await?, send);
    assert_eq!(other.balance().await?, send);
    assert_eq!(wallet.balance().await?, issued - send);
    // The same token cannot be received twice.
    assert!(other.receive(&token).await.is_err());
    assert_eq!(other.balance().await?, send);

    stack.stop().await?;
    Ok(())
}
