//! The dashboards in a real headless Chromium (Debian's `chromium`, driven over WebDriver by
//! `chromedriver` and fantoccini), with every role of a local run up on 127.0.0.1: web-proxy
//! shows the balance the translator's wallet API reports and creates a token from its form;
//! web-pool shows the pool hashrate chart with data. Screenshots of both pages are written to
//! docs/ (docs/web.md shows them).

use std::{path::PathBuf, time::Duration};

use fantoccini::{
    actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT},
    Locator,
};
use hashpool_e2e::{
    init_tracing, loopback_any_port, start_stats, stats_get, stats_reporter, sv1_miner_options,
    translator_config, wait_until, wallet_config, PoolOptions, Stack,
};
use hashpool_stats::{Block, Report, Role, StatsReporter};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::browser::{text_of, Driver};
use translator::{
    role::{RoleConfig, RoleWallet},
    stats_report::StatsReporting,
};

const HARD_NBITS: u32 = 0x1e0f_ffff;

/// Where a screenshot goes: `docs/` (the pictures web.md shows) when
/// `HASHPOOL_UPDATE_SCREENSHOTS` is set, so that a test run leaves the tree as it was;
/// otherwise the test's own directory.
fn screenshot_path(dir: &std::path::Path, file: &str) -> PathBuf {
    if std::env::var_os("HASHPOOL_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(file)
    } else {
        dir.join(file)
    }
}

