//! SV1 bad input at the translator: malformed JSON, unknown methods, an oversized line, requests
//! out of order, stale, low-difficulty and duplicate shares each get a JSON-RPC error with the
//! right code; the connection keeps working (a valid share on it is accepted, and a miner's
//! suggested difficulty is honoured) and an honest SV1 miner keeps mining through it all.

use std::{sync::atomic::Ordering, time::Duration};

use futures::{SinkExt, StreamExt};
use hashpool_e2e::{init_tracing, test_key, wait_until, PoolOptions, Stack};
use hashpool_sv1::{
    difficulty_to_target, error_code, merkle_root, parse_server_line, prev_hash_from_sv1, Notify,
    ServerMessage, ShareHeader, MAX_LINE_LEN,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LinesCodec};
use translator::{Sv1Limits, TranslatorStats};

const HARD_NBITS: u32 = 0x1e0f_ffff;

pub(crate) type Lines = Framed<TcpStream, LinesCodec>;

/// The latest work a raw connection was sent.
#[derive(Default)]
pub(crate) struct Heard {
    pub(crate) notify: Option<Notify>,
    pub(crate) difficulty: Option<f64>,
    /// The lowest difficulty ever sent on the connection.
    pub(crate) lowest_difficulty: Option<f64>,
}

/// Reads one line, keeping notifications in `heard`; returns responses.
pub(crate) async fn read(
    c: &mut Lines,
    heard: &mut Heard,
) -> anyhow::Result<Option<(Value, Value, Option<(i64, String)>)>> {
    let line = tokio::time::timeout(Duration::from_secs(15), c.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed"))??;
    Ok(
        match parse_server_line(&line).map_err(|e| anyhow::anyhow!("{e}"))? {
            ServerMessage::Response { id, result, error } => Some((id, result, error)),
            ServerMessage::Notify(n) => {
                heard.notify = Some(n);
                None
            }
            ServerMessage::SetDifficulty(d) => {
                heard.difficulty = Some(d);
                heard.lowest_difficulty = Some(heard.lowest_difficulty.map_or(d, |l| l.min(d)));
                None
            }
            _ => None,
        },
    )
}

/// Sends `line` and returns the answer to `id`.
pub(crate) async fn ask_heard(
    c: &mut Lines,
    heard: &mut Heard,
    line: &str,
    id: Value,
) -> anyhow::Result<(Value, Option<(i64, String)>)> {
    c.send(line).await?;
    loop {
        if let Some((got, result, error)) = read(c, heard).await? {
            if got == id {
                return Ok((result, error));
            }
        }
    }
}

pub(crate) async fn ask(
    c: &mut Lines,
    line: &str,
    id: Value,
) -> anyhow::Result<(Value, Option<(i64, String)>)> {
    ask_heard(c, &mut Heard::default(), line, id).await
}

/// The first nonce (from 0) whose share hash is at or under `target` (`meets`), or over it.
pub(crate) fn grind(
    n: &Notify,
    extranonce1: &[u8],
    extranonce2: &[u8],
    target: bitcoin::Target,
    meets: bool,
) -> u32 {
    grind_from(n, extranonce1, extranonce2, target, meets, 0)
}

/// The first nonce from `from` whose share hash is at or under `target` (`meets`), or over it.
pub(crate) fn grind_from(
    n: &Notify,
    extranonce1: &[u8],
    extranonce2: &[u8],
    target: bitcoin::Target,
    meets: bool,
    from: u32,
) -> u32 {
    let coinbase = [
        n.coinbase1.as_slice(),
        extranonce1,
        extranonce2,
        &n.coinbase2,
    ]
    .concat();
    let root = merkle_root(&coinbase, &n.merkle_branch);
    let prev_hash = prev_hash_from_sv1(&n.prev_hash).expect("a valid prev hash");
    (from..)
        .find(|&nonce| {
            let hash = ShareHeader {
                version: n.version,
                prev_hash: &prev_hash,
                merkle_root: &root,
                ntime: n.ntime,
                nbits: n.nbits,
                nonce,
            }
            .hash();
            (hash <= target) == meets
        })
        .expect("a nonce")
}

pub(crate) fn code(answer: &(Value, Option<(i64, String)>)) -> i64 {
    answer.1.as_ref().map(|e| e.0).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sv1_input_gets_json_rpc_errors_and_the_proxy_keeps_working() -> anyhow::Result<()> {
    init_tracing();
    let stack = Stack::new()
        .nbits(HARD_NBITS)
        .with_pool(PoolOptions {
            shares_per_minute: 120.0,
            ..Default::default()
        })
        .with_translator("translator-bad-input", 20_000.0, |c| {
            c.nominal_hashrate = 30_000.0;
            c.locking_key = Some(test_key("bad-input"));
        })
        // A floor under the difficulty the raw client suggests below: here a suggestion is
        // honoured (translator_limits.rs tests the floor).
        .translator_limits(Sv1Limits {
            min_share_difficulty: 1e-9,
            ..Sv1Limits::default()
        })
        .start()
        .await?;
    let translator = &stack.translator().running;
    let honest = stack.sv1_miner("honest.rig", 20_000.0);

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
    // A job that does not exist (stale).
    let en2 = "00".repeat(en2_size);
    let stale = json!({"id": 9, "method": "mining.submit", "params": ["bob.rig", "ffffffff", en2, "00000000", "00000000"]}).to_string();
    assert_eq!(
        code(&ask(&mut c, &stale, json!(9)).await?),
        error_code::JOB_NOT_FOUND
    );
    // The miner suggests an easy difficulty (about one share in 256 hashes): it gets it.
    let mut heard = Heard::default();
    let suggested = 1.0 / 16_777_216.0;
    let (ok, err) = ask_heard(
        &mut c,
        &mut heard,
        &json!({"id": 10, "method": "mining.suggest_difficulty", "params": [suggested]})
            .to_string(),
        json!(10),
    )
    .await?;
    assert_eq!((ok, err), (json!(true), None));
    let near = |d: Option<f64>| d.is_some_and(|d| (d / suggested - 1.0).abs() < 1e-6);
    while heard.notify.is_none() || !near(heard.difficulty) {
        if let Err(e) = read(&mut c, &mut heard).await {
            anyhow::bail!(
                "no work at the suggested difficulty (heard {:?}): {e}",
                heard.difficulty
            );
        }
    }
    let n = heard.notify.clone().expect("a job");
    let target = bitcoin::Target::from_le_bytes(difficulty_to_target(suggested));
    let extranonce1 = hex::decode(sub[1].as_str().expect("extranonce1"))?;
    let en2_bytes = vec![0u8; en2_size];
    let submit_nonce = |id: u64, nonce: u32| {
        json!({"id": id, "method": "mining.submit", "params": ["bob.rig", n.job_id, en2, format!("{:08x}", n.ntime), format!("{nonce:08x}")]}).to_string()
    };
    // A share whose hash is over half the range: low difficulty at any target vardiff may pick.
    let half = bitcoin::Target::from_le_bytes({
        let mut t = [0xffu8; 32];
        t[31] = 0x7f;
        t
    });
    let low = grind(&n, &extranonce1, &en2_bytes, half, false);
    assert_eq!(
        code(&ask(&mut c, &submit_nonce(11, low), json!(11)).await?),
        error_code::LOW_DIFFICULTY
    );
    // A valid share is accepted once; the same share again is a duplicate.
    let good = grind(&n, &extranonce1, &en2_bytes, target, true);
    let (ok, err) = ask(&mut c, &submit_nonce(12, good), json!(12)).await?;
    assert_eq!((ok, err), (json!(true), None), "a valid share");
    assert_eq!(
        code(&ask(&mut c, &submit_nonce(13, good), json!(13)).await?),
        error_code::DUPLICATE_SHARE
    );
    let bad_en2 = json!({"id": 14, "method": "mining.submit", "params": ["bob.rig", n.job_id, "00", "00000000", "00000000"]}).to_string();
    assert_eq!(
        code(&ask(&mut c, &bad_en2, json!(14)).await?),
        error_code::OTHER
    );
    assert!(TranslatorStats::get(&translator.stats.shares_refused_here) >= 5);

    // Through all of it the honest miner's shares kept being accepted.
    let before = honest.stats.shares_acknowledged.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(60),
        "the honest SV1 miner's shares accepted",
        || async { honest.stats.shares_acknowledged.load(Ordering::Relaxed) >= before + 3 },
    )
    .await?;
    assert_eq!(honest.stats.shares_rejected.load(Ordering::Relaxed), 0);
    stack.stop.cancel();
    honest.task.await?;
    stack.stop().await
}
