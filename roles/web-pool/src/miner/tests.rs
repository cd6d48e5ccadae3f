use std::net::SocketAddr;

use axum::{routing::get, Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::WebPoolConfig;

const KNOWN: &str = "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const UNKNOWN: &str = "03bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// Shaped like a key, but (in this stand-in) not on the curve.
const OFF_CURVE: &str = "02cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

fn known_answer() -> Value {
    json!({
        "key": KNOWN, "unit": "hash", "now_ms": 1_700_000_060_000i64, "known": true,
        "shares_accepted": 42, "last_share_ms": 1_700_000_000_000i64,
        "work": {"total": "3234", "pending": "234", "unit_work": "1000"},
        "ehash": {"accrued": "3.234", "quoted": 2, "requested": 1, "pending": "0.234",
                  "unquoted": "1.234"},
        "hashrate": [
            {"window": "10m", "secs": 600, "hashrate": 1500.0, "work": "900000", "shares": 40,
             "complete": true, "covered_from_ms": 0},
            {"window": "1h", "secs": 3600, "hashrate": 2.5e12, "work": "9", "shares": 42,
             "complete": false, "covered_from_ms": 1_700_000_000_000i64}
        ],
        "workers_total": 1,
        "workers": [{"client_id": 1, "vendor": "<b>vendor</b>", "channel_id": 7,
                     "kind": "standard", "user_identity": "<img src=x onerror=alert(1)>",
                     "difficulty": 0.5, "best_difficulty": 2500000.0, "nominal_hashrate": 1000.0,
                     "shares_accepted": 40, "shares_rejected": 3,
                     "last_share_ms": 1_700_000_030_000i64,
                     "rejected_by_reason": {"stale-share": 3}}],
        "shares_rejected": 3, "rejected_by_reason": {"stale-share": 3},
        "blocks_found": 1,
        "blocks": [{"hash": "00000000deadbeef", "channel_id": 7, "at_ms": 1_700_000_000_000i64}],
        "quotes": [{"quote_id": "q<1>", "amount": 2, "at_ms": 1_700_000_000_000i64}]
    })
}

/// A stand-in for the pool's miner API.
async fn pool_api() -> SocketAddr {
    let app = Router::new().route(
        "/api/v1/miners/{key}",
        get(|Path(key): Path<String>| async move {
            match key.as_str() {
                KNOWN => (StatusCode::OK, Json(known_answer())),
                OFF_CURVE => (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "not a valid public key"})),
                ),
                _ => (
                    StatusCode::OK,
                    Json(json!({"key": key, "unit": "hash", "known": false, "workers": []})),
                ),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn web_pool(pool_api_url: Option<String>) -> (String, CancellationToken) {
    let stop = CancellationToken::new();
    let running = crate::start(
        WebPoolConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            stats_url: "http://127.0.0.1:9".into(),
            pool_monitoring_url: "http://127.0.0.1:9".into(),
            pool_api_url,
            mint_url: "http://127.0.0.1:9".into(),
            refresh_secs: 5,
            allowed_hosts: Vec::new(),
        },
        stop.clone(),
    )
    .await
    .unwrap();
    (format!("http://{}", running.address), stop)
}

async fn fetch(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_bad_key_gets_a_clear_400_page_with_the_input_escaped() {
    let api = pool_api().await;
    let (web, _stop) = web_pool(Some(format!("http://{api}"))).await;
    let (status, page) = fetch(&format!("{web}/miner/%3Cscript%3Ealert(1)%3C%2Fscript%3E")).await;
    assert_eq!(status, 400);
    assert!(page.contains("Not a miner key"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert(1)"));
    for bad in [
        "nope",
        &KNOWN[..64],
        &format!("04{}", &KNOWN[2..]),
        &"a".repeat(3000),
    ] {
        let (status, _) = fetch(&format!("{web}/miner/{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        let (status, _) = fetch(&format!("{web}/miner/{bad}/body")).await;
        assert_eq!(status, 400, "{bad}");
    }
    // Shaped right, refused by the pool: still the 400 page, with the pool's reason.
    let (status, page) = fetch(&format!("{web}/miner/{OFF_CURVE}")).await;
    assert_eq!(status, 400);
    assert!(page.contains("not a valid public key"));
}

#[tokio::test]
async fn an_unknown_key_is_an_honest_page() {
    let api = pool_api().await;
    let (web, _stop) = web_pool(Some(format!("http://{api}"))).await;
    let (status, page) = fetch(&format!("{web}/miner/{UNKNOWN}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("No shares from this key yet"));
    assert!(page.contains(UNKNOWN));
}

#[tokio::test]
async fn a_miner_page_shows_the_pools_numbers_escaped() {
    let api = pool_api().await;
    let (web, _stop) = web_pool(Some(format!("http://{api}"))).await;
    let (status, page) = fetch(&format!("{web}/miner/{KNOWN}")).await;
    assert_eq!(status, 200);
    for expected in [
        r#"id="shares-accepted">42<"#,
        r#"id="ehash-accrued">3.234<"#,
        r#"id="ehash-quoted">2<"#,
        r#"id="ehash-unquoted">1.234<"#,
        r#"id="ehash-requested">1<"#,
        r#"id="ehash-pending">0.234<"#,
        r#"id="blocks-found">1<"#,
        r#"id="hashrate-10m">1.50 kH/s<"#,
        r#"id="hashrate-1h">2.50 TH/s<"#,
        "the newest only",
        r#"data-ms="1700000000000""#,
        "2023-11-14 22:13:20 UTC",
        "&lt;img src=x onerror=alert(1)&gt;",
        "&lt;b&gt;vendor&lt;/b&gt;",
        "q&lt;1&gt;",
        "stale-share",
        "00000000deadbeef",
        "2.50 M",
        // The worker's last share, 30 s before the answer's `now_ms`.
        "<td>30 s ago</td>",
    ] {
        assert!(page.contains(expected), "missing {expected}");
    }
    assert!(!page.contains("<img src=x"));
    assert!(!page.contains("<b>vendor"));
    // The part the page reloads is the same content.
    let (status, body) = fetch(&format!("{web}/miner/{KNOWN}/body")).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"id="ehash-accrued">3.234<"#));
    assert!(!body.contains("<html"));
}

#[tokio::test]
async fn the_search_box_goes_to_the_keys_page() {
    let api = pool_api().await;
    let (web, _stop) = web_pool(Some(format!("http://{api}"))).await;
    let (status, index) = fetch(&format!("{web}/")).await;
    assert_eq!(status, 200);
    assert!(index.contains(r#"<form id="miner-search" action="/miner" method="get">"#));
    let upper = KNOWN.to_ascii_uppercase();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("{web}/miner"))
        .query(&[("key", format!("  {upper} "))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], format!("/miner/{KNOWN}"));
    let (status, page) = fetch(&format!("{web}/miner?key=%3Cb%3E")).await;
    assert_eq!(status, 400);
    assert!(page.contains("&lt;b&gt;"));
    let (status, _) = fetch(&format!("{web}/miner")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn without_the_pools_api_the_page_says_why() {
    let (web, _stop) = web_pool(None).await;
    let (status, page) = fetch(&format!("{web}/miner/{KNOWN}")).await;
    assert_eq!(status, 503);
    assert!(page.contains("pool.api_address"));
    // Configured but down.
    let (web, _stop) = web_pool(Some("http://127.0.0.1:9".into())).await;
    let (status, page) = fetch(&format!("{web}/miner/{KNOWN}")).await;
    assert_eq!(status, 502);
    assert!(page.contains("unreachable"));
}

#[test]
fn a_keys_epochs_are_valued_at_their_final_rate_and_shown_with_their_state() {
    let mut body = known_answer();
    body["epochs"] = json!([{"epoch": 1, "ehash": 5}, {"epoch": 0, "ehash": 3}]);
    let mut answer: answer::MinerAnswer = serde_json::from_value(body).unwrap();
    let report = json!({"epochs": [
        {"index": 0, "state": "final", "rate": [1_000, 7]},
        {"index": 1, "state": "open", "rate": null},
    ]});
    answer.value_epochs(&report);
    let values: Vec<_> = answer
        .epoch_values
        .iter()
        .map(|e| (e.epoch, e.ehash, e.state.as_str(), e.sats))
        .collect();
    // 3 of the epoch's 7 ehash at 1,000 sats: 428 (rounded down).
    assert_eq!(
        values,
        vec![(1, 5, "open", None), (0, 3, "final", Some(428))]
    );
    let page = render::miner(&answer);
    assert!(page.contains("ehash by epoch"), "{page}");
    assert!(page.contains("0.00000428 BTC"), "{page}");
    assert!(page.contains("not final yet"), "{page}");
    // Without the pool's report the states are unknown, nothing is valued.
    answer.value_epochs(&Value::Null);
    assert!(answer
        .epoch_values
        .iter()
        .all(|e| e.state == "unknown" && e.sats.is_none()));
}
