//! The mint on PostgreSQL (cdk-postgres, `mint.database_url`; issue 18's first part): ehash
//! issued for accepted work is minted from a mint whose database is PostgreSQL, exactly; a
//! restart keeps keysets and proofs; a second mint instance on the same database (and seed)
//! serves the same keysets and the same spent set (NUT-07). Needs a server: `HASHPOOL_TEST_POSTGRES_URL`
//! (a role allowed to create databases; .ci/run starts Debian's PostgreSQL and sets it). Each
//! run works in a database of its own, dropped at the end.

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
async fn the_mint_on_postgresql_issues_exactly_and_two_instances_share_one_spent_set(
) -> anyhow::Result<()> {
    let Some(server) = postgres::server_url() else {
        return Ok(());
    };
    init_tracing();
    let database = TestDatabase::create(&server, "mint").await?;
    // Over TLS (Debian's server has it on, with its snakeoil certificate).
    let url = format!("{}?sslmode=require", database.url);

    let dir = tempfile::tempdir()?;
    let result = async {
        let tp = TestProvider::start(
            &dir.path().join("chain"),
            loopback_any_port(),
            REGTEST_NBITS,
            0,
        )
        .await?;
        let pool = TestPool::start(
            tp.running.listen_address,
            PoolOptions {
                shares_per_minute: 120.0,
                ..Default::default()
            },
        )
        .await?;
        let mint_dir = dir.path().join("mint");
        std::fs::create_dir_all(&mint_dir)?;
        // A fixed port outside the ephemeral range: the restarted mint is where the wallet
        // knows it.
        let http =
            std::net::SocketAddr::from(([127, 0, 0, 1], ports_outside_ephemeral_range(1)[0]));
        let mut config = mint_run_config(&mint_dir, pool.running.mint_link_address, http);
        config.database_url = Some(url.clone());
        let mint = TestMint::start_with(config.clone()).await?;
        let (sessions, encrypted) = database.sessions().await?;
        assert!(
            sessions > 0 && encrypted == sessions,
            "the mint's sessions are encrypted: {encrypted} of {sessions}"
        );
        let wallet = open_wallet(&dir.path().join("wallet"), &mint.url()).await?;
        let key = wallet.sv2_locking_key();

        // Work into the wallet's key; every quote minted from the PostgreSQL mint.
        let stop = CancellationToken::new();
        let miner = mining_device::start(
            mining_device::MinerOptions {
                locking_key: Some(key),
                ..miner_options(pool.address(), "pg", 20_000.0, true)
            },
            stop.clone(),
        );
        wait_until(Duration::from_secs(120), "ehash issued", || async {
            pool.running
                .ledger
                .batches_of(&key)
                .await
                .is_ok_and(|b| b.iter().any(|b| b.quote_id.is_some()))
        })
        .await?;
        stop.cancel();
        miner.task.await?;
        pool.wait_until_settled(&key, Duration::from_secs(30))
            .await?;
        let issued = pool.issued(&key).await?;
        wait_until(
            Duration::from_secs(60),
            "the wallet holds every quote",
            || async {
                wallet.recover().await.is_ok() && wallet.balance().await.is_ok_and(|b| b == issued)
            },
        )
        .await?;
        assert!(issued > 0);
        let before = keysets(&mint).await?;

        // A second instance on the same database and seed (its pool link nowhere): the same
        // keysets, and one spent set: proofs a wallet spends at the first are spent at the
        // second (NUT-07).
        let mut second_config = config.clone();
        second_config.http_address = loopback_any_port();
        second_config.monitoring_address = loopback_any_port();
        second_config.pool_address = "127.0.0.1:1".parse()?;
        let second = TestMint::start_with(second_config).await?;
        assert_eq!(keysets(&second).await?, before);
        // The proofs the send took: in the token (pending), or spent by a swap that made it.
        let ys_of = |proofs: cdk::nuts::Proofs| {
            proofs
                .iter()
                .map(|p| p.y().map(|y| y.to_hex()))
                .collect::<Result<std::collections::BTreeSet<_>, _>>()
        };
        let held = ys_of(wallet.cdk().get_unspent_proofs().await?)?;
        let token = wallet.send(1).await?;
        let pending: Vec<String> = ys_of(wallet.cdk().get_pending_spent_proofs().await?)?
            .into_iter()
            .collect();
        let left = ys_of(wallet.cdk().get_unspent_proofs().await?)?;
        let ys: Vec<String> = held.difference(&left).cloned().collect();
        assert!(!ys.is_empty());
        // The token's proofs are not spent yet, at either instance.
        if !pending.is_empty() {
            let unspent = second.proof_states(&pending).await?;
            assert!(
                unspent.len() == pending.len() && unspent.iter().all(|s| s == "UNSPENT"),
                "{unspent:?}"
            );
        }
        let again = open_wallet(&dir.path().join("again"), &mint.url()).await?;
        assert_eq!(again.receive(&token).await?, 1);
        let at_second = second.proof_states(&ys).await?;
        assert!(
            at_second.len() == ys.len() && at_second.iter().all(|s| s == "SPENT"),
            "spent at the first instance, spent at the second: {at_second:?}"
        );
        second.stop().await?;

        // A restart on the same database keeps keysets and proofs.
        mint.stop().await?;
        let mint = TestMint::start_with(config).await?;
        assert_eq!(keysets(&mint).await?, before);
        assert_eq!(wallet.balance().await?, issued - 1);
        let token = wallet.send(1).await?;
        let more = open_wallet(&dir.path().join("more"), &mint.url()).await?;
        assert_eq!(more.receive(&token).await?, 1);
        mint.stop().await?;
        pool.stop().await?;
        tp.stop().await?;
        anyhow::Ok(())
    }
    .await;
    let dropped = database.drop().await;
    result?;
    dropped
}
