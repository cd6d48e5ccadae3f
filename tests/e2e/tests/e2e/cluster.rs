//! Two pool instances on one PostgreSQL ledger, the mint on PostgreSQL (docs/deployment.md,
//! "Several pool instances"). Pool A runs in the test with the mint linked to it; pool B is a
//! process. A miner with its own key mines on A; a translator (its own key, pools B then A)
//! mines on B until B is SIGKILLed, then on A. B's batches are sent to the mint by A (any
//! instance resends every open batch); the quotes of the translator's work recorded at A are
//! published to B. Afterwards every acknowledged share is in the ledger, each key's issued ehash
//! is exactly its accepted work across both instances, once, and each wallet holds exactly what
//! was issued to its key. (The same share cannot reach both instances through the protocol:
//! their extranonce spaces differ. The ledger's `instances_tests` send one share to both.)
//!
//! Needs a server: `HASHPOOL_TEST_POSTGRES_URL` (.ci/run starts Debian's PostgreSQL).

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use ext_mint_quote::LockingKey;
use hashpool_e2e::{
    init_tracing, loopback_any_port, miner_options, mint_run_config, open_wallet,
    postgres::{self, TestDatabase},
    process::{pool_config, RoleProcess, Topology},
    sv1_miner_options, translator_config, wait_until, PoolOptions, TestMint, TestPool,
    TestProvider,
};
use pool::ledger::{AccrualLedger, LedgerLocation};
use tokio_util::sync::CancellationToken;

const UNIT_WORK: f64 = 1e-6;
const EXE: &str = env!("CARGO_BIN_EXE_e2e-role");
const HARD_NBITS: u32 = 0x1e0f_ffff;

