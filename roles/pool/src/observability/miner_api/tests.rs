use std::sync::Mutex;

use axum::{body::Body, http::Request};
use bitcoin::{hashes::Hash, Target};
use channels_sv2::{
    extranonce_manager::ExtranonceAllocator, server::standard::StandardChannel, VardiffState,
};
use hashpool_ehash::Work;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::{
    accepted_share::AcceptedShare,
    ledger::{AccrualLedger, ReadLimits},
    miners::channel_set::{ChannelEntry, ChannelKind, ChannelSet},
};

fn key(n: u8) -> LockingKey {
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
    LockingKey::from_slice(&bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize())
        .unwrap()
}

/// 1,000 hashes per ehash.
fn unit() -> UnitWork {
    UnitWork::from_work(Work::from_hashes(1_000)).unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    ledger: AccrualLedger,
    registry: Arc<Registry>,
    app: Router,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = AccrualLedger::open(&path, "hash", unit()).await.unwrap();
    let reader = LedgerReader::open(&path, unit(), ReadLimits::default())
        .await
        .unwrap();
    let registry = Arc::new(Registry::default());
    let app = MinerApi::new(reader, registry.clone(), "hash".into(), unit()).router();
    Setup {
        _dir: dir,
        ledger,
        registry,
        app,
    }
}

/// A GET on `app`: the status and the JSON body (`Null` for a body that is not JSON, such as
/// axum's own refusals). The pool's other HTTP tests use it too.
pub(crate) async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A connection of `vendor` with a standard channel `id` for `k`, named `user`.
fn open_channel(registry: &Registry, client_id: usize, id: u32, user: &str, k: LockingKey) {
    let mut allocator = ExtranonceAllocator::new(vec![0, 1], 20, 1 << 10).unwrap();
    let set = Arc::new(Mutex::new(ChannelSet::new(client_id, 0)));
    registry.insert(client_id, set.clone());
    let channel = StandardChannel::new_for_pool(
        id,
        user.into(),
        allocator.allocate_standard().unwrap(),
        Target::MAX,
        1e9,
        10,
        6.0,
        "test".into(),
        None,
    )
    .unwrap();
    let entry = ChannelEntry {
        kind: ChannelKind::Standard(channel),
        locking_key: k,
        vardiff: VardiffState::new().unwrap(),
        bootstrap_seq: 0,
        job_targets: Default::default(),
        network_target: None,
        acked: Default::default(),
        last_share_ms: None,
        best_difficulty: 0.0,
    };
    let mut set = set.lock().unwrap();
    set.vendor = "proxy-vendor".into();
    registry.open_channel(&mut set, id, entry);
}

