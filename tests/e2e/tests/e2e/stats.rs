//! Stats end to end: the pool reports to stats-pool, the translator to stats-proxy, while an SV1
//! miner mines through the translator. Both services see the channel / miner, hashrate samples
//! from accepted work, health, and exactly the ehash that was issued and is in the wallet.

use std::time::Duration;

use hashpool_e2e::REGTEST_NBITS;
use hashpool_e2e::{
    init_tracing, promtool_check, start_stats, stats_get, stats_reporter, sv1_miner_options,
    wait_until, PoolOptions, Stack,
};
use hashpool_stats::Role;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use translator::stats_report::StatsReporting;

const HARD_NBITS: u32 = 0x1e0f_ffff;

fn health_of(health: &Value, name: &str) -> Option<bool> {
    health["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?
        .get("up")?
        .as_bool()
}

fn amount(v: &Value) -> i64 {
    v["total_amount"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_and_translator_stats_reach_their_services() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let stop = CancellationToken::new();
    let stats_pool = start_stats(&dir.path().join("sp"), Role::Pool, stop.clone()).await?;
    let stats_proxy = start_stats(&dir.path().join("sx"), Role::Translator, stop.clone()).await?;

    // The translator mines into the wallet's key and mints with its minter.
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            stats_reporting: Some(pool::config::StatsReporting {
                reporter: stats_reporter(&stats_pool, Role::Pool, "pool-7"),
                interval: Duration::from_millis(500),
            }),
            ..Default::default()
        })
        .with_wallet()
        .with_translator("translator-stats", 20_000.0, |_| {})
        .start()
        .await?;
    let (pool, wallet) = (&stack.pool, stack.wallet());
    let translator = &stack.translator().running;
    translator::stats_report::spawn(
        translator.stats.clone(),
        Some(wallet.clone()),
        StatsReporting {
            reporter: stats_reporter(&stats_proxy, Role::Translator, "translator-stats"),
            interval: Duration::from_millis(500),
            upstream: pool.address().to_string(),
        },
        stop.clone(),
    );
    let miner_stop = CancellationToken::new();
    let miner = mining_device_sv1::start(
        sv1_miner_options(translator.downstream_address, "alice.rig1", 30_000.0),
        miner_stop.clone(),
    );

    // stats-pool: the translator's channel with accepted shares, a hashrate from its work,
    // every service up, ehash issued.
    wait_until(
        Duration::from_secs(90),
        "stats-pool to see the channel's work and ehash",
        || async {
            let Ok(channels) = stats_get(&stats_pool, "/api/v1/subjects?kind=channel").await else {
                return false;
            };
            let busy = channels["subjects"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["label"] == "translator-stats"
                        && c["shares_total"].as_i64() > Some(0)
                        && c["hashrate"].as_f64() > Some(0.0)
                })
            });
            let issued = stats_get(&stats_pool, "/api/v1/issuance")
                .await
                .is_ok_and(|i| amount(&i) > 0);
            busy && issued
        },
    )
    .await?;
    let health = stats_get(&stats_pool, "/api/v1/health").await?;
    for service in ["pool-7", "template-provider", "mint"] {
        assert_eq!(
            health_of(&health, service),
            Some(true),
            "{service}: {health}"
        );
    }
    let hashrate = stats_get(&stats_pool, "/api/v1/hashrate?range=1h").await?;
    assert!(hashrate["samples"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["hashrate"].as_f64() > Some(0.0))));
    // The chain as the pool mines it: the block after the provider's tip, at its difficulty
    // (a block found meanwhile moves the tip: each look compares with the chain then), and the
    // round's effort so far.
    wait_until(
        Duration::from_secs(30),
        "the network in stats-pool",
        || async {
            let (Ok(status), Ok(n)) = (
                stack.tp.status().await,
                stats_get(&stats_pool, "/api/v1/network").await,
            ) else {
                return false;
            };
            n["network"]["height"] == u64::from(status.height) + 1
        },
    )
    .await?;
    let network = stats_get(&stats_pool, "/api/v1/network").await?;
    assert_eq!(
        network["network"]["difficulty"].as_f64(),
        Some(hashpool_shares::chain::difficulty(HARD_NBITS)),
        "{network}"
    );
    assert!(network["effort"].as_f64() >= Some(0.0), "{network}");

    // stats-proxy: the SV1 miner by its worker name, the pool up, the wallet's balance.
    wait_until(
        Duration::from_secs(60),
        "stats-proxy to see the miner and the balance",
        || async {
            let miners = stats_get(&stats_proxy, "/api/v1/subjects?kind=miner").await;
            let seen = miners.is_ok_and(|m| {
                m["subjects"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|m| m["label"] == "alice.rig1" && m["shares_total"].as_i64() > Some(0))
                })
            });
            let balance = stats_get(&stats_proxy, "/api/v1/balance?range=1h").await;
            let funded = balance.is_ok_and(|b| {
                b["samples"]
                    .as_array()
                    .and_then(|s| s.last())
                    .is_some_and(|s| s["amount"].as_i64() > Some(0))
            });
            seen && funded
        },
    )
    .await?;
    let health = stats_get(&stats_proxy, "/api/v1/health").await?;
    assert_eq!(health_of(&health, "pool"), Some(true), "{health}");
    assert_eq!(
        health_of(&health, "translator-stats"),
        Some(true),
        "{health}"
    );

    // Once mining stops and the last quotes are minted, both services hold exactly the ehash
    // in the wallet.
    miner_stop.cancel();
    miner.task.await?;
    wait_until(
        Duration::from_secs(60),
        "issuance in both services to equal the wallet's balance",
        || async {
            let _ = wallet.recover().await;
            let Ok(balance) = wallet.balance().await else {
                return false;
            };
            let pool_side = stats_get(&stats_pool, "/api/v1/issuance").await;
            let proxy_side = stats_get(&stats_proxy, "/api/v1/issuance").await;
            balance > 0
                && pool_side.is_ok_and(|i| amount(&i) == balance as i64)
                && proxy_side.is_ok_and(|i| amount(&i) == balance as i64)
        },
    )
    .await?;

    // Both services' /metrics are valid Prometheus exposition.
    for s in [&stats_pool, &stats_proxy] {
        let text = reqwest::get(format!("http://{}/metrics", s.http_address))
            .await?
            .text()
            .await?;
        let problems = promtool_check(&text)?;
        assert!(problems.is_empty(), "{problems:?}\n{text}");
        assert!(text.contains("_reports_total"), "{text}");
    }

    stop.cancel();
    stack.stop().await
}