/// What the ledger says of `key`: its issued ehash (answered batches) plus its pending work is
/// exactly its accepted work (the share log), no batch refused, one quote per batch.
async fn issued_exactly(ledger: &AccrualLedger, key: &LockingKey) -> anyhow::Result<u64> {
    let unit = ledger.unit_work().work().hashes();
    let accrual = ledger.accrual(key).await?.expect("the key accrued");
    let (logged, shares) = ledger.share_work(key).await?;
    assert_eq!((accrual.total, accrual.shares), (logged, shares));
    let batches = ledger.batches_of(key).await?;
    assert!(batches
        .iter()
        .all(|b| b.quote_id.is_some() && b.refused_code.is_none()));
    let quotes: std::collections::HashSet<_> =
        batches.iter().filter_map(|b| b.quote_id.clone()).collect();
    assert_eq!(quotes.len(), batches.len(), "one quote per batch");
    let issued: u64 = batches.iter().map(|b| b.amount).sum();
    assert_eq!(
        u128::from(issued) * unit + accrual.pending.hashes(),
        logged.hashes(),
        "every unit of accepted work issued once, the rest pending"
    );
    assert!(accrual.pending.hashes() < unit);
    Ok(issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_on_one_postgresql_ledger_issue_each_keys_work_once_through_a_sigkill(
) -> anyhow::Result<()> {
    let Some(server) = postgres::server_url() else {
        return Ok(());
    };
    init_tracing();
    let ledger = TestDatabase::create(&server, "cluster_ledger").await?;
    let mint = TestDatabase::create(&server, "cluster_mint").await?;
    let dir = tempfile::tempdir()?;
    let result = run(dir.path(), &ledger.url, &mint.url).await;
    ledger.drop().await?;
    mint.drop().await?;
    result
}

async fn run(dir: &Path, ledger_url: &str, mint_db_url: &str) -> anyhow::Result<()> {
    let tp = TestProvider::start(&dir.join("chain"), loopback_any_port(), HARD_NBITS, 0).await?;
    // Pool A: in the test, the mint's link.
    let pool_a = TestPool::start(
        tp.running.listen_address,
        PoolOptions {
            shares_per_minute: 120.0,
            unit_work: UNIT_WORK,
            ledger_database_url: Some(ledger_url.to_string()),
            server_id: 1,
            ..Default::default()
        },
    )
    .await?;
    // Pool B: a process on the same ledger, its own extranonce space.
    let net_b = Topology::free();
    let global_b = dir.join("global-b.toml");
    std::fs::write(&global_b, net_b.global_config(UNIT_WORK))?;
    let pool_b_toml = dir.join("pool-b.toml");
    let config = pool_config(tp.running.listen_address, &dir.join("unused.sqlite"))
        .replace("server_id = 3", "server_id = 2")
        .replace(
            "mint_quote_extension = true\n",
            &format!("mint_quote_extension = true\nledger_database_url = \"{ledger_url}\"\n"),
        );
    anyhow::ensure!(config.contains("server_id = 2") && config.contains(ledger_url));
    std::fs::write(&pool_b_toml, config)?;
    let args = vec![
        "-c".to_string(),
        pool_b_toml.display().to_string(),
        "-g".into(),
        global_b.display().to_string(),
    ];
    let mut pool_b = RoleProcess::start(Path::new(EXE), "pool-b", "pool", args, dir)?;

    let mint_dir = dir.join("mint");
    std::fs::create_dir_all(&mint_dir)?;
    let mut mint_config = mint_run_config(
        &mint_dir,
        pool_a.running.mint_link_address,
        hashpool_e2e::free_address(),
    );
    mint_config.database_url = Some(mint_db_url.to_string());
    let mint = TestMint::start_with(mint_config).await?;

    let alice = open_wallet(&dir.join("alice"), &mint.url()).await?;
    let proxy = open_wallet(&dir.join("proxy"), &mint.url()).await?;
    let (alice_key, proxy_key) = (alice.sv2_locking_key(), proxy.sv2_locking_key());
    let stop = CancellationToken::new();
    let alice_miner = mining_device::start(
        mining_device::MinerOptions {
            locking_key: Some(alice_key),
            ..miner_options(pool_a.address(), "alice", 20_000.0, true)
        },
        stop.clone(),
    );
    // Pool B is listening before the translator starts (else it begins on A, its fallback).
    wait_until(Duration::from_secs(60), "pool B up", || async {
        reqwest::get(format!("http://{}/api/v1/clients", net_b.monitoring))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await?;
    // The translator: pool B first, pool A when B is gone.
    let mut tconfig = translator_config(net_b.pool, "proxy", Some(proxy_key), 20_000.0);
    tconfig.upstreams.push(translator::UpstreamEndpoint {
        address: pool_a.address().into(),
        authority_public_key: hashpool_e2e::public_key(),
    });
    let translator = translator::start(tconfig, stop.clone()).await?;
    let sv1 = mining_device_sv1::start(
        sv1_miner_options(translator.downstream_address, "proxy.rig", 20_000.0),
        stop.clone(),
    );

    let ledger = &pool_a.running.ledger;
    let answered = |key: LockingKey, n: usize| async move {
        ledger
            .batches_of(&key)
            .await
            .is_ok_and(|b| b.iter().filter(|b| b.quote_id.is_some()).count() >= n)
    };
    let outcome = async {
        wait_until(
            Duration::from_secs(120),
            "both keys issued ehash",
            || async { answered(alice_key, 2).await && answered(proxy_key, 2).await },
        )
        .await?;
        // The translator mines on B (the only connection B has; its monitoring refreshes every
        // second).
        let clients = || async {
            let answer: stratum_apps::monitoring::Sv2ClientsResponse =
                reqwest::get(format!("http://{}/api/v1/clients", net_b.monitoring))
                    .await?
                    .json()
                    .await?;
            anyhow::Ok(answer.total)
        };
        wait_until(
            Duration::from_secs(30),
            "the translator on pool B",
            || async { clients().await.is_ok_and(|n| n == 1) },
        )
        .await?;
        let before = ledger.accrual(&proxy_key).await?.map_or(0, |a| a.shares);
        pool_b.kill().await?;
        // The translator moves to A; its key's work goes on accruing in the one ledger.
        wait_until(
            Duration::from_secs(120),
            "the translator's shares accepted by pool A",
            || async {
                ledger
                    .accrual(&proxy_key)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|a| a.shares >= before + 5)
            },
        )
        .await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = outcome {
        eprintln!("--- pool-b ---\n{}", pool_b.log_tail(60));
        return Err(e);
    }
    stop.cancel();
    let (alice_stats, proxy_stats) = (alice_miner.stats.clone(), translator.stats.clone());
    alice_miner.task.await?;
    sv1.task.await?;
    translator.task.await?;
    assert!(sv1.stats.shares_acknowledged.load(Ordering::Relaxed) > 0);
    // Nothing acknowledged is lost: every share a pool acknowledged is in the one ledger (a
    // share pool B committed as it was killed may be there unacknowledged).
    let acked = [
        (
            alice_key,
            alice_stats.shares_acknowledged.load(Ordering::Relaxed),
        ),
        (
            proxy_key,
            proxy_stats.shares_accepted_by_pool.load(Ordering::Relaxed),
        ),
    ];
    for (key, acked) in acked {
        let held = ledger.accrual(&key).await?.map_or(0, |a| a.shares);
        assert!(
            acked > 0 && held >= acked,
            "{held} shares held, {acked} acknowledged"
        );
    }

    for key in [alice_key, proxy_key] {
        pool_a
            .wait_until_settled(&key, Duration::from_secs(60))
            .await?;
    }
    // A reader of its own reads the same numbers (the ledger is the database, not a pool).
    let reader = AccrualLedger::open(
        LedgerLocation::Postgres(ledger_url.to_string()),
        "hash",
        pool_a.running.config.unit_work,
    )
    .await?;
    for (key, wallet) in [(alice_key, &alice), (proxy_key, &proxy)] {
        let issued = issued_exactly(&reader, &key).await?;
        assert_eq!(issued, issued_exactly(ledger, &key).await?);
        assert!(issued > 0);
        // The mint issued exactly that to the key: the wallet mints every quote of it.
        wait_until(
            Duration::from_secs(60),
            "the wallet holds every quote of its key",
            || async {
                wallet.recover().await.is_ok() && wallet.balance().await.is_ok_and(|b| b == issued)
            },
        )
        .await?;
    }
    drop(reader);
    pool_a.stop().await?;
    mint.stop().await?;
    Ok(())
}