#[tokio::test]
async fn a_bad_key_is_a_clear_400() {
    let s = setup().await;
    let valid = key(1).to_hex();
    let not_on_curve = format!("04{}", &valid[2..]);
    let plus = format!("+{}", &valid[1..]);
    let long = "a".repeat(5_000);
    for bad in [
        "nope",
        &valid[..64],
        &format!("{valid}00"),
        &not_on_curve,
        &plus,
        "%C3%A9%C3%A9%C3%A9",
        &long,
    ] {
        let (status, body) = get(&s.app, &format!("/api/v1/miners/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_unknown_key_is_an_honest_empty_answer() {
    let s = setup().await;
    let (status, body) = get(&s.app, &format!("/api/v1/miners/{}", key(9).to_hex())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["known"], false);
    assert_eq!(body["key"], key(9).to_hex());
    assert_eq!(body["shares_accepted"], 0);
    assert_eq!(body["last_share_ms"], Value::Null);
    assert_eq!(body["ehash"]["accrued"], "0.000");
    assert_eq!(body["ehash"]["quoted"], 0);
    assert_eq!(body["workers"], serde_json::json!([]));
    assert_eq!(body["blocks_found"], 0);
    assert_eq!(body["hashrate"].as_array().unwrap().len(), WINDOWS.len());
    assert!(body["hashrate"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["hashrate"] == 0.0 && w["shares"] == 0));
}

#[tokio::test]
async fn the_answer_has_the_ledgers_numbers_and_the_keys_channels() {
    let s = setup().await;
    let shares = [(1u8, 2_000u128, false), (2, 1_234, true), (3, 5_000, false)];
    let mut receipts = Vec::new();
    for (n, work, block) in shares {
        let mut hash = [0u8; 32];
        hash[0] = n;
        // Share 3 is another key's.
        let k = if n == 3 { key(2) } else { key(1) };
        receipts.push(
            s.ledger
                .record(AcceptedShare {
                    channel_id: 4,
                    locking_key: k,
                    share_hash: hash,
                    work: Work::from_hashes(work),
                    block_found: block,
                    block: None,
                    tip: 1,
                })
                .await,
        );
    }
    for r in receipts {
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    // Key 1's 3,234 hashes: 3 ehash requested and quoted, 234 hashes pending.
    let batches = s.ledger.create_batches().await.unwrap();
    let ours = batches.iter().find(|b| b.locking_key == key(1)).unwrap();
    s.ledger
        .record_quote(&ours.request_id, "q-1")
        .await
        .unwrap();
    open_channel(&s.registry, 1, 4, "<script>alert(1)</script>", key(1));
    open_channel(&s.registry, 2, 5, "someone-else", key(2));

    let (status, body) = get(&s.app, &format!("/api/v1/miners/{}", key(1).to_hex())).await;
    assert_eq!(status, StatusCode::OK);
    let accrual = s.ledger.accrual(&key(1)).await.unwrap().unwrap();
    assert_eq!(body["known"], true);
    assert_eq!(body["shares_accepted"], accrual.shares);
    assert_eq!(body["work"]["total"], accrual.total.hashes().to_string());
    assert_eq!(body["work"]["pending"], "234");
    assert_eq!(body["ehash"]["accrued"], "3.234");
    assert_eq!(body["ehash"]["quoted"], 3);
    assert_eq!(body["ehash"]["requested"], 0);
    assert_eq!(body["ehash"]["pending"], "0.234");
    assert_eq!(body["ehash"]["unquoted"], "0.234");
    assert_eq!(body["blocks_found"], 1);
    let mut raw = [0u8; 32];
    raw[0] = 2;
    assert_eq!(
        body["blocks"][0]["hash"],
        bitcoin::BlockHash::from_byte_array(raw).to_string()
    );
    assert_eq!(body["quotes"][0]["quote_id"], "q-1");
    // Both shares just committed: every window holds them.
    for w in body["hashrate"].as_array().unwrap() {
        assert_eq!(w["work"], "3234");
        assert_eq!(w["shares"], 2);
        assert_eq!(w["complete"], true);
        let secs = w["secs"].as_f64().unwrap();
        assert_eq!(w["hashrate"].as_f64().unwrap(), 3_234.0 / secs);
    }
    // Only key 1's channel, its identity as the miner sent it (escaping is the page's job).
    assert_eq!(body["workers_total"], 1);
    let worker = &body["workers"][0];
    assert_eq!(worker["user_identity"], "<script>alert(1)</script>");
    assert_eq!(worker["vendor"], "proxy-vendor");
    assert_eq!(worker["channel_id"], 4);
    assert_eq!(worker["kind"], "standard");
    assert!(worker["difficulty"].as_f64().is_some());
    assert_eq!(body["shares_rejected"], 0);
}

#[test]
fn units_are_rounded_down_to_thousandths() {
    use crate::observability::miner_view::units_text;
    assert_eq!(units_text(0, 1_000), "0.000");
    assert_eq!(units_text(3_234, 1_000), "3.234");
    assert_eq!(units_text(2_999, 3), "999.666");
    assert_eq!(units_text(u128::MAX, u128::MAX), "1.000");
    assert_eq!(units_text(5, 0), "0.000");
}