/// Blocks the pool finds reach stats-pool with the height and reward the chain gives them, and
/// each one's effort; the network is the block after the tip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_reach_stats_with_their_height_and_reward() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let stop = CancellationToken::new();
    let stats_pool = start_stats(&dir.path().join("sp"), Role::Pool, stop.clone()).await?;
    // Mempool transactions, so rewards carry fees beside the subsidy.
    let stack = Stack::new()
        .nbits(REGTEST_NBITS)
        .mempool_tx_every_ms(100)
        .with_pool(PoolOptions {
            shares_per_minute: 60.0,
            stats_reporting: Some(pool::config::StatsReporting {
                reporter: stats_reporter(&stats_pool, Role::Pool, "pool-b"),
                interval: Duration::from_millis(300),
            }),
            ..Default::default()
        })
        .start()
        .await?;
    let tp = &stack.tp;
    let miner = stack.miner("alice", 20_000.0);
    // The blocks stats-pool lists that the chain has at their height (on a fast chain a block
    // can lose the race for its height), each with the chain's record of it.
    let connected = || async {
        let mut found = Vec::new();
        let Ok(listed) = stats_get(&stats_pool, "/api/v1/blocks").await else {
            return found;
        };
        for b in listed["blocks"].as_array().cloned().unwrap_or_default() {
            let Some(height) = b["height"].as_u64() else {
                continue;
            };
            let url = format!("http://{}/blocks/{height}", tp.running.http_address);
            let Ok(answer) = reqwest::get(url).await else {
                continue;
            };
            if let Ok(chain) = answer.json::<Value>().await {
                if chain["hash"] == b["hash"] {
                    found.push((b, chain));
                }
            }
        }
        found
    };
    wait_until(
        Duration::from_secs(90),
        "two of the pool's blocks in stats-pool and on the chain",
        || async { connected().await.len() >= 2 },
    )
    .await?;
    for (listed, chain) in &connected().await {
        assert_eq!(
            listed["reward_sats"], chain["coinbase_value_sats"],
            "{listed} {chain}"
        );
        assert_eq!(
            listed["difficulty"].as_f64(),
            Some(hashpool_shares::chain::difficulty(REGTEST_NBITS)),
            "{listed}"
        );
        assert!(listed["effort"].as_f64().is_some(), "{listed}");
    }
    wait_until(Duration::from_secs(30), "the network's height", || async {
        let (Ok(status), Ok(n)) = (
            tp.status().await,
            stats_get(&stats_pool, "/api/v1/network").await,
        ) else {
            return false;
        };
        n["network"]["height"] == u64::from(status.height) + 1
    })
    .await?;
    stop.cancel();
    stack.stop.cancel();
    miner.task.await?;
    stack.stop().await
}
