//! The translator's limits against a hostile SV1 miner, driven with a raw SV1 client:
//! `mining.suggest_difficulty 1e-30` (or 1e300, or 0 and -1, refused as bad params) never gets
//! it a difficulty under `min_share_difficulty`; a share under the floor is refused as low
//! difficulty; its shares on one job stop at `max_shares_per_job` (the next is refused, the
//! ones remembered stay duplicates); and /metrics counts each refusal by its reason.

use hashpool_e2e::{
    init_tracing, loopback_any_port, metric_value, promtool_check, test_key, PoolOptions, Stack,
};
use hashpool_sv1::{difficulty_to_target, error_code, Notify, MAX_LINE_LEN};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LinesCodec};
use translator::{Sv1Limit, Sv1Limits, TranslatorStats};

use crate::translator_bad_input::{ask_heard, code, grind_from, read, Heard, Lines};

/// Difficulty 1: no share of this test comes near a block, so its job never goes stale.
const NO_BLOCK_NBITS: u32 = 0x1d00_ffff;

/// Until every line the translator sent before the answer to a no-op request is heard.
async fn settle(c: &mut Lines, heard: &mut Heard, id: u64) -> anyhow::Result<()> {
    let request =
        json!({"id": id, "method": "mining.extranonce.subscribe", "params": []}).to_string();
    let (ok, err) = ask_heard(c, heard, &request, json!(id)).await?;
    anyhow::ensure!(ok == json!(true), "extranonce.subscribe: {err:?}");
    Ok(())
}

