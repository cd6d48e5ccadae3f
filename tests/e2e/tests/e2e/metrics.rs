//! Prometheus `/metrics` on the translator, the mint and the pool: each parses as Prometheus
//! exposition (`promtool check metrics`), Hashpool's own metrics pass promtool's lint too, and
//! their values are the roles' real counts (the pool's ledger figures among them). Every role
//! exports `hashpool_build_info` and the process metrics. The translator's JSON status agrees.
//! The mint's metrics are on its monitoring address only, never on its public Cashu port.

use std::time::Duration;

use hashpool_e2e::{
    init_tracing, loopback_any_port, metric_value, promtool_check, wait_until, PoolOptions, Stack,
};
use mining_device_sv1::Sv1MinerOptions;
use serde_json::Value;
use translator::TranslatorStats;

const HARD_NBITS: u32 = 0x1e0f_ffff;

async fn scrape(address: std::net::SocketAddr) -> anyhow::Result<String> {
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await?
        .error_for_status()?;
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(kind.starts_with("text/plain"), "content type {kind}");
    Ok(response.text().await?)
}

/// `hashpool_build_info` and the process metrics, as every role exports them.
fn common_metrics(text: &str, role: &str) {
    // `commit` is the build's HASHPOOL_GIT_COMMIT, or "unknown".
    let (role, version) = (
        format!(r#"role="{role}""#),
        format!(r#"version="{}""#, env!("CARGO_PKG_VERSION")),
    );
    assert!(
        text.lines().any(|l| l.starts_with("hashpool_build_info{")
            && l.contains(&role)
            && l.contains(&version)
            && l.ends_with(" 1")),
        "build info of {role}, {version}: {text}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            metric_value(text, name).is_some_and(|v| v > 0.0),
            "{name}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_is_valid_exposition_with_real_values() -> anyhow::Result<()> {
    init_tracing();
    // The translator mines into the wallet's key and mints with its minter.
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            share_batch_size: 1,
            ..Default::default()
        })
        .with_wallet()
        .with_translator("translator-metrics", 1.0e12, |c| {
            c.nominal_hashrate = 30_000.0
        })
        .start()
        .await?;
    let (pool, mint, minter, stop) = (&stack.pool, stack.mint(), stack.minter(), &stack.stop);
    let (translator, mode) = (&stack.translator().running, stack.translator().channel_mode);
    let monitoring = translator::monitoring::serve(
        loopback_any_port(),
        translator.stats.clone(),
        Some(minter.clone()),
        mode,
        stop.clone(),
    )
    .await?;
    let miner = mining_device_sv1::start(
        Sv1MinerOptions {
            address: translator.downstream_address,
            user: "frank.rig".into(),
            threads: 1,
            limit_hashrate: Some(20_000.0),
        },
        stop.clone(),
    );
    let stats = translator.stats.clone();
    wait_until(
        Duration::from_secs(90),
        "shares accepted and ehash minted",
        || async {
            TranslatorStats::get(&stats.shares_accepted_by_pool) >= 2
                && TranslatorStats::get(&minter.stats().ehash_minted) > 0
        },
    )
    .await?;

    // Translator: valid, lint-clean, and the counts are the translator's.
    let text = scrape(monitoring).await?;
    assert_eq!(promtool_check(&text)?, Vec::<String>::new(), "{text}");
    let accepted = metric_value(
        &text,
        r#"hashpool_translator_shares_total{outcome="accepted"}"#,
    )
    .expect("accepted shares exported");
    assert!(accepted >= 2.0);
    assert!(accepted <= TranslatorStats::get(&stats.shares_accepted_by_pool) as f64);
    assert_eq!(
        metric_value(&text, "hashpool_translator_pool_connected"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "hashpool_translator_sv1_connections"),
        Some(1.0)
    );
    assert!(metric_value(&text, "hashpool_wallet_ehash_minted_total").is_some_and(|v| v > 0.0));
    assert!(
        metric_value(&text, "hashpool_translator_hashrate_hashes_per_second")
            .is_some_and(|v| v > 0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            r#"hashpool_translator_shares_refused_total{by="translator",reason="duplicate"}"#
        ),
        Some(0.0),
        "{text}"
    );
    common_metrics(&text, "translator");
    let status: Value = reqwest::get(format!("http://{monitoring}/api/v1/status"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(status["pool_connected"], true);
    assert_eq!(status["channel_mode"], "aggregated");
    assert_eq!(status["sv1_connections"], 1);
    assert!(status["miners_hashrate"].as_u64().is_some_and(|h| h > 0));

    // Mint: valid, lint-clean; it issued what the wallet minted (read first: the wallet keeps
    // minting, and what it minted by then the mint had issued by the scrape).
    let minted = TranslatorStats::get(&minter.stats().ehash_minted) as f64;
    let text = scrape(mint.running.monitoring_address).await?;
    assert_eq!(promtool_check(&text)?, Vec::<String>::new(), "{text}");
    assert_eq!(metric_value(&text, "hashpool_mint_pool_link_up"), Some(1.0));
    let issued = metric_value(&text, "hashpool_mint_ehash_issued_total").expect("issued");
    assert!(issued >= minted, "issued {issued}, minted {minted}");
    assert!(
        metric_value(
            &text,
            r#"hashpool_mint_quote_requests_total{outcome="issued"}"#
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    common_metrics(&text, "mint");
    assert_ne!(mint.running.monitoring_address, mint.running.http_address);
    let public = reqwest::get(format!("{}/metrics", mint.url())).await?;
    assert_eq!(
        public.status().as_u16(),
        404,
        "metrics on the public Cashu port"
    );

    // Pool, its own metrics: lint-clean; the shares it accepted, the ledger's figures (the
    // wallet minted, so batches were created and answered; commits were timed).
    let pool_metrics = pool
        .running
        .metrics_address
        .ok_or_else(|| anyhow::anyhow!("the test pool serves its metrics"))?;
    let text = scrape(pool_metrics).await?;
    assert_eq!(promtool_check(&text)?, Vec::<String>::new(), "{text}");
    common_metrics(&text, "pool");
    // The pool's side of the mint link, up like the mint's.
    assert_eq!(
        metric_value(&text, "hashpool_pool_mint_link_up"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric_value(&text, r#"hashpool_pool_shares_total{outcome="accepted"}"#)
            .is_some_and(|v| v >= 2.0),
        "{text}"
    );
    // Commits were timed: at least one (shares that arrive together are one group commit, so
    // the count is not the shares').
    assert!(
        metric_value(&text, "hashpool_pool_ledger_commit_duration_seconds_count")
            .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    for gauge in [
        "hashpool_pool_ledger_pending_work_hashes",
        "hashpool_pool_ledger_open_batches",
        "hashpool_pool_ledger_oldest_open_batch_age_seconds",
    ] {
        assert!(
            metric_value(&text, gauge).is_some_and(|v| v >= 0.0),
            "{gauge}: {text}"
        );
    }

    // Pool (stratum-apps' monitoring): parses; its lint findings are stratum-apps' names.
    let text = scrape(pool.monitoring).await?;
    promtool_check(&text)?;
    assert!(text.contains("sv2_clients_total"), "{text}");

    // Not exposition: promtool says so.
    assert!(promtool_check("this is { not metrics\n").is_err());

    stop.cancel();
    miner.task.await?;
    stack.stop().await?;
    Ok(())
}
