//! What `monitoring/` ships works with what the roles export: the alert rules pass `promtool
//! check rules` and their unit tests (`promtool test rules`), the scrape config passes
//! `promtool check config`, and every metric the rules and the Grafana dashboard name is
//! exported by a running role. Every role answers `GET /api/v1/health` the same way.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use hashpool_e2e::{init_tracing, loopback_any_port, start_stats, wait_until, PoolOptions, Stack};
use hashpool_stats::Role;
use mining_device_sv1::Sv1MinerOptions;
use serde_json::Value;
use translator::TranslatorStats;

const HARD_NBITS: u32 = 0x1e0f_ffff;

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring")
}

/// Runs promtool with `args` in `monitoring/`; fails with its output unless it succeeds.
fn promtool(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(monitoring_dir())
        .output()
        .map_err(|e| anyhow::anyhow!("promtool (Debian package prometheus): {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "promtool {args:?}: {said}");
    Ok(said)
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool() -> anyhow::Result<()> {
    let said = promtool(&["check", "rules", "rules/hashpool.rules.yml"])?;
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&["test", "rules", "rules/hashpool.test.yml"])?;
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&["check", "config", "prometheus.yml"])?;
    assert!(said.contains("SUCCESS"), "{said}");
    Ok(())
}

/// Metric names (Hashpool's, the process metrics and stratum-apps' `sv2_*`) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let name = &text[start..i];
            if ["hashpool_", "process_", "sv2_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                names.insert(name.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names of an exposition (`_bucket`, `_sum`, `_count` of histograms included).
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

async fn get(url: String) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::get(url).await?.error_for_status()?)
}

async fn scrape(address: std::net::SocketAddr) -> anyhow::Result<String> {
    Ok(get(format!("http://{address}/metrics"))
        .await?
        .text()
        .await?)
}

async fn health(address: std::net::SocketAddr) -> anyhow::Result<Value> {
    Ok(get(format!("http://{address}/api/v1/health"))
        .await?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics_and_every_role_has_health(
) -> anyhow::Result<()> {
    init_tracing();
    let dir = monitoring_dir();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana/hashpool.json"))?)?;
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 30, "{exprs:?}");
    let mut used = BTreeSet::new();
    for expr in &exprs {
        used.extend(metric_names(expr));
    }
    let rules = metric_names(&std::fs::read_to_string(
        dir.join("rules/hashpool.rules.yml"),
    )?);
    for panel_of in [
        "hashpool_pool_",
        "hashpool_mint_",
        "hashpool_translator_",
        "hashpool_wallet_",
    ] {
        assert!(
            used.iter().any(|n| n.starts_with(panel_of)),
            "no {panel_of}* panel"
        );
    }
    used.extend(rules);

    // Every role that exports metrics, running: the pool (both endpoints), the mint, a
    // translator with a wallet and an SV1 miner, both stats services; the jd-client's exporter.
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 1,
            ..Default::default()
        })
        .with_wallet()
        .with_translator("translator-monitoring", 1.0e12, |c| {
            c.nominal_hashrate = 30_000.0
        })
        .start()
        .await?;
    let (pool, mint, minter, stop) = (&stack.pool, stack.mint(), stack.minter(), &stack.stop);
    let (translator, mode) = (&stack.translator().running, stack.translator().channel_mode);
    let translator_monitoring = translator::monitoring::serve(
        loopback_any_port(),
        translator.stats.clone(),
        Some(minter.clone()),
        mode,
        stop.clone(),
    )
    .await?;
    let stats_dir = tempfile::tempdir()?;
    let stats_pool = start_stats(&stats_dir.path().join("sp"), Role::Pool, stop.clone()).await?;
    let stats_proxy =
        start_stats(&stats_dir.path().join("sx"), Role::Translator, stop.clone()).await?;
    let miner = mining_device_sv1::start(
        Sv1MinerOptions {
            address: translator.downstream_address,
            user: "grace.rig".into(),
            threads: 1,
            limit_hashrate: Some(20_000.0),
        },
        stop.clone(),
    );
    let stats = translator.stats.clone();
    wait_until(Duration::from_secs(90), "shares accepted", || async {
        TranslatorStats::get(&stats.shares_accepted_by_pool) >= 1
    })
    .await?;

    let pool_metrics = pool
        .running
        .metrics_address
        .ok_or_else(|| anyhow::anyhow!("the test pool serves its metrics"))?;
    let pool_api = pool
        .running
        .api_address
        .ok_or_else(|| anyhow::anyhow!("the test pool serves its API"))?;
    let mut have = BTreeSet::new();
    for address in [
        pool_metrics,
        pool.monitoring,
        mint.running.monitoring_address,
        translator_monitoring,
        stats_pool.http_address,
        stats_proxy.http_address,
    ] {
        have.extend(exported(&scrape(address).await?));
    }
    // A jd-client's monitoring endpoint (its exporter needs no upstream to serve).
    let jd_client = jd_client::monitoring::serve(
        loopback_any_port(),
        Arc::new(jd_client::stats::JdClientStats::default()),
        None,
        stop.clone(),
    )
    .await?;
    have.extend(exported(&scrape(jd_client).await?));

    let missing: Vec<_> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "used by monitoring/ but exported by no role: {missing:?}\nexported: {have:?}"
    );

    // /api/v1/health: the same answer on every role's monitoring address.
    for (address, role) in [
        (pool_metrics, "pool"),
        (pool_api, "pool"),
        (mint.running.monitoring_address, "mint"),
        (translator_monitoring, "translator"),
        (jd_client, "jd-client"),
        (stats_pool.http_address, "stats-pool"),
        (stats_proxy.http_address, "stats-proxy"),
    ] {
        let h = health(address).await?;
        assert_eq!(h["status"], "ok", "{role}: {h}");
        assert_eq!(h["role"], role, "{h}");
        // Every crate has the workspace's version.
        assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h}");
    }
    // The pool's monitoring server (stratum-apps) has its own /api/v1/health.
    get(format!("http://{}/api/v1/health", pool.monitoring)).await?;

    stop.cancel();
    miner.task.await?;
    stack.stop().await?;
    Ok(())
}

