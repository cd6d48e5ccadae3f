//! A pool and mint that ran on SQLite move to PostgreSQL with their commands (`pool
//! migrate-ledger`, `mint migrate-database`; docs/deployment.md, section 12): the totals match,
//! and afterwards the restarted pool and mint go on as before. The wallet holds what it held,
//! the mint serves the same keysets, proofs spent before the move are spent after it and the
//! others spend, the key's accrual and share log are the file's. Mining goes on: every key's
//! issued ehash is exactly its accepted work across the move. Needs a server:
//! `HASHPOOL_TEST_POSTGRES_URL` (.ci/run sets it).

use std::time::Duration;

use hashpool_e2e::{
    init_tracing, loopback_any_port, miner_options, mint_run_config, open_wallet,
    ports_outside_ephemeral_range,
    postgres::{self, TestDatabase},
    wait_until, PoolOptions, TestMint, TestPool, TestProvider, REGTEST_NBITS,
};
use tokio_util::sync::CancellationToken;

async fn keysets(mint: &TestMint) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::get(format!("{}/v1/keysets", mint.url()))
        .await?
        .error_for_status()?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_pool_and_mint_move_to_postgresql_and_go_on_exactly() -> anyhow::Result<()> {
    let Some(server) = postgres::server_url() else {
        return Ok(());
    };
    init_tracing();
    let ledger = TestDatabase::create(&server, "moved_ledger").await?;
    let mint = TestDatabase::create(&server, "moved_mint").await?;
    let dir = tempfile::tempdir()?;
    let result = run(dir.path(), &ledger.url, &mint.url).await;
    ledger.drop().await?;
    mint.drop().await?;
    result
}

