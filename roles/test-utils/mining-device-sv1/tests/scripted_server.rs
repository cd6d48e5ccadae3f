//! The SV1 miner against a scripted SV1 server: every share it submits, rebuilt by the server
//! from the job it sent (coinbase with the miner's extranonce2, merkle root, header), meets the
//! difficulty; accepted answers are counted, and a refused share is counted as rejected.

use std::{sync::atomic::Ordering, time::Duration};

use bitcoin::{
    hashes::{sha256d, Hash},
    Target,
};
use futures::{SinkExt, StreamExt};
use hashpool_sv1::{
    difficulty_to_target, merkle_root, notify, parse_client_line, prev_hash_from_sv1,
    prev_hash_to_sv1, response_error, response_ok, set_difficulty, ClientRequest, Notify,
};
use mining_device_sv1::Sv1MinerOptions;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};

const DIFFICULTY: f64 = 1.0 / (1u64 << 20) as f64;
const EXTRANONCE1: [u8; 4] = [0xaa, 0xbb, 0xcc, 0xdd];

fn job() -> Notify {
    Notify {
        job_id: "job-1".into(),
        prev_hash: prev_hash_to_sv1(&[0x11; 32]),
        coinbase1: vec![1, 0, 0, 0, 1, 0xfe],
        coinbase2: vec![0xff, 0xff, 0xff, 0xff, 0],
        merkle_branch: vec![[0x22; 32], [0x33; 32]],
        version: 0x2000_0000,
        nbits: 0x1d00_ffff,
        ntime: 1_700_000_000,
        clean_jobs: true,
    }
}

fn share_meets_target(n: &Notify, extranonce2: &[u8], ntime: u32, nonce: u32) -> bool {
    let coinbase = [
        n.coinbase1.as_slice(),
        &EXTRANONCE1,
        extranonce2,
        &n.coinbase2,
    ]
    .concat();
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(&n.version.to_le_bytes());
    header.extend_from_slice(&prev_hash_from_sv1(&n.prev_hash).unwrap());
    header.extend_from_slice(&merkle_root(&coinbase, &n.merkle_branch));
    header.extend_from_slice(&ntime.to_le_bytes());
    header.extend_from_slice(&n.nbits.to_le_bytes());
    header.extend_from_slice(&nonce.to_le_bytes());
    let hash = sha256d::Hash::hash(&header).to_byte_array();
    Target::from_le_bytes(hash) <= Target::from_le_bytes(difficulty_to_target(DIFFICULTY))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_meet_the_difficulty_of_the_job_they_claim() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let stop = CancellationToken::new();
    let miner = mining_device_sv1::start(
        Sv1MinerOptions {
            address,
            user: "alice.rig1".into(),
            threads: 1,
            limit_hashrate: None,
        },
        stop.clone(),
    );
    let (stream, _) = listener.accept().await?;
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(16 * 1024));
    let (mut valid, mut invalid, mut user) = (0, 0, String::new());
    let mut extranonce_subscribed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while valid < 6 {
        let line = tokio::time::timeout_at(deadline, lines.next())
            .await?
            .expect("the miner keeps the connection")?;
        match parse_client_line(&line).map_err(|e| anyhow::anyhow!("{e}"))? {
            ClientRequest::Subscribe { id, .. } => {
                let result = json!([[["mining.notify", "1"]], hex::encode(EXTRANONCE1), 4]);
                lines.send(response_ok(&id, result).trim_end()).await?;
            }
            ClientRequest::Authorize { id, user: u, .. } => {
                user = u;
                lines.send(response_ok(&id, json!(true)).trim_end()).await?;
                lines.send(set_difficulty(DIFFICULTY).trim_end()).await?;
                lines.send(notify(&job()).trim_end()).await?;
            }
            ClientRequest::Submit { id, submit } => {
                assert_eq!(submit.worker, user);
                assert_eq!(submit.job_id, "job-1");
                assert_eq!(submit.extranonce2.len(), 4);
                if share_meets_target(&job(), &submit.extranonce2, submit.ntime, submit.nonce) {
                    valid += 1;
                    // Refuse the first good share: the miner must count it as rejected.
                    if valid == 1 {
                        lines
                            .send(response_error(&id, 22, "duplicate").trim_end())
                            .await?;
                    } else {
                        lines.send(response_ok(&id, json!(true)).trim_end()).await?;
                    }
                } else {
                    invalid += 1;
                    lines
                        .send(response_error(&id, 23, "low difficulty").trim_end())
                        .await?;
                }
            }
            ClientRequest::ExtranonceSubscribe { id } => {
                extranonce_subscribed = true;
                lines.send(response_ok(&id, json!(true)).trim_end()).await?;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(invalid, 0, "every submitted share meets the difficulty");
    assert!(
        extranonce_subscribed,
        "the miner follows extranonce changes (mining.extranonce.subscribe)"
    );
    assert_eq!(user, "alice.rig1");
    let stats = miner.stats.clone();
    let wait = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.shares_acknowledged.load(Ordering::Relaxed) < 5
        && tokio::time::Instant::now() < wait
    {
        // Keep reading so the last answers are flushed.
        let _ = tokio::time::timeout(Duration::from_millis(50), lines.next()).await;
    }
    assert_eq!(stats.shares_rejected.load(Ordering::Relaxed), 1);
    assert!(stats.shares_acknowledged.load(Ordering::Relaxed) >= 5);
    stop.cancel();
    miner.task.await?;
    Ok(())
}
