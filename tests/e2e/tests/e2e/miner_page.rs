//! web-pool's page per miner key in a real headless Chromium (Debian's `chromium` through
//! `chromedriver` and fantoccini): a pool and a mint, two SV2 miners whose channels are locked
//! to one key (one with markup in its user identity) and a miner of another key. The page of
//! that key lists both workers, their names shown as text, with their current and best
//! difficulty and last share, and a refused share by its reason; once mining stopped and every batch
//! was answered, the page's shares, ehash accrued / quoted / not yet quoted, hashrate windows,
//! last share and blocks equal the pool's ledger. The main page's search box leads there, a bad
//! key gets the 400 page and an unused key the "no shares yet" page.

use std::{sync::atomic::Ordering, time::Duration};

use fantoccini::Locator;
use hashpool_e2e::{
    free_address, init_tracing, loopback_any_port, miner_options, public_key,
    raw_client::RawClient, test_key, wait_until, PoolOptions, Stack,
};
use mining_sv2::SubmitSharesStandard;
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use pool::ledger::{LedgerReader, ReadLimits};
use tokio_util::sync::CancellationToken;

use crate::browser::{text_of, Driver};

/// `hashes / unit` to three decimals, rounded down: how the page writes ehash.
fn units(hashes: u128, unit: u128) -> String {
    format!("{}.{:03}", hashes / unit, hashes % unit * 1000 / unit)
}

