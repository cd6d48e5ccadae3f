//! SV1 bad input at the translator: malformed JSON, unknown methods, an oversized line, requests
//! out of order, stale and duplicate shares each get a JSON-RPC error with the right code; the
//! connection keeps working and an honest SV1 miner keeps mining through it all.

use std::{sync::atomic::Ordering, time::Duration};

use futures::{SinkExt, StreamExt};
use hashpool_e2e::{
    init_tracing, loopback_any_port, public_key, test_key, wait_until, PoolOptions, TestPool,
    TestProvider,
};
use hashpool_sv1::{error_code, parse_server_line, ServerMessage, MAX_LINE_LEN};
use mining_device_sv1::Sv1MinerOptions;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};

const HARD_NBITS: u32 = 0x1e0f_ffff;

type Lines = Framed<TcpStream, LinesCodec>;

/// Sends `line` and returns the answer to `id` (skipping notifications).
async fn ask(
    c: &mut Lines,
    line: &str,
    id: Value,
) -> anyhow::Result<(Value, Option<(i64, String)>)> {
    c.send(line).await?;
    loop {
        let reply = tokio::time::timeout(Duration::from_secs(15), c.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed"))??;
        if let ServerMessage::Response {
            id: got,
            result,
            error,
        } = parse_server_line(&reply).map_err(|e| anyhow::anyhow!("{e}"))?
        {
            if got == id {
                return Ok((result, error));
            }
        }
    }
}

fn code(answer: &(Value, Option<(i64, String)>)) -> i64 {
    answer.1.as_ref().map(|e| e.0).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sv1_input_gets_json_rpc_errors_and_the_proxy_keeps_working() -> anyhow::Result<()> {
    init_tracing();
    let dir = tempfile::tempdir()?;
    let tp = TestProvider::start(dir.path(), loopback_any_port(), HARD_NBITS, 0).await?;
    let pool = TestPool::start(
        tp.running.listen_address,
        PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        },
    )
    .await?;
    let stop = CancellationToken::new();
    let translator = translator::start(
        translator::TranslatorRunConfig {
            downstream_address: loopback_any_port(),
            upstreams: vec![translator::UpstreamEndpoint {
                address: pool.address(),
                authority_public_key: public_key(),
            }],
            user_identity: "translator-bad-input".into(),
            nominal_hashrate: 30_000.0,
            locking_key: Some(test_key("bad-input")),
            minter: None,
        },
        stop.clone(),
    )
    .await?;
    let honest = mining_device_sv1::start(
        Sv1MinerOptions {
            address: translator.downstream_address,
            user: "honest.rig".into(),
            threads: 1,
            limit_hashrate: Some(20_000.0),
        },
        stop.clone(),
    );

    let stream = TcpStream::connect(translator.downstream_address).await?;
    let mut c = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_LEN));
    // Not JSON, not an object, no method, unknown method.
    assert_eq!(
        code(&ask(&mut c, "{nonsense", Value::Null).await?),
        error_code::PARSE_ERROR
    );
    assert_eq!(
        code(&ask(&mut c, "[1,2,3]", Value::Null).await?),
        error_code::INVALID_REQUEST
    );
    assert_eq!(
        code(&ask(&mut c, r#"{"id":1}"#, json!(1)).await?),
        error_code::INVALID_REQUEST
    );
    assert_eq!(
        code(
            &ask(
                &mut c,
                r#"{"id":2,"method":"mining.fly","params":[]}"#,
                json!(2)
            )
            .await?
        ),
        error_code::METHOD_NOT_FOUND
    );
    // A line longer than the limit: answered, then that connection is closed.
    {
        let stream = TcpStream::connect(translator.downstream_address).await?;
        let mut big = Framed::new(stream, LinesCodec::new());
        let long = format!(
            r#"{{"id":3,"method":"mining.subscribe","params":["{}"]}}"#,
            "x".repeat(MAX_LINE_LEN)
        );
        assert_eq!(
            code(&ask(&mut big, &long, Value::Null).await?),
            error_code::INVALID_REQUEST
        );
        let end = tokio::time::timeout(Duration::from_secs(5), big.next()).await?;
        assert!(
            end.is_none(),
            "the connection is closed after an oversized line"
        );
    }
    // Out of order: authorize and submit before subscribe.
    assert_eq!(
        code(
            &ask(
                &mut c,
                r#"{"id":4,"method":"mining.authorize","params":["bob.rig","x"]}"#,
                json!(4)
            )
            .await?
        ),
        error_code::NOT_SUBSCRIBED
    );
    let submit = |id: u64, worker: &str, job: &str| {
        json!({"id": id, "method": "mining.submit", "params": [worker, job, "00000000", "00000000", "00000000"]}).to_string()
    };
    assert_eq!(
        code(&ask(&mut c, &submit(5, "bob.rig", "1"), json!(5)).await?),
        error_code::NOT_SUBSCRIBED
    );

    // The same connection still subscribes and authorizes.
    let (sub, err) = ask(
        &mut c,
        r#"{"id":6,"method":"mining.subscribe","params":["raw"]}"#,
        json!(6),
    )
    .await?;
    assert!(err.is_none(), "{err:?}");
    let en2_size = sub[2].as_u64().unwrap() as usize;
    assert!(en2_size >= 4);
    // A submit for a worker never authorized.
    assert_eq!(
        code(&ask(&mut c, &submit(7, "mallory.rig", "1"), json!(7)).await?),
        error_code::UNAUTHORIZED
    );
    let (ok, err) = ask(
        &mut c,
        r#"{"id":8,"method":"mining.authorize","params":["bob.rig","x"]}"#,
        json!(8),
    )
    .await?;
    assert_eq!((ok, err), (json!(true), None));
    // A job that does not exist (stale), and a share far above the target (low difficulty).
    let en2 = "00".repeat(en2_size);
    let stale = json!({"id": 9, "method": "mining.submit", "params": ["bob.rig", "ffffffff", en2, "00000000", "00000000"]}).to_string();
    assert_eq!(
        code(&ask(&mut c, &stale, json!(9)).await?),
        error_code::JOB_NOT_FOUND
    );
    wait_until(
        Duration::from_secs(30),
        "the translator to have a job",
        || async {
            translator
                .work
                .borrow()
                .as_ref()
                .is_some_and(|w| w.job.is_some())
        },
    )
    .await?;
    let job_id = translator
        .work
        .borrow()
        .as_ref()
        .and_then(|w| w.job.as_ref().map(|j| format!("{:x}", j.job_id)))
        .expect("the translator has a job");
    let low = json!({"id": 10, "method": "mining.submit", "params": ["bob.rig", job_id, en2, "00000000", "00000000"]}).to_string();
    assert_eq!(
        code(&ask(&mut c, &low, json!(10)).await?),
        error_code::LOW_DIFFICULTY
    );
    let bad_en2 = json!({"id": 11, "method": "mining.submit", "params": ["bob.rig", job_id, "00", "00000000", "00000000"]}).to_string();
    assert_eq!(
        code(&ask(&mut c, &bad_en2, json!(11)).await?),
        error_code::OTHER
    );

    // Through all of it the honest miner's shares kept being accepted.
    let before = honest.stats.shares_acknowledged.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(60),
        "the honest SV1 miner's shares accepted",
        || async { honest.stats.shares_acknowledged.load(Ordering::Relaxed) >= before + 3 },
    )
    .await?;
    assert_eq!(honest.stats.shares_rejected.load(Ordering::Relaxed), 0);
    stop.cancel();
    honest.task.await?;
    translator.task.await?;
    pool.stop().await?;
    tp.stop().await?;
    Ok(())
}