async fn run(dir: &std::path::Path, ledger_url: &str, mint_url: &str) -> anyhow::Result<()> {
    let tp = TestProvider::start(&dir.join("chain"), loopback_any_port(), REGTEST_NBITS, 0).await?;
    let ledger_path = dir.join("ledger.sqlite");
    let options = |url: Option<&str>| PoolOptions {
        shares_per_minute: 120.0,
        ledger_path: ledger_path.clone(),
        ledger_database_url: url.map(str::to_string),
        ..Default::default()
    };
    let pool = TestPool::start(tp.running.listen_address, options(None)).await?;
    let mint_dir = dir.join("mint");
    std::fs::create_dir_all(&mint_dir)?;
    // A fixed port outside the ephemeral range: the mint comes back where the wallet knows it.
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], ports_outside_ephemeral_range(1)[0]));
    let mut config = mint_run_config(&mint_dir, pool.running.mint_link_address, http);
    let mint = TestMint::start_with(config.clone()).await?;
    let wallet = open_wallet(&dir.join("wallet"), &mint.url()).await?;
    let key = wallet.sv2_locking_key();

    // Ehash for the wallet's key; some of it spent (a token sent and received elsewhere).
    let mine = |pool: std::net::SocketAddr, stop: CancellationToken| {
        mining_device::start(
            mining_device::MinerOptions {
                locking_key: Some(key),
                ..miner_options(pool, "moving", 20_000.0, true)
            },
            stop,
        )
    };
    let stop = CancellationToken::new();
    let miner = mine(pool.address(), stop.clone());
    wait_until(Duration::from_secs(120), "ehash issued", || async {
        pool.running
            .ledger
            .batches_of(&key)
            .await
            .is_ok_and(|b| b.iter().filter(|b| b.quote_id.is_some()).count() >= 2)
    })
    .await?;
    stop.cancel();
    miner.task.await?;
    pool.wait_until_settled(&key, Duration::from_secs(30))
        .await?;
    let issued_before = pool.issued(&key).await?;
    wait_until(
        Duration::from_secs(60),
        "the wallet holds its ehash",
        || async {
            wallet.recover().await.is_ok()
                && wallet.balance().await.is_ok_and(|b| b == issued_before)
        },
    )
    .await?;
    let ys_of = |proofs: cdk::nuts::Proofs| {
        proofs
            .iter()
            .map(|p| p.y().map(|y| y.to_hex()))
            .collect::<Result<std::collections::BTreeSet<_>, _>>()
    };
    let held = ys_of(wallet.cdk().get_unspent_proofs().await?)?;
    let token = wallet.send(1).await?;
    let other = open_wallet(&dir.join("other"), &mint.url()).await?;
    assert_eq!(other.receive(&token).await?, 1);
    let left = ys_of(wallet.cdk().get_unspent_proofs().await?)?;
    let spent: Vec<String> = held.difference(&left).cloned().collect();
    let unspent: Vec<String> = left.iter().cloned().collect();
    assert!(!spent.is_empty() && !unspent.is_empty());
    let keysets_before = keysets(&mint).await?;
    let accrual_before = pool.running.ledger.accrual(&key).await?.expect("accrued");
    // A share the pool took, to replay after the move.
    let log_before = pool.running.ledger.share_work(&key).await?;

    // The move, both roles stopped.
    mint.stop().await?;
    pool.stop().await?;
    let moved = pool::ledger::migrate_ledger(&ledger_path, ledger_url).await?;
    assert!(moved.quotes >= 2 && moved.shares == accrual_before.shares);
    let mint_db = mint_dir.join("mint.sqlite");
    anyhow::ensure!(config.database_path == mint_db, "the mint's file");
    let totals = mint::migrate::migrate_database(&mint_db, mint_url).await?;
    assert!(totals.proofs.get("SPENT").is_some_and(|(n, _)| *n > 0));
    assert_eq!(totals.mint_quotes.2, issued_before);
    // A second move into the same databases is refused.
    assert!(pool::ledger::migrate_ledger(&ledger_path, ledger_url)
        .await
        .is_err());
    let err = mint::migrate::migrate_database(&mint_db, mint_url)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already holds a mint"), "{err}");

    // Both on PostgreSQL, where they were.
    let pool = TestPool::start(tp.running.listen_address, options(Some(ledger_url))).await?;
    config.database_url = Some(mint_url.to_string());
    config.pool_address = pool.running.mint_link_address.into();
    let mint = TestMint::start_with(config).await?;
    assert_eq!(keysets(&mint).await?, keysets_before);
    let ledger = &pool.running.ledger;
    assert_eq!(ledger.accrual(&key).await?, Some(accrual_before));
    assert_eq!(ledger.share_work(&key).await?, log_before);
    assert_eq!(wallet.balance().await?, issued_before - 1);
    let at_pg = mint.proof_states(&spent).await?;
    assert!(
        at_pg.len() == spent.len() && at_pg.iter().all(|s| s == "SPENT"),
        "{at_pg:?}"
    );
    let at_pg = mint.proof_states(&unspent).await?;
    assert!(at_pg.iter().all(|s| s == "UNSPENT"), "{at_pg:?}");
    // The rest spends.
    let token = wallet.send(1).await?;
    assert_eq!(other.receive(&token).await?, 1);

    // Mining goes on into the same accrual; everything accepted is issued once.
    let stop = CancellationToken::new();
    let miner = mine(pool.address(), stop.clone());
    wait_until(Duration::from_secs(120), "more ehash issued", || async {
        ledger
            .batches_of(&key)
            .await
            .is_ok_and(|b| b.iter().map(|b| b.amount).sum::<u64>() > issued_before + 2)
    })
    .await?;
    stop.cancel();
    miner.task.await?;
    pool.wait_until_settled(&key, Duration::from_secs(30))
        .await?;
    let accrual = ledger.accrual(&key).await?.expect("accrued");
    let (logged, shares) = ledger.share_work(&key).await?;
    assert_eq!((accrual.total, accrual.shares), (logged, shares));
    let issued = pool.issued(&key).await?;
    let unit = ledger.unit_work().work().hashes();
    assert_eq!(
        u128::from(issued) * unit + accrual.pending.hashes(),
        logged.hashes()
    );
    wait_until(
        Duration::from_secs(60),
        "the wallet holds the new ehash",
        || async {
            wallet.recover().await.is_ok() && wallet.balance().await.is_ok_and(|b| b == issued - 2)
        },
    )
    .await?;
    mint.stop().await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