const WORKER_1: &str = "<i>rig-1</i>";
const WORKER_2: &str = "rig-2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_page_shows_the_ledgers_numbers_for_its_key() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        })
        .with_mint()
        .start()
        .await?;
    let pool = &stack.pool;
    let api = pool
        .running
        .api_address
        .expect("the test pool serves the miner API");
    let stop = CancellationToken::new();
    let web = web_pool::start(
        web_pool::WebPoolConfig {
            address: loopback_any_port(),
            // Only the miner pages are looked at: the rest may show its roles as down.
            stats_url: format!("http://{}", free_address()),
            pool_monitoring_url: format!("http://{}", pool.monitoring),
            pool_api_url: Some(format!("http://{api}")),
            mint_url: stack.mint().url(),
            refresh_secs: 1,
            allowed_hosts: Vec::new(),
        },
        stop.clone(),
    )
    .await?;
    let web_url = format!("http://{}", web.address);

    // Two workers of one key, and a miner of another.
    let key = test_key("miner-page");
    let miner_stop = CancellationToken::new();
    let miners: Vec<_> = [
        (WORKER_1, key),
        (WORKER_2, key),
        ("other", test_key("other")),
    ]
    .into_iter()
    .map(|(user, k)| {
        let mut options = miner_options(pool.address(), user, 20_000.0, true);
        options.locking_key = Some(k);
        mining_device::start(options, miner_stop.clone())
    })
    .collect();
    let ledger = pool.running.ledger.clone();
    wait_until(
        Duration::from_secs(120),
        "shares and a quote for the key",
        || async {
            let shares = ledger
                .accrual(&key)
                .await
                .ok()
                .flatten()
                .is_some_and(|a| a.shares >= 10);
            let quoted = ledger
                .batches_of(&key)
                .await
                .is_ok_and(|b| b.iter().any(|b| b.quote_id.is_some()));
            let both = miners[..2]
                .iter()
                .all(|m| m.stats.shares_acknowledged.load(Ordering::Relaxed) > 0);
            shares && quoted && both
        },
    )
    .await?;

    let driver = Driver::start().await?;
    let profile = tempfile::tempdir()?;
    let browser = driver.browser(profile.path()).await?;

    // The main page's search box leads to the key's page.
    browser.goto(&format!("{web_url}/")).await?;
    browser
        .find(Locator::Id("miner-key"))
        .await?
        .send_keys(&key.to_hex())
        .await?;
    browser.find(Locator::Id("miner-go")).await?.click().await?;
    let page_url = format!("{web_url}/miner/{}", key.to_hex());
    wait_until(Duration::from_secs(30), "the key's page", || async {
        browser
            .current_url()
            .await
            .is_ok_and(|u| u.as_str() == page_url)
            && text_of(&browser, "#ehash-accrued").await.is_some()
    })
    .await?;

    // While mining: both workers of the key, the other key's miner not; names shown as text.
    wait_until(Duration::from_secs(30), "both workers listed", || async {
        let workers = text_of(&browser, "#workers").await.unwrap_or_default();
        workers.contains(WORKER_1) && workers.contains(WORKER_2)
    })
    .await?;
    let workers = text_of(&browser, "#workers").await.unwrap_or_default();
    assert!(!workers.contains("other"), "{workers}");
    // Each worker's row says when its newest share was accepted.
    assert!(workers.to_lowercase().contains("last share"), "{workers}");
    wait_until(
        Duration::from_secs(30),
        "a last share per worker",
        || async {
            let workers = text_of(&browser, "#workers").await.unwrap_or_default();
            workers.matches(" s ago").count() + workers.matches(" min ago").count() == 2
        },
    )
    .await?;
    assert!(
        browser.find(Locator::Css("#workers i")).await.is_err(),
        "a user identity was rendered as markup"
    );
    // Each worker's current and best difficulty as the pool's miner API has them (vardiff may
    // move them between two reads: wait for a page and an answer that agree).
    let http = reqwest::Client::new();
    let miner_api = format!("http://{api}/api/v1/miners/{}", key.to_hex());
    wait_until(
        Duration::from_secs(30),
        "each worker's difficulties on the page",
        || async {
            let Ok(answer) = http.get(&miner_api).send().await else {
                return false;
            };
            let Ok(answer) = answer.json::<serde_json::Value>().await else {
                return false;
            };
            let page = text_of(&browser, "#workers").await.unwrap_or_default();
            let workers = answer["workers"].as_array().cloned().unwrap_or_default();
            workers.len() == 2
                && workers.iter().all(|w| {
                    let current = w["difficulty"].as_f64().unwrap_or(-1.0);
                    let best = w["best_difficulty"].as_f64().unwrap_or(-1.0);
                    best > 0.0
                        && page.contains(&hashpool_web::units::difficulty(current))
                        && page.contains(&hashpool_web::units::difficulty(best))
                })
        },
    )
    .await?;
    // A third channel of the key sends a share on a job that never was: the page lists the
    // refusal by its reason.
    let mut raw = RawClient::connect(pool.address(), Some(public_key())).await?;
    let raw_channel = raw.open_standard_channel("miner-page").await?;
    raw.send(MiningOwned::SubmitSharesStandard(SubmitSharesStandard {
        channel_id: raw_channel,
        sequence_number: 1,
        job_id: 0xdead_beef,
        nonce: 7,
        ntime: 1,
        version: 0x2000_0000,
    }))
    .await?;
    let reason = raw
        .recv_until(Duration::from_secs(10), |m| match m {
            AnyMessageOwned::Mining(MiningOwned::SubmitSharesError(e)) => {
                Some(hashpool_sv2_io::text(&e.error_code))
            }
            _ => None,
        })
        .await?;
    wait_until(
        Duration::from_secs(30),
        "the refusal on the page by its reason",
        || async {
            // The honest workers may have stale shares refused after a block (regtest): only
            // this reason is the raw channel's alone.
            let rejected = text_of(&browser, "#rejected").await.unwrap_or_default();
            let count = text_of(&browser, "#shares-rejected")
                .await
                .and_then(|c| c.parse::<u64>().ok());
            rejected.contains(&format!("{reason} 1")) && count >= Some(1)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}: refused with `{reason}`"))?;
    drop(raw);

    // Stop mining and let every batch be answered: the ledger stops moving.
    miner_stop.cancel();
    for m in miners {
        m.task.await?;
    }
    pool.wait_until_settled(&key, Duration::from_secs(60))
        .await?;
    let accrual = ledger.accrual(&key).await?.expect("the key accrued");
    let (share_work, share_rows) = ledger.share_work(&key).await?;
    assert_eq!((share_work, share_rows), (accrual.total, accrual.shares));
    let batches = ledger.batches_of(&key).await?;
    let quoted: u64 = batches
        .iter()
        .filter(|b| b.quote_id.is_some() && b.refused_code.is_none())
        .map(|b| b.amount)
        .sum();
    let requested: u64 = batches
        .iter()
        .filter(|b| b.quote_id.is_none() && b.refused_code.is_none())
        .map(|b| b.amount)
        .sum();
    let unit = pool.running.config.unit_work.work().hashes();
    let (total, pending) = (accrual.total.hashes(), accrual.pending.hashes());
    let reader = LedgerReader::open(
        &pool.ledger_path,
        pool.running.config.unit_work,
        ReadLimits::default(),
    )
    .await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // No windows: only the last share and the blocks are read from it.
    let report = reader.key_report(&key, now_ms, &[]).await?;
    let last_share = report.last_share_ms.expect("a last share");

    // Every share was mined within the last ten minutes: each window holds all of the work.
    let expected = [
        ("#shares-accepted", accrual.shares.to_string()),
        ("#ehash-accrued", units(total, unit)),
        ("#ehash-quoted", quoted.to_string()),
        ("#ehash-requested", requested.to_string()),
        ("#ehash-pending", units(pending, unit)),
        (
            "#ehash-unquoted",
            units(pending + u128::from(requested) * unit, unit),
        ),
        ("#blocks-found", report.blocks_found.to_string()),
        (
            "#hashrate-10m",
            hashpool_web::units::hashrate(total as f64 / 600.0),
        ),
        (
            "#hashrate-1h",
            hashpool_web::units::hashrate(total as f64 / 3_600.0),
        ),
        (
            "#hashrate-24h",
            hashpool_web::units::hashrate(total as f64 / 86_400.0),
        ),
    ];
    assert_eq!(
        u128::from(quoted + requested) * unit + pending,
        total,
        "the ledger's own invariant"
    );
    let shown = || async {
        let mut shown = Vec::new();
        for (css, _) in &expected {
            shown.push(text_of(&browser, css).await.unwrap_or_default());
        }
        shown
    };
    let want: Vec<String> = expected.iter().map(|(_, v)| v.clone()).collect();
    // The page reloads its content every second: wait for the reload after the last batch.
    wait_until(
        Duration::from_secs(30),
        "the page to show the ledger's numbers",
        || async { shown().await == want },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; want {want:?}"))?;
    let last_ms = browser
        .find(Locator::Id("last-share"))
        .await?
        .attr("data-ms")
        .await?;
    assert_eq!(last_ms, Some(last_share.to_string()));
    let blocks_listed = browser
        .find_all(Locator::Css("#blocks tr"))
        .await?
        .len()
        .saturating_sub(1);
    assert_eq!(
        blocks_listed as u64,
        report
            .blocks_found
            .min(u64::from(ReadLimits::default().blocks))
    );
    // The miners are gone: once the pool has seen their connections close, no channel of the
    // key is listed.
    wait_until(Duration::from_secs(30), "no worker listed", || async {
        text_of(&browser, "#workers")
            .await
            .is_some_and(|w| w.contains("no channel open"))
    })
    .await?;

    // A bad key: the 400 page; a key nobody mined for: the honest empty page.
    let bad = format!("{web_url}/miner/not-a-key");
    assert_eq!(reqwest::get(&bad).await?.status().as_u16(), 400);
    browser.goto(&bad).await?;
    let problem = text_of(&browser, "#problem").await.unwrap_or_default();
    assert!(problem.contains("Not a miner key"), "{problem}");
    let unused = test_key("nobody-mined-with-this");
    browser
        .goto(&format!("{web_url}/miner/{}", unused.to_hex()))
        .await?;
    let unknown = text_of(&browser, "#unknown").await.unwrap_or_default();
    assert!(unknown.contains("No shares from this key yet"), "{unknown}");

    browser.close().await?;
    stop.cancel();
    stack.stop().await
}