fn submit(id: u64, n: &Notify, extranonce2: &str, nonce: u32) -> String {
    json!({"id": id, "method": "mining.submit", "params": [
        "mallory.rig", n.job_id, extranonce2, format!("{:08x}", n.ntime), format!("{nonce:08x}")
    ]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_gets_no_difficulty_under_the_floor_and_a_bounded_share_memory(
) -> anyhow::Result<()> {
    init_tracing();
    // The shipped default floor; a share memory small enough to fill by hand.
    let limits = Sv1Limits {
        max_shares_per_job: 4,
        ..Sv1Limits::default()
    };
    let floor = limits.min_share_difficulty;
    let stack = Stack::new()
        .nbits(NO_BLOCK_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        })
        .with_translator("translator-limits", 20_000.0, |c| {
            c.nominal_hashrate = 30_000.0;
            c.locking_key = Some(test_key("limits"));
        })
        .translator_limits(limits)
        .start()
        .await?;
    let (pool, stop) = (&stack.pool, &stack.stop);
    let (translator, mode) = (&stack.translator().running, stack.translator().channel_mode);
    let stats = translator.stats.clone();
    let monitoring =
        translator::monitoring::serve(loopback_any_port(), stats.clone(), None, mode, stop.clone())
            .await?;

    // The pool may still be waiting for its first template when the translator's channel
    // opens: the first job comes when it has one.
    pool.wait_for_work(std::time::Duration::from_secs(60))
        .await?;
    let stream = TcpStream::connect(translator.downstream_address).await?;
    let mut c = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_LEN));
    let mut heard = Heard::default();
    let (sub, err) = ask_heard(
        &mut c,
        &mut heard,
        r#"{"id":1,"method":"mining.subscribe","params":["raw"]}"#,
        json!(1),
    )
    .await?;
    assert!(err.is_none(), "{err:?}");
    let extranonce1 = hex::decode(sub[1].as_str().unwrap_or_default())?;
    let en2_size = sub[2].as_u64().unwrap_or_default() as usize;
    let (ok, err) = ask_heard(
        &mut c,
        &mut heard,
        r#"{"id":2,"method":"mining.authorize","params":["mallory.rig","x"]}"#,
        json!(2),
    )
    .await?;
    assert_eq!((ok, err), (json!(true), None));

    // Zero and negative difficulties are not difficulties.
    for (id, d) in [(3, json!(0)), (4, json!(-1))] {
        let line = json!({"id": id, "method": "mining.suggest_difficulty", "params": [d]});
        let answer = ask_heard(&mut c, &mut heard, &line.to_string(), json!(id)).await?;
        assert_eq!(code(&answer), error_code::INVALID_PARAMS, "{d}");
    }
    // A huge one is taken (capped), then the attack: 1e-30, a target of all ff.
    for (id, d) in [(5, 1e300), (6, 1e-30)] {
        let line = json!({"id": id, "method": "mining.suggest_difficulty", "params": [d]});
        let (ok, err) = ask_heard(&mut c, &mut heard, &line.to_string(), json!(id)).await?;
        assert_eq!((ok, err), (json!(true), None), "{d}");
    }
    settle(&mut c, &mut heard, 7).await?;
    // The first job may come after the answers (each read waits at most 15 s for a line).
    while heard.notify.is_none() {
        read(&mut c, &mut heard).await?;
    }
    let given = heard.difficulty.expect("a difficulty");
    assert!(
        (given / floor - 1.0).abs() < 1e-9,
        "after suggesting 1e-30 the miner is at the floor {floor}, not {given}"
    );
    assert!(
        TranslatorStats::get(&stats.suggested_difficulty_clamped) >= 2,
        "1e300 and 1e-30 clamped"
    );

    // The floor's target; a share over it (what 1e-30 would have made valid) is refused.
    let target = bitcoin::Target::from_le_bytes(difficulty_to_target(floor));
    let en2 = "00".repeat(en2_size);
    let en2_bytes = vec![0u8; en2_size];
    let mut next_id = 100;
    // A new job from the pool (none is expected: no block, no new transactions) restarts the
    // round on it; three in a row fail the test.
    let mut attempts = 0;
    loop {
        attempts += 1;
        anyhow::ensure!(attempts <= 3, "the job kept changing under the test");
        let n = heard.notify.clone().expect("a job");
        let mut send = async |heard: &mut Heard, en2: &str, nonce: u32| {
            next_id += 1;
            ask_heard(
                &mut c,
                heard,
                &submit(next_id, &n, en2, nonce),
                json!(next_id),
            )
            .await
        };
        let under = grind_from(&n, &extranonce1, &en2_bytes, target, false, 0);
        let answer = send(&mut heard, &en2, under).await?;
        if code(&answer) == error_code::JOB_NOT_FOUND {
            continue;
        }
        assert_eq!(
            code(&answer),
            error_code::LOW_DIFFICULTY,
            "a share under the floor: {answer:?}"
        );
        // Four valid shares fill the job's share memory.
        let mut valid = Vec::new();
        let mut from = 0;
        while valid.len() < 4 {
            let nonce = grind_from(&n, &extranonce1, &en2_bytes, target, true, from);
            from = nonce + 1;
            let answer = send(&mut heard, &en2, nonce).await?;
            if code(&answer) == error_code::JOB_NOT_FOUND {
                break;
            }
            assert_eq!(answer, (json!(true), None), "valid share {nonce}");
            valid.push(nonce);
        }
        if valid.len() < 4 {
            continue;
        }
        // The fifth is refused, with a reason that says when shares are taken again...
        let fifth = grind_from(&n, &extranonce1, &en2_bytes, target, true, from);
        let answer = send(&mut heard, &en2, fifth).await?;
        if code(&answer) == error_code::JOB_NOT_FOUND {
            continue;
        }
        assert_eq!(code(&answer), error_code::OTHER, "{answer:?}");
        let reason = answer.1.map(|e| e.1).unwrap_or_default();
        assert!(reason.contains("next job"), "{reason}");
        // ...and the shares remembered were not forgotten to make room.
        let answer = send(&mut heard, &en2, valid[0]).await?;
        assert_eq!(code(&answer), error_code::DUPLICATE_SHARE, "{answer:?}");
        // Another extranonce2 is still the same job: refused too.
        let other_en2 = "01".repeat(en2_size);
        let nonce = grind_from(&n, &extranonce1, &vec![1u8; en2_size], target, true, 0);
        let answer = send(&mut heard, &other_en2, nonce).await?;
        assert_eq!(code(&answer), error_code::OTHER, "{answer:?}");
        break;
    }

    // Never, on the whole connection, a difficulty under the floor.
    let lowest = heard.lowest_difficulty.expect("difficulties heard");
    assert!(lowest >= floor * (1.0 - 1e-9), "sent {lowest}");

    // Each refusal is counted by its reason.
    assert!(TranslatorStats::get(&stats.shares_refused_low_difficulty) >= 1);
    assert!(TranslatorStats::get(&stats.shares_refused_job_share_limit) >= 2);
    assert!(TranslatorStats::get(&stats.shares_refused_duplicate) >= 1);
    let text = reqwest::get(format!("http://{monitoring}/metrics"))
        .await?
        .text()
        .await?;
    assert_eq!(promtool_check(&text)?, Vec::<String>::new(), "{text}");
    for (name, counter) in [
        (
            r#"hashpool_translator_shares_refused_total{by="translator",reason="low_difficulty"}"#,
            &stats.shares_refused_low_difficulty,
        ),
        (
            r#"hashpool_translator_shares_refused_total{by="translator",reason="job_share_limit"}"#,
            &stats.shares_refused_job_share_limit,
        ),
        (
            r#"hashpool_translator_shares_refused_total{by="translator",reason="duplicate"}"#,
            &stats.shares_refused_duplicate,
        ),
        (
            "hashpool_translator_suggested_difficulty_clamped_total",
            &stats.suggested_difficulty_clamped,
        ),
    ] {
        assert_eq!(
            metric_value(&text, name),
            Some(TranslatorStats::get(counter) as f64),
            "{name}"
        );
    }
    let status: Value = reqwest::get(format!("http://{monitoring}/api/v1/status"))
        .await?
        .json()
        .await?;
    assert_eq!(
        status["shares"]["refused_job_share_limit"],
        json!(TranslatorStats::get(&stats.shares_refused_job_share_limit))
    );

    drop(c);
    stack.stop().await
}