/// Pastes `token` into web-proxy's Receive box and submits it.
async fn receive(browser: &fantoccini::Client, token: &str) -> anyhow::Result<()> {
    browser
        .find(Locator::Css("#receive-token"))
        .await?
        .send_keys(token)
        .await?;
    browser
        .find(Locator::Css("#receive-form button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}

/// Chart `name` as uPlot drew it: whether it has a canvas, its points, and the legend's value
/// with the cursor over the middle of the plot (as a person hovering it reads it).
async fn chart_under_cursor(browser: &fantoccini::Client, name: &str) -> anyhow::Result<Value> {
    let script = r#"
        const [name] = arguments;
        const u = hp.uplots[name];
        if (!u) return { points: 0 };
        u.setCursor({ left: u.over.clientWidth / 2, top: 5 });
        const value = document.querySelector('#' + name + '-chart .u-series:nth-child(2) .u-value');
        return {
            canvas: document.querySelector('#' + name + '-chart canvas') !== null,
            points: u.data[1].filter(v => v != null).length,
            value: value ? value.textContent : null,
        };
    "#;
    Ok(browser.execute(script, vec![json!(name)]).await?)
}

/// Drags the mouse across the right half of chart `name` (press in the middle, move right,
/// release), or double-clicks it (`drag` false), through WebDriver's input actions as a person
/// would; answers the width of the time axis shown, in seconds, and whether the chart says it
/// is zoomed.
async fn drag_or_reset(
    browser: &fantoccini::Client,
    name: &str,
    drag: bool,
) -> anyhow::Result<Value> {
    let over = browser
        .find(Locator::Css(&format!("#{name}-chart .u-over")))
        .await?;
    let width = browser
        .execute(
            "return hp.uplots[arguments[0]].over.clientWidth",
            vec![json!(name)],
        )
        .await?
        .as_f64()
        .unwrap_or(0.0);
    let at = |x: f64, ms: u64| PointerAction::MoveToElement {
        element: over.clone(),
        duration: Some(Duration::from_millis(ms)),
        x,
        y: 0.0,
    };
    let down = || PointerAction::Down {
        button: MOUSE_BUTTON_LEFT,
    };
    let up = || PointerAction::Up {
        button: MOUSE_BUTTON_LEFT,
    };
    let mut mouse = MouseActions::new("mouse".into())
        .then(at(0.0, 0))
        .then(down());
    mouse = if drag {
        mouse.then(at(width * 0.45, 200)).then(up())
    } else {
        mouse.then(up()).then(down()).then(up())
    };
    browser.perform_actions(mouse).await?;
    browser.release_actions().await?;
    // uPlot applies a new scale in a microtask; an empty batch applies it now.
    let script = r#"
        const u = hp.uplots[arguments[0]];
        u.batch(() => {});
        return { span: u.scales.x.max - u.scales.x.min, zoomed: u.hpZoomed };
    "#;
    Ok(browser.execute(script, vec![json!(name)]).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_show_the_wallet_and_the_pool_in_a_real_browser() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let stop = CancellationToken::new();
    let stats_pool = start_stats(&dir.path().join("sp"), Role::Pool, stop.clone()).await?;
    let stats_proxy = start_stats(&dir.path().join("sx"), Role::Translator, stop.clone()).await?;
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .follow_chain()
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            stats_reporting: Some(pool::config::StatsReporting {
                reporter: stats_reporter(&stats_pool, Role::Pool, "pool-1"),
                interval: Duration::from_millis(500),
            }),
            ..Default::default()
        })
        .with_mint()
        .start()
        .await?;
    let (pool, mint) = (&stack.pool, stack.mint());
    let wallet_dir = tempfile::tempdir()?;
    // The translator as its binary runs it: wallet, wallet API, stats reporting, monitoring.
    let token_path = translator::wallet_api::default_token_path(&wallet_dir.path().join("w"));
    let role = translator::role::start(
        RoleConfig {
            translator: translator_config(pool.address(), "my-proxy", None, 20_000.0),
            limits: translator::Sv1Limits::default(),
            wallet: Some(RoleWallet {
                wallet: wallet_config(wallet_dir.path(), &mint.url()),
                recovery_interval: Duration::from_secs(3600),
                api_address: loopback_any_port(),
                api_token_path: token_path.clone(),
                faucet: translator::wallet_api::FaucetSettings {
                    amount: 1,
                    interval: Duration::from_secs(3600),
                },
            }),
            stats: Some(StatsReporting {
                reporter: stats_reporter(&stats_proxy, Role::Translator, "my-proxy"),
                interval: Duration::from_millis(500),
                upstream: pool.address().to_string(),
            }),
            monitoring_address: loopback_any_port(),
        },
        stop.clone(),
    )
    .await?;
    let translator = &role.translator;
    let wallet = role.wallet.clone().expect("the role opened its wallet");
    let key = wallet.sv2_locking_key();
    let wallet_api = role.wallet_api.expect("the role serves the wallet API");
    let monitoring = role.monitoring;
    let web_pool = web_pool::start(
        web_pool::WebPoolConfig {
            address: loopback_any_port(),
            stats_url: format!("http://{}", stats_pool.http_address),
            pool_monitoring_url: format!("http://{}", pool.monitoring),
            pool_api_url: pool.running.api_address.map(|a| format!("http://{a}")),
            mint_url: mint.url(),
            refresh_secs: 1,
            allowed_hosts: Vec::new(),
        },
        stop.clone(),
    )
    .await?;
    let web_proxy = web_proxy::start(
        web_proxy::WebProxyConfig {
            address: loopback_any_port(),
            stats_url: Some(format!("http://{}", stats_proxy.http_address)),
            wallet_url: format!("http://{wallet_api}"),
            translator_url: Some(format!("http://{monitoring}")),
            pool_api_url: None,
            refresh_secs: 1,
            allowed_hosts: Vec::new(),
            wallet_token_path: token_path.clone(),
        },
        stop.clone(),
    )
    .await?;

    let miner_stop = CancellationToken::new();
    let miner = mining_device_sv1::start(
        sv1_miner_options(translator.downstream_address, "alice.rig1", 30_000.0),
        miner_stop.clone(),
    );
    // Mine until the wallet holds ehash and the pool's hashrate has a few samples.
    wait_until(
        Duration::from_secs(90),
        "ehash and hashrate samples",
        || async {
            let funded = wallet.balance().await.is_ok_and(|b| b > 0);
            let sampled = stats_get(&stats_pool, "/api/v1/hashrate?range=1h")
                .await
                .is_ok_and(|h| {
                    h["samples"].as_array().is_some_and(|s| {
                        s.iter()
                            .filter(|s| s["hashrate"].as_f64() > Some(0.0))
                            .count()
                            >= 3
                    })
                });
            funded && sampled
        },
    )
    .await?;
    let driver = Driver::start().await?;
    let profile = tempfile::tempdir()?;
    let browser = driver.browser(profile.path()).await?;

    // web-proxy while the miner mines: the miner by its worker name, the pool up, ehash bars.
    browser
        .goto(&format!("http://{}/", web_proxy.address))
        .await?;
    wait_until(
        Duration::from_secs(30),
        "web-proxy's miner and ehash chart",
        || async {
            let miners = text_of(&browser, "#miners").await.unwrap_or_default();
            let bars = chart_under_cursor(&browser, "issuance")
                .await
                .unwrap_or_default();
            miners.contains("alice.rig1") && bars["points"].as_u64() > Some(0)
        },
    )
    .await?;
    hashrate_cards_show_the_work(&browser, "Miners' hashrate").await?;
    // Hovering the bars shows an amount of ehash in the legend.
    let bars = chart_under_cursor(&browser, "issuance").await?;
    assert_eq!(bars["canvas"], true, "{bars}");
    let value = bars["value"].as_str().unwrap_or_default();
    assert!(value.ends_with("hash") && value != "–", "{bars}");
    assert_eq!(text_of(&browser, "#upstream").await.as_deref(), Some("up"));
    std::fs::write(
        screenshot_path(dir.path(), "web-proxy.png"),
        browser.screenshot().await?,
    )?;

    // Stop mining and let the last quotes be minted: the balance stops moving.
    miner_stop.cancel();
    miner.task.await?;
    let http = reqwest::Client::new();
    let api_balance = || async {
        let v: Value = http
            .get(format!("http://{wallet_api}/api/v1/balance"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["balance"].as_u64()
    };
    // Settled: no work left that could become another quote, no batch waiting for the mint,
    // and the wallet holds every quote issued.
    let ledger = pool.running.ledger.clone();
    let unit = pool.running.config.unit_work.work().hashes();
    wait_until(Duration::from_secs(30), "every quote minted", || async {
        let settled = ledger
            .accrual(&key)
            .await
            .ok()
            .flatten()
            .is_some_and(|a| a.pending.hashes() < unit)
            && ledger.open_batches().await.is_ok_and(|b| b.is_empty());
        let issued: Option<u64> = ledger
            .batches_of(&key)
            .await
            .ok()
            .map(|b| b.iter().map(|b| b.amount).sum());
        let _ = wallet.recover().await;
        settled && issued.is_some() && api_balance().await == issued
    })
    .await?;
    let balance = api_balance().await.expect("the wallet API answers");
    assert!(balance > 0);
    // The page shows exactly the balance the wallet API reports.
    wait_until(
        Duration::from_secs(30),
        "web-proxy to show the balance",
        || async { text_of(&browser, "#balance").await == Some(format!("{balance} hash")) },
    )
    .await?;

    // A token from the form: it appears on the page, and the balance goes down by its amount.
    browser
        .find(Locator::Css("#token-amount"))
        .await?
        .send_keys("2")
        .await?;
    browser
        .find(Locator::Css("#token-form button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_until(Duration::from_secs(20), "the token on the page", || async {
        match browser.find(Locator::Css("#token")).await {
            Ok(e) => e
                .prop("value")
                .await
                .ok()
                .flatten()
                .is_some_and(|v| v.starts_with("cashuB")),
            Err(_) => false,
        }
    })
    .await?;
    wait_until(
        Duration::from_secs(20),
        "the new balance on the page",
        || async { text_of(&browser, "#balance").await == Some(format!("{} hash", balance - 2)) },
    )
    .await?;
    assert_eq!(api_balance().await, Some(balance - 2));
    // The wallet API refuses the same request without its token: web-proxy added it, and the
    // page never saw it.
    let direct = http
        .post(format!("http://{wallet_api}/api/v1/tokens"))
        .json(&json!({ "amount": 1 }))
        .send()
        .await?;
    assert_eq!(direct.status().as_u16(), 401);
    let token = std::fs::read_to_string(&token_path)?;
    assert!(!browser.source().await?.contains(token.trim()));
    // Another site's page (a foreign Origin) and a DNS-rebound name (a foreign Host) get
    // nothing from web-proxy; the balance stays.
    let foreign = http
        .post(format!("http://{}/api/token", web_proxy.address))
        .header("Origin", "http://evil.example")
        .json(&json!({ "amount": 1 }))
        .send()
        .await?;
    assert_eq!(foreign.status().as_u16(), 403);
    let rebound = http
        .get(format!("http://{}/api/summary", web_proxy.address))
        .header("Host", "evil.example:3030")
        .send()
        .await?;
    assert_eq!(rebound.status().as_u16(), 403);
    assert_eq!(api_balance().await, Some(balance - 2));

    // The created token has its QR code and a copy button; pasted back into "Receive", the
    // wallet takes it in again and the balance is whole.
    assert!(
        browser.find(Locator::Css("#token-qr svg")).await.is_ok(),
        "a QR code for the created token"
    );
    let created = browser
        .find(Locator::Css("#token"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    // The token names the mint as the wallet reaches it (a deployment's public URL), for
    // whichever wallet receives it.
    let decoded: cdk::nuts::Token = created.parse()?;
    assert_eq!(
        decoded.mint_url()?.to_string(),
        mint.url().trim_end_matches('/')
    );
    browser
        .find(Locator::Css("#copy-token"))
        .await?
        .click()
        .await?;
    wait_until(Duration::from_secs(10), "the copy answered", || async {
        text_of(&browser, "#token-msg")
            .await
            .is_some_and(|m| m.contains("cop"))
    })
    .await?;
    receive(&browser, &created).await?;
    wait_until(Duration::from_secs(30), "the token received", || async {
        text_of(&browser, "#receive-msg").await.as_deref() == Some("received 2 hash")
    })
    .await?;
    wait_until(
        Duration::from_secs(20),
        "the balance whole again",
        || async { api_balance().await == Some(balance) },
    )
    .await?;
    // Both are in the page's list of tokens sent and received.
    wait_until(
        Duration::from_secs(20),
        "the send and the receive listed",
        || async {
            let listed = text_of(&browser, "#transfers").await.unwrap_or_default();
            listed.contains("sent") && listed.contains("received")
        },
    )
    .await?;
    // The same token again: the wallet's refusal is shown.
    receive(&browser, &created).await?;
    wait_until(
        Duration::from_secs(30),
        "the refusal of a spent token",
        || async {
            text_of(&browser, "#receive-msg")
                .await
                .is_some_and(|m| m.contains("cannot receive"))
        },
    )
    .await?;
    assert_eq!(api_balance().await, Some(balance));

    // web-pool: the hashrate chart has a line (data), not "no data yet"; hovering it shows a
    // hashrate; dragging across it zooms in, and the zoom outlives the page's refresh;
    // a double-click zooms out. The services are up.
    browser
        .goto(&format!("http://{}/", web_pool.address))
        .await?;
    wait_until(
        Duration::from_secs(30),
        "web-pool's hashrate line",
        || async {
            chart_under_cursor(&browser, "hashrate")
                .await
                .is_ok_and(|c| c["points"].as_u64() > Some(0))
        },
    )
    .await?;
    let chart = text_of(&browser, "#hashrate-chart")
        .await
        .unwrap_or_default();
    assert!(!chart.contains("no data yet"), "{chart}");
    // Each point is stats-pool's average over its window (30 s in this stack), and says so.
    assert!(chart.contains("each point: the 30 s before it"), "{chart}");
    hashrate_cards_show_the_work(&browser, "Pool hashrate").await?;
    let line = chart_under_cursor(&browser, "hashrate").await?;
    let value = line["value"].as_str().unwrap_or_default();
    assert!(value.ends_with("H/s") && value != "–", "{line}");
    let zoomed = drag_or_reset(&browser, "hashrate", true).await?;
    assert_eq!(zoomed["zoomed"], true, "{zoomed}");
    let span = zoomed["span"].as_f64().unwrap_or(f64::MAX);
    assert!(span < 3_600.0 * 0.6, "zoomed to {span} s of the hour");
    let refreshed = text_of(&browser, "#updated").await;
    wait_until(
        Duration::from_secs(30),
        "the page's next refresh",
        || async { text_of(&browser, "#updated").await != refreshed },
    )
    .await?;
    let kept = browser
        .execute("return hp.uplots.hashrate.hpZoomed", vec![])
        .await?;
    assert_eq!(kept, json!(true), "the refresh undid the zoom");
    let reset = drag_or_reset(&browser, "hashrate", false).await?;
    assert_eq!(reset["zoomed"], false, "{reset}");
    assert_eq!(reset["span"].as_f64(), Some(3_600.0), "{reset}");
    wait_until(
        Duration::from_secs(30),
        "web-pool's services and channels",
        || async {
            let health = text_of(&browser, "#health").await.unwrap_or_default();
            let channels = text_of(&browser, "#channels").await.unwrap_or_default();
            health.matches("up").count() >= 4
                && !health.contains("down")
                && channels.contains("my-proxy")
        },
    )
    .await?;
    assert_ne!(text_of(&browser, "#ehash").await.as_deref(), Some("0 hash"));
    // The network as the pool mines it: the block after the provider's tip, its difficulty,
    // the last block found, and the round's effort so far.
    // (A block found meanwhile moves the height: each look compares with the chain then.)
    wait_until(
        Duration::from_secs(30),
        "web-pool's network cards",
        || async {
            let Ok(status) = stack.tp.status().await else {
                return false;
            };
            let mining = (status.height + 1).to_string();
            text_of(&browser, "#net-height").await.as_deref() == Some(mining.as_str())
        },
    )
    .await?;
    assert_eq!(
        text_of(&browser, "#net-difficulty").await,
        Some(hashpool_web::units::difficulty(
            hashpool_shares::chain::difficulty(HARD_NBITS)
        ))
    );
    // A block now and then at this difficulty: "none yet", or its height and age.
    let last = text_of(&browser, "#last-block").await.unwrap_or_default();
    let named = last
        .split_once(", ")
        .is_some_and(|(height, age)| height.parse::<u32>().is_ok() && age.ends_with(" ago"));
    assert!(last == "none yet" || named, "{last}");
    let effort = text_of(&browser, "#effort").await.unwrap_or_default();
    assert!(effort.ends_with(" %"), "{effort}");
    // Blocks are rare at this difficulty: a second pool instance reports one to stats-pool,
    // and the page lists it with its height and its reward in BTC.
    let other_pool = StatsReporter::spawn(
        stats_reporter(&stats_pool, Role::Pool, "pool-2"),
        stop.clone(),
    );
    other_pool.report(Report::Block(Block {
        at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        hash: "00000000000000000001d2c3b4a5968778695a4b3c2d1e0f00112233445566aa".into(),
        subject: Some("channel:9".into()),
        template_id: Some(9),
        height: Some(812_345),
        reward_sats: Some(312_501_234),
        difficulty: Some(1.0e6),
    }));
    wait_until(
        Duration::from_secs(30),
        "the reported block on web-pool",
        || async {
            let blocks = text_of(&browser, "#blocks").await.unwrap_or_default();
            blocks.contains("812345")
                && blocks.contains("3.12501234 BTC")
                && blocks
                    .contains("00000000000000000001d2c3b4a5968778695a4b3c2d1e0f00112233445566aa")
        },
    )
    .await?;
    // Settlement: the pool's terms and its open epoch.
    wait_until(
        Duration::from_secs(30),
        "web-pool's settlement section",
        || async {
            let terms = text_of(&browser, "#settlement-terms")
                .await
                .unwrap_or_default();
            let epochs = text_of(&browser, "#epochs").await.unwrap_or_default();
            terms.contains("fee 2.00 %") && epochs.contains("open")
        },
    )
    .await?;
    std::fs::write(
        screenshot_path(dir.path(), "web-pool.png"),
        browser.screenshot().await?,
    )?;

    browser.close().await?;
    stop.cancel();
    stack.stop().await
}

/// The hashrate cards of the last minute, hour and day, labelled `{what}, last ...`, once the
/// hour's shows the work mined: it covers all of it (mining started minutes ago), and the day's
/// says it has seen only part of its window.
async fn hashrate_cards_show_the_work(
    browser: &fantoccini::Client,
    what: &str,
) -> anyhow::Result<()> {
    let labels = text_of(browser, "#hashrate-windows")
        .await
        .unwrap_or_default();
    for window in ["1 min", "1 h", "24 h"] {
        let label = format!("{what}, last {window}");
        assert!(
            labels.to_lowercase().contains(&label.to_lowercase()),
            "{label} in {labels}"
        );
    }
    wait_until(
        Duration::from_secs(30),
        "the hashrate cards to show the work",
        || async {
            let hour = text_of(browser, "#hashrate-1h").await.unwrap_or_default();
            let day = text_of(browser, "#hashrate-1d").await.unwrap_or_default();
            let day_note = text_of(browser, "#hashrate-1d-note")
                .await
                .unwrap_or_default();
            hour.ends_with("H/s")
                && hour != "0.00 H/s"
                && day.ends_with("H/s")
                && day_note.contains("shares in the")
                && day_note.contains("seen so far")
        },
    )
    .await
}