/// A pool of many small miners does not spend its memory on monitoring: past
/// `pool.monitoring_max_clients` the API and its Prometheus series list only the connections
/// with the most hashrate, while the totals still count every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_lists_at_most_the_configured_connections_with_the_most_hashrate(
) -> anyhow::Result<()> {
    use hashpool_e2e::{grind, public_key, raw_client::RawClient, test_key};
    use parsers_sv2::MiningOwned;

    init_tracing();
    let wait = Duration::from_secs(60);
    let stack = Stack::new()
        .with_pool(PoolOptions {
            monitoring_max_clients: 2,
            // No vardiff pass re-estimates the claimed hashrates meanwhile.
            vardiff_interval_secs: 3600,
            ..Default::default()
        })
        .start()
        .await?;
    let pool = &stack.pool;
    pool.wait_for_work(wait).await?;

    let mut clients = Vec::new();
    for (i, hashrate) in [10.0f32, 1e6, 1e3].into_iter().enumerate() {
        let mut c = RawClient::connect(pool.address(), Some(public_key())).await?;
        grind::setup(&mut c, wait).await?;
        let user = format!("{}.m{i}", test_key(&format!("monitored-{i}")));
        match grind::open_standard(&mut c, 1, &user, hashrate, [0xff; 32], wait).await? {
            MiningOwned::OpenStandardMiningChannelSuccess(_) => {}
            other => anyhow::bail!("channel refused: {other:?}"),
        }
        clients.push(c);
    }

    let total_clients = |g: &Value| g["sv2_clients"]["total_clients"].as_u64();
    wait_until(
        wait,
        "the totals to count all three connections",
        || async {
            pool.global()
                .await
                .is_ok_and(|g| total_clients(&g) == Some(3))
        },
    )
    .await?;
    let global = pool.global().await?;
    assert_eq!(global["sv2_clients"]["standard_channels"].as_u64(), Some(3));
    let listed = pool.standard_channels().await?;
    let mut hashrates: Vec<f32> = listed.iter().map(|c| c.nominal_hashrate).collect();
    hashrates.sort_by(f32::total_cmp);
    assert_eq!(hashrates, vec![1e3, 1e6], "the two largest are listed");

    // The per-channel Prometheus series cover the listed connections only.
    let exposition = scrape(pool.monitoring).await?;
    let series_clients: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| l.starts_with("sv2_client_channel_hashrate{"))
        .filter_map(|l| l.split("client_id=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(series_clients.len(), 2, "{exposition}");
    drop(clients);
    Ok(())
}
