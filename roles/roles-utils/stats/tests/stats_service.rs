//! The stats service end to end on 127.0.0.1: reporters in, SQLite, the HTTP API out.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use hashpool_stats::{
    ingest::IngestConfig,
    protocol::{sign_hello, Challenge, Hello, StatsMessage, PROTOCOL_VERSION},
    store::{Store, Table},
    Block, Issuance, Network, Report, ReporterConfig, Role, ServiceHealth, Snapshot, StatsReporter,
    StatsServiceConfig, Subject,
};
use hashpool_sv2_io::{connect_noise, Connection};
use serde_json::Value;
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use tokio_util::sync::CancellationToken;

/// The SRI test authority pair, for the service; reporters use keys of their own.
const SERVICE_SECRET: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
const SERVICE_PUBLIC: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

fn service_keys() -> (Secp256k1PublicKey, Secp256k1SecretKey) {
    (
        SERVICE_PUBLIC.parse().expect("public key"),
        SERVICE_SECRET.parse().expect("secret key"),
    )
}

/// A reporter key pair from 32 bytes.
fn reporter_key(byte: u8) -> (Secp256k1SecretKey, [u8; 32]) {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let secret = bitcoin::secp256k1::SecretKey::from_slice(&[byte; 32]).expect("key");
    let xonly = secret.x_only_public_key(&secp).0.serialize();
    // Written as keys are in config files (base58check), read back as the roles read them.
    let text = bitcoin::base58::encode_check(&secret.secret_bytes());
    (text.parse().expect("secret key"), xonly)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn config(dir: &std::path::Path, allowed: Vec<[u8; 32]>) -> StatsServiceConfig {
    let (public, secret) = service_keys();
    StatsServiceConfig {
        service: "stats-pool",
        ingest_address: loopback(),
        http_address: loopback(),
        ingest: IngestConfig {
            authority_public_key: public,
            authority_secret_key: secret,
            cert_validity_secs: 3600,
            role: Role::Pool,
            reporter_keys: allowed,
            max_report_age_secs: 7 * 86_400,
        },
        database: dir.join("stats.sqlite").display().to_string(),
        sample_interval: Duration::from_secs(3600),
        hashrate_window: Duration::from_secs(600),
        retention: Duration::from_secs(7 * 86_400),
    }
}

fn reporter(address: SocketAddr, secret: Secp256k1SecretKey, buffer: usize) -> ReporterConfig {
    ReporterConfig {
        address: address.into(),
        service_public_key: service_keys().0,
        secret_key: secret,
        role: Role::Pool,
        name: "pool-1".into(),
        buffer,
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(http: SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{http}{path}"))
        .await
        .expect("HTTP");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Unix seconds now: reports carry their time, and the service stores them at it.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn snapshot(work: f64, miners: &[(&str, u64, f64)]) -> Report {
    Report::Snapshot(Snapshot {
        at: now(),
        shares: miners.iter().map(|m| m.1).sum(),
        work,
        shares_rejected: 1,
        subjects: miners
            .iter()
            .map(|(id, shares, work)| Subject {
                id: format!("channel:{id}"),
                kind: "channel".into(),
                label: format!("alice.{id}"),
                shares: *shares,
                work: *work,
                shares_total: *shares,
                ..Default::default()
            })
            .collect(),
        services: vec![ServiceHealth {
            name: "template-provider".into(),
            up: true,
            detail: "127.0.0.1:18447".into(),
        }],
        wallet_balance: None,
        network: None,
    })
}

/// A pool's snapshot with `work` and the chain it mines on.
fn network_snapshot(work: f64, height: u64, difficulty: f64) -> Snapshot {
    let Report::Snapshot(mut s) = snapshot(work, &[("1", 1, work)]) else {
        unreachable!()
    };
    s.network = Some(Network {
        height,
        difficulty,
        tip_seen_at: 900,
    });
    s
}

fn found(n: u8, height: u64, difficulty: Option<f64>) -> Block {
    Block {
        at: 1_000,
        hash: format!("{n:02x}").repeat(32),
        subject: Some("channel:1".into()),
        template_id: Some(u64::from(n)),
        height: Some(height),
        reward_sats: Some(5_000_000_000 + u64::from(n)),
        difficulty,
    }
}

/// Blocks keep their height, reward and difficulty; each one's effort is the work accepted
/// since the block before it over its difficulty, and the round's effort is the work since the
/// last block over the network's difficulty now. On every backend.
async fn blocks_and_network(store: &Store) {
    assert_eq!(store.network().await.unwrap(), None);
    store
        .ingest_snapshot("pool-1", 1_000, &network_snapshot(100.0, 101, 50.0))
        .await
        .unwrap();
    assert!(store
        .ingest_block("pool-1", 1_001, &found(1, 100, Some(50.0)))
        .await
        .unwrap());
    store
        .ingest_snapshot("pool-1", 1_010, &network_snapshot(25.0, 102, 50.0))
        .await
        .unwrap();
    assert!(store
        .ingest_block("pool-1", 1_011, &found(2, 101, Some(50.0)))
        .await
        .unwrap());
    // Reported twice: kept once, its work total not moved.
    store
        .ingest_snapshot("pool-1", 1_020, &network_snapshot(10.0, 103, 40.0))
        .await
        .unwrap();
    assert!(!store
        .ingest_block("pool-1", 1_021, &found(2, 101, Some(50.0)))
        .await
        .unwrap());

    let blocks = store.blocks(10).await.unwrap();
    assert_eq!(blocks.len(), 2);
    let (last, first) = (&blocks[0], &blocks[1]);
    assert_eq!(
        (last.height, last.reward_sats),
        (Some(101), Some(5_000_000_002))
    );
    assert_eq!(
        (first.height, first.reward_sats),
        (Some(100), Some(5_000_000_001))
    );
    assert_eq!(
        first.effort,
        Some(2.0),
        "100 shares of work at difficulty 50"
    );
    assert_eq!(last.effort, Some(0.5), "25 more at difficulty 50");
    // Listed alone, the last block still counts from the one before it.
    assert_eq!(store.blocks(1).await.unwrap()[0].effort, Some(0.5));

    let network = store.network().await.unwrap().expect("reported");
    assert_eq!((network.height, network.difficulty), (103, 40.0));
    assert_eq!(network.reporter, "pool-1");
    assert_eq!(store.work_total().await.unwrap(), 135.0);

    // A block without a difficulty (an older reporter) has no effort.
    store
        .ingest_block("pool-1", 1_030, &found(3, 102, None))
        .await
        .unwrap();
    assert_eq!(store.blocks(1).await.unwrap()[0].effort, None);
}

#[tokio::test]
async fn blocks_keep_height_reward_and_effort_and_the_network_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite").display().to_string())
        .await
        .unwrap();
    blocks_and_network(&store).await;
}

/// `/api/v1/network`: the chain, the last block and the round's effort.
#[tokio::test]
async fn the_network_and_the_rounds_effort_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, xonly) = reporter_key(4);
    let stop = CancellationToken::new();
    let running = hashpool_stats::start(config(dir.path(), vec![xonly]), stop.clone())
        .await
        .unwrap();
    let http = running.http_address;
    let (status, empty) = get(http, "/api/v1/network").await;
    assert_eq!(status, 200);
    assert_eq!(empty["network"], Value::Null);
    assert_eq!(empty["last_block"], Value::Null);

    let r = StatsReporter::spawn(reporter(running.ingest_address, secret, 64), stop.clone());
    let mut s = network_snapshot(30.0, 201, 60.0);
    s.at = now();
    r.report(Report::Snapshot(s));
    let mut block = found(7, 200, Some(60.0));
    block.at = now();
    r.report(Report::Block(block));
    let mut s = network_snapshot(15.0, 202, 60.0);
    s.at = now();
    r.report(Report::Snapshot(s));
    wait_until("three reports stored", || async {
        running.stats.reports.load(Ordering::Relaxed) == 3
    })
    .await;
    let (_, n) = get(http, "/api/v1/network").await;
    assert_eq!(n["network"]["height"], 202);
    assert_eq!(n["network"]["difficulty"], 60.0);
    assert_eq!(n["last_block"]["height"], 200);
    assert_eq!(n["last_block"]["reward_sats"], 5_000_000_007u64);
    assert_eq!(
        n["last_block"]["effort"], 0.5,
        "30 shares of work at difficulty 60"
    );
    assert_eq!(n["work_since_last_block"], 15.0);
    assert_eq!(n["effort"], 0.25);
    let (_, b) = get(http, "/api/v1/blocks").await;
    assert_eq!(b["blocks"][0]["height"], 200);
    stop.cancel();
}

#[tokio::test]
async fn reports_are_stored_and_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, xonly) = reporter_key(3);
    let stop = CancellationToken::new();
    let running = hashpool_stats::start(config(dir.path(), vec![xonly]), stop.clone())
        .await
        .unwrap();
    let r = StatsReporter::spawn(reporter(running.ingest_address, secret, 64), stop.clone());
    r.report(snapshot(3.0, &[("1", 2, 2.0), ("2", 1, 1.0)]));
    let block = Block {
        at: now(),
        hash: "00".repeat(32),
        subject: Some("channel:1".into()),
        template_id: Some(9),
        ..Default::default()
    };
    r.report(Report::Block(block.clone()));
    r.report(Report::Block(block));
    for _ in 0..2 {
        r.report(Report::Issuance(Issuance {
            at: now(),
            quote_id: "q1".into(),
            amount: 42,
            locking_key: "02ab".into(),
        }));
    }
    r.report(Report::Issuance(Issuance {
        at: now(),
        quote_id: "q2".into(),
        amount: 8,
        locking_key: "02ab".into(),
    }));
    wait_until("every report stored", || async {
        running.stats.reports.load(Ordering::Relaxed) == 6
    })
    .await;
    let http = running.http_address;

    let (_, subjects) = get(http, "/api/v1/subjects?kind=channel").await;
    let subjects = subjects["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 2);
    assert_eq!(subjects[0]["id"], "pool-1/channel:1");
    assert_eq!(subjects[0]["label"], "alice.1");
    assert_eq!(subjects[0]["connected"], true);
    assert_eq!(subjects[0]["shares_total"], 2);

    // The same block and the same quote reported twice are kept once.
    let (_, blocks) = get(http, "/api/v1/blocks").await;
    assert_eq!(blocks["blocks"].as_array().unwrap().len(), 1);
    assert_eq!(blocks["blocks"][0]["subject"], "pool-1/channel:1");
    let (_, issuance) = get(http, "/api/v1/issuance?range=1h").await;
    assert_eq!(issuance["total_amount"], 50);
    assert_eq!(issuance["total_count"], 2);
    let bucketed: i64 = issuance["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(bucketed, 50);

    let (_, totals) = get(http, "/api/v1/totals").await;
    assert_eq!(totals["shares_accepted"], 3.0);
    assert_eq!(totals["shares_rejected"], 1.0);
    let (_, health) = get(http, "/api/v1/health").await;
    let services = health["services"].as_array().unwrap();
    let up = |name: &str| {
        services
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["up"].clone())
    };
    assert_eq!(up("pool-1"), Some(Value::Bool(true)));
    assert_eq!(up("template-provider"), Some(Value::Bool(true)));

    // A later snapshot without channel 2: it is no longer connected.
    r.report(snapshot(1.0, &[("1", 1, 1.0)]));
    wait_until("the second snapshot", || async {
        running.stats.reports.load(Ordering::Relaxed) == 7
    })
    .await;
    let (_, subjects) = get(http, "/api/v1/subjects?kind=channel").await;
    let gone = subjects["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "pool-1/channel:2")
        .cloned()
        .unwrap();
    assert_eq!(gone["connected"], false);

    // Bad queries get JSON errors.
    let (status, body) = get(http, "/api/v1/hashrate?range=forever").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("range"));
    let (status, _) = get(http, "/api/v1/blocks?limit=0").await;
    assert_eq!(status, 400);

    // The reporter leaving marks it (and its channels) down.
    stop.cancel();
    running.task.await.unwrap();
    let store = Store::open(&dir.path().join("stats.sqlite").display().to_string())
        .await
        .unwrap();
    // A restart keeps the history.
    assert_eq!(store.issuance_total().await.unwrap(), (50, 2));
    assert_eq!(store.blocks(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn hashrate_comes_from_accepted_work_over_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite").display().to_string())
        .await
        .unwrap();
    let Report::Snapshot(first) = snapshot(10.0, &[("1", 10, 10.0)]) else {
        unreachable!()
    };
    store
        .ingest_snapshot("pool-1", 1_000, &first)
        .await
        .unwrap();
    // 10 s after the subject appeared: 10 difficulty-1 shares in 10 s is 2^32 H/s.
    assert_eq!(store.sample(1_010, 60, 1).await.unwrap(), 3);
    let total = store.hashrate("total", 0).await.unwrap();
    assert_eq!(total, vec![(1_010, 4_294_967_296.0)]);
    let channel = store.hashrate("pool-1/channel:1", 0).await.unwrap();
    assert_eq!(channel, vec![(1_010, 4_294_967_296.0)]);
    // 60 s later with the same work again: 20 shares over the full 60 s window would count the
    // first batch too; it is out of the window, so only the second: 10 * 2^32 / 60.
    store
        .ingest_snapshot("pool-1", 1_070, &first)
        .await
        .unwrap();
    store.sample(1_071, 60, 1).await.unwrap();
    let total = store.hashrate("total", 1_071).await.unwrap();
    assert_eq!(total, vec![(1_071, 10.0 * 4_294_967_296.0 / 60.0)]);
    // Nothing accepted within the window: 0.
    store.sample(2_000, 60, 1).await.unwrap();
    assert_eq!(
        store.hashrate("total", 2_000).await.unwrap(),
        vec![(2_000, 0.0)]
    );
}

fn windows(named: &[(&str, i64)]) -> Vec<(String, i64)> {
    named
        .iter()
        .map(|(n, secs)| (n.to_string(), *secs))
        .collect()
}

/// The hashrate of the last minute, hour and day: the work within each over the time the
/// subject has reports for; a window longer than that history says it is not complete.
#[tokio::test]
async fn hashrate_windows_average_the_work_within_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.sqlite").display().to_string())
        .await
        .unwrap();
    let asked = windows(&[("1m", 60), ("1h", 3600), ("1d", 86_400)]);
    let none = store
        .hashrate_windows("total", 9_000, &asked)
        .await
        .unwrap();
    assert_eq!(none.len(), 3);
    assert!(none
        .iter()
        .all(|w| w.hashrate == 0.0 && w.covered_secs == 0 && !w.complete));
    for (at, work) in [(1_000, 100.0), (6_000, 60.0), (8_950, 30.0)] {
        let Report::Snapshot(s) = snapshot(work, &[("1", work as u64, work)]) else {
            unreachable!()
        };
        store.ingest_snapshot("pool-1", at, &s).await.unwrap();
    }
    const H: f64 = 4_294_967_296.0;
    for subject in ["total", "pool-1/channel:1"] {
        let got = store
            .hashrate_windows(subject, 9_000, &asked)
            .await
            .unwrap();
        let figures: Vec<_> = got
            .iter()
            .map(|w| {
                (
                    w.window.as_str(),
                    w.work,
                    w.shares,
                    w.covered_secs,
                    w.complete,
                )
            })
            .collect();
        assert_eq!(
            figures,
            vec![
                ("1m", 30.0, 30, 60, true),
                ("1h", 90.0, 90, 3600, true),
                // Reports since 1,000 only: 8,000 s of the day.
                ("1d", 190.0, 190, 8_000, false),
            ],
            "{subject}"
        );
        assert_eq!(got[0].hashrate, 30.0 * H / 60.0);
        assert_eq!(got[1].hashrate, 90.0 * H / 3600.0);
        assert_eq!(got[2].hashrate, 190.0 * H / 8_000.0);
    }
    // An hour later nothing new: the minute and the hour are empty, the day is not.
    let later = store
        .hashrate_windows("total", 12_600, &asked)
        .await
        .unwrap();
    assert_eq!((later[0].work, later[1].work), (0.0, 0.0));
    assert_eq!((later[0].hashrate, later[1].hashrate), (0.0, 0.0));
    assert_eq!(later[2].work, 190.0);
}

#[tokio::test]
async fn the_service_samples_on_schedule_and_retention_deletes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, xonly) = reporter_key(4);
    let stop = CancellationToken::new();
    let mut c = config(dir.path(), vec![xonly]);
    c.sample_interval = Duration::from_millis(300);
    c.hashrate_window = Duration::from_secs(60);
    let running = hashpool_stats::start(c, stop.clone()).await.unwrap();
    let r = StatsReporter::spawn(reporter(running.ingest_address, secret, 64), stop.clone());
    r.report(snapshot(5.0, &[("1", 5, 5.0)]));
    wait_until("samples of the total and the channel", || async {
        let (_, h) = get(running.http_address, "/api/v1/hashrate?range=1h").await;
        h["samples"].as_array().is_some_and(|s| s.len() >= 3)
    })
    .await;
    let (_, h) = get(
        running.http_address,
        "/api/v1/hashrate?subject=pool-1/channel:1&range=1h",
    )
    .await;
    let samples = h["samples"].as_array().unwrap();
    assert!(!samples.is_empty());
    assert!(samples
        .iter()
        .all(|s| s["hashrate"].as_f64().unwrap() > 0.0));
    // Each sample is the average over the configured window; the windows asked are answered
    // with what they cover: the channel's 5 shares are in each, none is complete yet.
    assert_eq!(h["sample_window_secs"], 60);
    let names: Vec<&str> = h["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["window"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1m", "1h", "1d"]);
    let (_, h) = get(
        running.http_address,
        "/api/v1/hashrate?subject=pool-1/channel:1&windows=10m,7d",
    )
    .await;
    let asked = h["windows"].as_array().unwrap();
    assert_eq!(asked.len(), 2);
    for w in asked {
        assert_eq!(
            (w["shares"].as_i64(), w["work"].as_f64()),
            (Some(5), Some(5.0)),
            "{w}"
        );
        assert_eq!(w["complete"], false, "{w}");
        assert!(w["hashrate"].as_f64().unwrap() > 0.0, "{w}");
    }
    let (status, body) = get(running.http_address, "/api/v1/hashrate?windows=1m,1y").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("1y"), "{body}");
    stop.cancel();
    running.task.await.unwrap();

    // Retention: rows older than the cutoff go, blocks and issuance stay.
    let store = Store::open(&dir.path().join("stats.sqlite").display().to_string())
        .await
        .unwrap();
    let Report::Snapshot(s) = snapshot(1.0, &[("9", 1, 1.0)]) else {
        unreachable!()
    };
    store.ingest_snapshot("old", 100, &s).await.unwrap();
    store.sample(110, 60, 1).await.unwrap();
    store
        .ingest_block(
            "old",
            100,
            &Block {
                hash: "11".repeat(32),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .reporter_health("old", false, "gone", 100)
        .await
        .unwrap();
    let samples_before = store.count(Table::Samples).await.unwrap();
    let pruned = store.prune(1_000).await.unwrap();
    assert!(
        pruned.work >= 2 && pruned.samples >= 1 && pruned.subjects == 1,
        "{pruned:?}"
    );
    assert_eq!(
        store.count(Table::Samples).await.unwrap(),
        samples_before - pruned.samples as i64
    );
    assert!(store.hashrate("old/channel:9", 0).await.unwrap().is_empty());
    assert_eq!(store.blocks(10).await.unwrap().len(), 1);
    // The service's own recent rows were newer than the cutoff and are still there.
    assert!(!store.hashrate("total", 1_000).await.unwrap().is_empty());
}

/// A raw Noise connection to the service, through the challenge.
async fn raw_session(address: SocketAddr) -> (Connection, Challenge) {
    let mut conn = connect_noise(address, Some(service_keys().0), 16)
        .await
        .unwrap();
    let StatsMessage::Challenge(c) = next(&mut conn).await.unwrap() else {
        panic!("expected the challenge")
    };
    (conn, c)
}

async fn next(conn: &mut Connection) -> Option<StatsMessage> {
    tokio::time::timeout(Duration::from_secs(10), conn.recv_extension())
        .await
        .ok()?
        .ok()
}

async fn refusal(conn: &mut Connection) -> String {
    match next(conn).await {
        Some(StatsMessage::Refused(r)) => {
            // Then the connection closes.
            assert!(next(conn).await.is_none());
            r.code
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_keys_and_malformed_frames_are_refused_and_the_service_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, xonly) = reporter_key(5);
    let (stranger, _) = reporter_key(6);
    let stop = CancellationToken::new();
    let running = hashpool_stats::start(config(dir.path(), vec![xonly]), stop.clone())
        .await
        .unwrap();
    let address = running.ingest_address;

    // A key the service does not list.
    let (mut conn, c) = raw_session(address).await;
    let hello = sign_hello(&c, Role::Pool, "pool-x", &stranger.into_bytes()).unwrap();
    send(&mut conn, StatsMessage::Hello(hello)).await;
    assert_eq!(refusal(&mut conn).await, "unauthorized");

    // A Hello signed for another challenge (a replay).
    let (mut conn, _) = raw_session(address).await;
    let other = Challenge {
        protocol_version: PROTOCOL_VERSION,
        nonce: "ab".repeat(32),
    };
    let replayed = sign_hello(&other, Role::Pool, "pool-1", &secret.into_bytes()).unwrap();
    send(&mut conn, StatsMessage::Hello(replayed)).await;
    assert_eq!(refusal(&mut conn).await, "unauthorized");

    // Another role, another version.
    let (mut conn, c) = raw_session(address).await;
    let hello = sign_hello(&c, Role::Translator, "t", &secret.into_bytes()).unwrap();
    send(&mut conn, StatsMessage::Hello(hello)).await;
    assert_eq!(refusal(&mut conn).await, "wrong-role");
    let (mut conn, c) = raw_session(address).await;
    let hello = Hello {
        protocol_version: 99,
        ..sign_hello(&c, Role::Pool, "pool-1", &secret.into_bytes()).unwrap()
    };
    send(&mut conn, StatsMessage::Hello(hello)).await;
    assert_eq!(refusal(&mut conn).await, "unsupported-version");

    // A report before Hello; a Hello that is not JSON.
    let (mut conn, _) = raw_session(address).await;
    send(&mut conn, snapshot_message()).await;
    assert_eq!(refusal(&mut conn).await, "unexpected");
    let (mut conn, _) = raw_session(address).await;
    let garbage = hashpool_sv2_io::encode_raw(
        hashpool_stats::protocol::EXTENSION_TYPE,
        false,
        hashpool_stats::protocol::MSG_HELLO,
        b"{\"protocol_version\": 1, \"role\": ",
    )
    .unwrap();
    conn.send_frame(garbage).await.unwrap();
    assert_eq!(refusal(&mut conn).await, "malformed");

    // Authenticated, then a malformed report: refused and disconnected; nothing stored.
    let (mut conn, c) = raw_session(address).await;
    let hello = sign_hello(&c, Role::Pool, "pool-1", &secret.into_bytes()).unwrap();
    send(&mut conn, StatsMessage::Hello(hello)).await;
    assert!(matches!(
        next(&mut conn).await,
        Some(StatsMessage::Welcome(_))
    ));
    let bad = hashpool_sv2_io::encode_raw(
        hashpool_stats::protocol::EXTENSION_TYPE,
        false,
        hashpool_stats::protocol::MSG_REPORT,
        br#"{"type":"snapshot","shares":"many"}"#,
    )
    .unwrap();
    conn.send_frame(bad).await.unwrap();
    assert_eq!(refusal(&mut conn).await, "malformed");
    assert_eq!(running.stats.refused.load(Ordering::Relaxed), 7);
    assert_eq!(running.stats.reports.load(Ordering::Relaxed), 0);

    // The service still takes a good reporter.
    let r = StatsReporter::spawn(reporter(address, secret, 8), stop.clone());
    r.report(snapshot(1.0, &[("1", 1, 1.0)]));
    wait_until("a good report", || async {
        running.stats.reports.load(Ordering::Relaxed) == 1
    })
    .await;
    // And the refused stranger's reporter never connects.
    let refused = StatsReporter::spawn(reporter(address, stranger, 8), stop.clone());
    refused.report(snapshot(1.0, &[]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(refused.stats().connected.load(Ordering::Relaxed), 0);
    assert_eq!(refused.pending().len(), 1);
    stop.cancel();
}

fn snapshot_message() -> StatsMessage {
    StatsMessage::Report(snapshot(1.0, &[]))
}

async fn send(conn: &mut Connection, m: StatsMessage) {
    conn.send_extension(&m).await.unwrap();
}

#[tokio::test]
async fn a_service_that_is_away_costs_the_reporter_only_its_oldest_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, xonly) = reporter_key(7);
    // A port with nobody on it yet.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = CancellationToken::new();
    let r = StatsReporter::spawn(reporter(address, secret, 100), stop.clone());
    // report() never waits: a thousand reports return at once, the oldest 900 are dropped.
    for n in 0..1_000u64 {
        r.report(Report::Issuance(Issuance {
            at: n,
            quote_id: format!("q{n}"),
            amount: 1,
            locking_key: "02".into(),
        }));
    }
    assert_eq!(r.stats().dropped.load(Ordering::Relaxed), 900);
    // The service comes up on that address: the newest 100 arrive, in order.
    let mut c = config(dir.path(), vec![xonly]);
    c.ingest_address = address;
    let running = hashpool_stats::start(c, stop.clone()).await.unwrap();
    wait_until("the buffered reports", || async {
        running.stats.reports.load(Ordering::Relaxed) == 100
    })
    .await;
    let (amount, count) = running.store.issuance_total().await.unwrap();
    assert_eq!((amount, count), (100, 100));
    let newest = running.store.issuance(0, 1000).await.unwrap();
    assert!(newest
        .iter()
        .all(|i| i.quote_id["q".len()..].parse::<u64>().unwrap() >= 900));
    wait_until("the reporter to count them sent", || async {
        r.stats().sent.load(Ordering::Relaxed) == 100
    })
    .await;
    assert_eq!(r.stats().buffered.load(Ordering::Relaxed), 0);
    stop.cancel();
}

/// The same store on PostgreSQL, chosen by nothing but the URL. Needs a server:
/// `HASHPOOL_TEST_POSTGRES_URL` (a role allowed to create databases; .ci/run starts Debian's
/// PostgreSQL and sets it). Each run works in a database of its own, dropped at the end.
#[tokio::test]
async fn the_store_works_on_postgresql_by_configuration() {
    let Ok(admin_url) = std::env::var("HASHPOOL_TEST_POSTGRES_URL") else {
        eprintln!(
            "HASHPOOL_TEST_POSTGRES_URL is not set: not run here (.ci/run sets it up and runs it)"
        );
        return;
    };
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("PostgreSQL");
    let name = format!(
        "hashpool_stats_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database");
    let url = format!("{base}/{name}");

    let store = Store::open(&url).await.expect("migrated on PostgreSQL");
    let Report::Snapshot(first) = snapshot(10.0, &[("1", 10, 10.0)]) else {
        unreachable!()
    };
    store
        .ingest_snapshot("pool-1", 1_000, &first)
        .await
        .unwrap();
    store
        .ingest_snapshot("pool-1", 1_001, &first)
        .await
        .unwrap();
    assert_eq!(store.sample(1_010, 60, 1).await.unwrap(), 3);
    assert_eq!(
        store.hashrate("total", 0).await.unwrap(),
        vec![(1_010, 20.0 * 4_294_967_296.0 / 10.0)]
    );
    // Windows sum BIGINT shares, which PostgreSQL answers as NUMERIC unless cast.
    let minute = &store
        .hashrate_windows("total", 1_010, &windows(&[("1m", 60)]))
        .await
        .unwrap()[0];
    assert_eq!(
        (
            minute.work,
            minute.shares,
            minute.covered_secs,
            minute.complete
        ),
        (20.0, 20, 10, false)
    );
    let issuance = Issuance {
        at: 1,
        quote_id: "q1".into(),
        amount: 42,
        locking_key: "02ab".into(),
    };
    assert!(store
        .ingest_issuance("pool-1", 1_000, &issuance)
        .await
        .unwrap());
    assert!(!store
        .ingest_issuance("pool-1", 1_000, &issuance)
        .await
        .unwrap());
    assert_eq!(store.issuance_total().await.unwrap(), (42, 1));
    assert_eq!(
        store.issuance_buckets(0, 600).await.unwrap(),
        vec![(600, 42)]
    );
    let subjects = store.subjects(Some("channel")).await.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].connected, 1);
    assert_eq!(subjects[0].first_seen, 1_000);
    // One snapshot with a subject whose hashrate is unknown before one whose is known (a pool
    // reports its connections, without one, before its channels): a float bound as NULL must
    // not break the statement for the value after it (sqlx 0.8.0's Any driver binds a NULL
    // f64 as float4, and PostgreSQL then refused the next 8-byte value: no subject was stored).
    let Report::Snapshot(mut mixed) = snapshot(10.0, &[("1", 10, 10.0), ("2", 5, 5.0)]) else {
        unreachable!()
    };
    mixed.subjects[1].nominal_hashrate = Some(1.5e6);
    store
        .ingest_snapshot("pool-1", 1_002, &mixed)
        .await
        .unwrap();
    let hashrates: Vec<Option<f64>> = store
        .subjects(Some("channel"))
        .await
        .unwrap()
        .iter()
        .map(|s| s.nominal_hashrate)
        .collect();
    assert_eq!(hashrates, vec![None, Some(1.5e6)]);
    // Blocks likewise: a difficulty first unknown, then known.
    assert!(store
        .ingest_block("pool-1", 1_004, &found(7, 90, None))
        .await
        .unwrap());
    assert!(store
        .ingest_block("pool-1", 1_005, &found(8, 91, Some(20.0)))
        .await
        .unwrap());
    assert!(store.prune(2_000).await.unwrap().work >= 3);
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();

    // Blocks and the network on a database of their own (their figures count from zero).
    let name = format!("{name}_blocks");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let store = Store::open(&format!("{base}/{name}"))
        .await
        .expect("migrated on PostgreSQL");
    blocks_and_network(&store).await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