/// Reads until the translator closes the connection (answers to earlier requests may come
/// first); an error if it stays open for `within`.
async fn closed_by_translator(c: &mut Lines, within: std::time::Duration) -> anyhow::Result<()> {
    use futures::StreamExt;
    tokio::time::timeout(within, async { while let Some(Ok(_)) = c.next().await {} })
        .await
        .map_err(|_| anyhow::anyhow!("still open after {within:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_sv1_port_bounds_connections_per_address_and_closes_the_silent(
) -> anyhow::Result<()> {
    init_tracing();
    // The deadlines are long next to the few local round trips before them.
    let limits = Sv1Limits {
        max_connections_per_address: 3,
        authorize_timeout: std::time::Duration::from_secs(3),
        idle_timeout: std::time::Duration::from_secs(5),
        ..Sv1Limits::default()
    };
    let stack = Stack::new()
        .nbits(NO_BLOCK_NBITS)
        .with_translator("translator-port", 20_000.0, |c| {
            c.locking_key = Some(test_key("port"));
        })
        .translator_limits(limits)
        .start()
        .await?;
    let translator = &stack.translator().running;
    let address = translator.downstream_address;
    let hits = &translator.stats.limit_hits;
    let connect = || async move {
        anyhow::Ok(Framed::new(
            TcpStream::connect(address).await?,
            LinesCodec::new(),
        ))
    };
    let subscribe = json!({"id": 1, "method": "mining.subscribe", "params": []}).to_string();
    let authorize =
        json!({"id": 2, "method": "mining.authorize", "params": ["honest.rig", "x"]}).to_string();
    let mut heard = Heard::default();
    let within = std::time::Duration::from_secs(60);

    // Three connections from one address are held; a fourth is closed at once, and counted.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect().await?;
        ask_heard(&mut c, &mut heard, &subscribe, json!(1)).await?;
        let (ok, err) = ask_heard(&mut c, &mut heard, &authorize, json!(2)).await?;
        anyhow::ensure!(ok == json!(true), "authorize: {err:?}");
        held.push(c);
    }
    let mut fourth = connect().await?;
    closed_by_translator(&mut fourth, within).await?;
    assert_eq!(hits.get(Sv1Limit::ConnectionsPerAddress), 1);

    // Silent after authorizing: closed after `idle_timeout`, which frees their places.
    for c in &mut held {
        closed_by_translator(c, within).await?;
    }
    assert_eq!(hits.get(Sv1Limit::IdleTimeout), 3);
    // Never authorizing: closed after `authorize_timeout`.
    let mut silent = connect().await?;
    ask_heard(&mut silent, &mut heard, &subscribe, json!(1)).await?;
    closed_by_translator(&mut silent, within).await?;
    assert_eq!(hits.get(Sv1Limit::AuthorizeTimeout), 1);
    assert_eq!(hits.get(Sv1Limit::Connections), 0);
    stack.stop().await
}
