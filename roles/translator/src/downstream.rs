//! The translator's SV1 side: one task per miner connection. A miner gets the channel's
//! extranonce prefix plus its own 4-byte index as extranonce1 and rolls the rest; its shares
//! are rebuilt and checked against their job here (stale, duplicate, low difficulty are
//! answered at once), then sent to the pool, and answered with the pool's verdict.

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use bitcoin::{
    hashes::{sha256d, Hash},
    Target,
};
use futures::{SinkExt, StreamExt};
use hashpool_sv1::{
    error_code, merkle_root, notify, parse_client_line, prev_hash_to_sv1, response_error,
    response_ok, set_difficulty, set_extranonce, target_to_difficulty, ClientRequest, Notify,
    Submit, MAX_LINE_LEN,
};
use serde_json::{json, Value};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot, watch},
};
use tokio_util::{
    codec::{Framed, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};
use tracing::{debug, info};

use crate::upstream::{ActiveJob, ShareToPool, UpstreamWork, MINER_EXTRANONCE_BYTES};

/// Version bits SV1 miners may roll (BIP 320).
const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;
/// Jobs a miner may still submit to.
const RECENT_JOBS: usize = 8;
/// Initial read and write buffer of a miner connection.
const CONNECTION_BUFFER: usize = 512;
/// How long a new subscription waits for the pool's first work.
const WORK_WAIT: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    work: watch::Receiver<Option<Arc<UpstreamWork>>>,
    shares: mpsc::Sender<ShareToPool>,
    shutdown: CancellationToken,
) {
    let next_index = Arc::new(AtomicU32::new(1));
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (work, shares, stop) = (work.clone(), shares.clone(), stop.clone());
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        async move {
            match connection(stream, peer, index, work, shares, stop).await {
                Ok(()) => debug!(%peer, "SV1 miner disconnected"),
                Err(e) => info!(%peer, "SV1 miner dropped: {e}"),
            }
        }
    })
    .await
}

/// A job as this miner saw it: what its shares are checked against.
struct SentJob {
    job: ActiveJob,
    target: [u8; 32],
}

struct Miner {
    index: u32,
    subscribed: bool,
    authorized: Option<String>,
    version_rolling: bool,
    extranonce_prefix: Vec<u8>,
    extranonce2_size: usize,
    target: Option<[u8; 32]>,
    jobs: VecDeque<(String, SentJob)>,
    seen: HashSet<(u32, Vec<u8>, u32, u32, u32)>,
}

impl Miner {
    fn extranonce1(&self) -> Vec<u8> {
        [self.extranonce_prefix.as_slice(), &self.index.to_be_bytes()].concat()
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    index: u32,
    mut work: watch::Receiver<Option<Arc<UpstreamWork>>>,
    shares: mpsc::Sender<ShareToPool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    // Small initial buffers: they grow for long lines, and thousands of idle miners stay cheap.
    let (mut sink, mut lines) = Framed::with_capacity(
        stream,
        LinesCodec::new_with_max_length(MAX_LINE_LEN),
        CONNECTION_BUFFER,
    )
    .split();
    // Answers decided later (the pool's verdicts) come back through here.
    let (out_tx, mut out) = mpsc::unbounded_channel::<String>();
    let mut m = Miner {
        index,
        subscribed: false,
        authorized: None,
        version_rolling: false,
        extranonce_prefix: Vec::new(),
        extranonce2_size: 0,
        target: None,
        jobs: VecDeque::new(),
        seen: HashSet::new(),
    };
    debug!(%peer, index, "SV1 miner connected");
    loop {
        tokio::select! {
            line = lines.next() => {
                let line = match line {
                    None => return Ok(()),
                    Some(Ok(l)) => l,
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                        // The codec cannot resynchronise after an oversized line: answer, close.
                        sink.send(trim(response_error(&Value::Null, error_code::INVALID_REQUEST, "line too long"))).await?;
                        anyhow::bail!("sent a line longer than {MAX_LINE_LEN} bytes");
                    }
                    Some(Err(e)) => return Err(e.into()),
                };
                if line.trim().is_empty() {
                    continue;
                }
                let request = match parse_client_line(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        sink.send(trim(response_error(&e.id, e.code, &e.message))).await?;
                        continue;
                    }
                };
                for reply in on_request(request, &mut m, &mut work, &shares, &out_tx).await {
                    sink.send(trim(reply)).await?;
                }
            }
            answer = out.recv() => {
                if let Some(answer) = answer {
                    sink.send(trim(answer)).await?;
                }
            }
            changed = work.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let current = work.borrow_and_update().clone();
                if let Some(w) = current {
                    for line in on_work(&mut m, &w) {
                        sink.send(trim(line)).await?;
                    }
                }
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn trim(mut line: String) -> String {
    while line.ends_with('\n') {
        line.pop();
    }
    line
}

/// What a miner is sent when the pool's work changes.
fn on_work(m: &mut Miner, w: &UpstreamWork) -> Vec<String> {
    let mut out = Vec::new();
    if !m.subscribed || m.authorized.is_none() {
        return out;
    }
    if w.extranonce_prefix != m.extranonce_prefix {
        // A new channel (the pool reconnected): the miner's extranonce changes with it.
        m.extranonce_prefix = w.extranonce_prefix.clone();
        m.extranonce2_size = w.extranonce_size.saturating_sub(MINER_EXTRANONCE_BYTES);
        m.jobs.clear();
        out.push(set_extranonce(&m.extranonce1(), m.extranonce2_size));
    }
    if m.target != Some(w.target) {
        m.target = Some(w.target);
        out.push(set_difficulty(target_to_difficulty(&w.target)));
    }
    if let Some(job) = &w.job {
        let sv1_id = format!("{:x}", job.job_id);
        if m.jobs.front().map(|(id, _)| id) != Some(&sv1_id)
            || out.iter().any(|l| l.contains("set_difficulty"))
        {
            if job.clean {
                m.jobs.clear();
                m.seen.clear();
            }
            m.jobs.push_front((
                sv1_id.clone(),
                SentJob {
                    job: job.clone(),
                    target: w.target,
                },
            ));
            m.jobs.truncate(RECENT_JOBS);
            out.push(notify(&Notify {
                job_id: sv1_id,
                prev_hash: prev_hash_to_sv1(&job.prev_hash),
                coinbase1: job.coinbase_prefix.clone(),
                coinbase2: job.coinbase_suffix.clone(),
                merkle_branch: job.merkle_path.clone(),
                version: job.version,
                nbits: job.nbits,
                ntime: job.ntime,
                clean_jobs: job.clean,
            }));
        }
    }
    out
}

async fn on_request(
    request: ClientRequest,
    m: &mut Miner,
    work: &mut watch::Receiver<Option<Arc<UpstreamWork>>>,
    shares: &mpsc::Sender<ShareToPool>,
    out: &mpsc::UnboundedSender<String>,
) -> Vec<String> {
    match request {
        ClientRequest::Subscribe { id, .. } => {
            let current =
                match tokio::time::timeout(WORK_WAIT, work.wait_for(|w| w.is_some())).await {
                    Ok(Ok(w)) => w.clone(),
                    _ => None,
                };
            let Some(w) = current else {
                return vec![response_error(
                    &id,
                    error_code::OTHER,
                    "the pool is unreachable; try again",
                )];
            };
            m.subscribed = true;
            m.extranonce_prefix = w.extranonce_prefix.clone();
            m.extranonce2_size = w.extranonce_size.saturating_sub(MINER_EXTRANONCE_BYTES);
            let subscription = format!("{:08x}", m.index);
            vec![response_ok(
                &id,
                json!([
                    [
                        ["mining.set_difficulty", subscription],
                        ["mining.notify", subscription]
                    ],
                    hex::encode(m.extranonce1()),
                    m.extranonce2_size
                ]),
            )]
        }
        ClientRequest::Authorize { id, user, .. } => {
            if !m.subscribed {
                return vec![response_error(
                    &id,
                    error_code::NOT_SUBSCRIBED,
                    "subscribe first",
                )];
            }
            if user.is_empty() {
                return vec![response_error(
                    &id,
                    error_code::UNAUTHORIZED,
                    "empty worker name",
                )];
            }
            m.authorized = Some(user);
            let mut replies = vec![response_ok(&id, json!(true))];
            let current = work.borrow().clone();
            if let Some(w) = current {
                replies.extend(on_work(m, &w));
            }
            replies
        }
        ClientRequest::Configure {
            id,
            extensions,
            version_rolling_mask,
            ..
        } => {
            let mut result = serde_json::Map::new();
            for e in extensions {
                if e == "version-rolling" {
                    let mask =
                        version_rolling_mask.unwrap_or(VERSION_ROLLING_MASK) & VERSION_ROLLING_MASK;
                    m.version_rolling = mask != 0;
                    result.insert("version-rolling".into(), json!(mask != 0));
                    result.insert("version-rolling.mask".into(), json!(format!("{mask:08x}")));
                } else {
                    result.insert(e, json!(false));
                }
            }
            vec![response_ok(&id, Value::Object(result))]
        }
        ClientRequest::ExtranonceSubscribe { id } | ClientRequest::SuggestDifficulty { id, .. } => {
            vec![response_ok(&id, json!(true))]
        }
        ClientRequest::Submit { id, submit } => match check_share(m, &submit) {
            Err((code, message)) => vec![response_error(&id, code, message)],
            Ok(share) => {
                let (verdict, answer) = oneshot::channel();
                let share = ShareToPool { verdict, ..share };
                if shares.send(share).await.is_err() {
                    return vec![response_error(
                        &id,
                        error_code::OTHER,
                        "translator stopping",
                    )];
                }
                let out = out.clone();
                tokio::spawn(async move {
                    let line = match answer.await {
                        Ok(Ok(())) => response_ok(&id, json!(true)),
                        Ok(Err(reason)) => response_error(
                            &id,
                            error_code::OTHER,
                            &format!("refused by the pool: {reason}"),
                        ),
                        Err(_) => response_error(&id, error_code::OTHER, "no answer from the pool"),
                    };
                    let _ = out.send(line);
                });
                Vec::new()
            }
        },
    }
}

/// Rebuilds the share's header from its job and checks it; returns what to send upstream.
fn check_share(m: &mut Miner, s: &Submit) -> Result<ShareToPool, (i64, &'static str)> {
    if !m.subscribed {
        return Err((error_code::NOT_SUBSCRIBED, "subscribe first"));
    }
    if m.authorized.as_deref() != Some(s.worker.as_str()) {
        return Err((error_code::UNAUTHORIZED, "worker not authorized"));
    }
    let Some((_, sent)) = m.jobs.iter().find(|(id, _)| *id == s.job_id) else {
        return Err((error_code::JOB_NOT_FOUND, "job not found (stale)"));
    };
    if s.extranonce2.len() != m.extranonce2_size {
        return Err((error_code::OTHER, "wrong extranonce2 size"));
    }
    let job = &sent.job;
    let version = match s.version_bits {
        Some(bits) if m.version_rolling => {
            (job.version & !VERSION_ROLLING_MASK) | (bits & VERSION_ROLLING_MASK)
        }
        Some(_) => return Err((error_code::OTHER, "version rolling was not configured")),
        None => job.version,
    };
    let key = (job.job_id, s.extranonce2.clone(), s.ntime, s.nonce, version);
    if m.seen.contains(&key) {
        return Err((error_code::DUPLICATE_SHARE, "duplicate share"));
    }
    let miner_part = [m.index.to_be_bytes().as_slice(), &s.extranonce2].concat();
    let coinbase = [
        job.coinbase_prefix.as_slice(),
        &m.extranonce_prefix,
        &miner_part,
        &job.coinbase_suffix,
    ]
    .concat();
    let root = merkle_root(&coinbase, &job.merkle_path);
    let mut header = [0u8; 80];
    header[0..4].copy_from_slice(&version.to_le_bytes());
    header[4..36].copy_from_slice(&job.prev_hash);
    header[36..68].copy_from_slice(&root);
    header[68..72].copy_from_slice(&s.ntime.to_le_bytes());
    header[72..76].copy_from_slice(&job.nbits.to_le_bytes());
    header[76..80].copy_from_slice(&s.nonce.to_le_bytes());
    let hash = Target::from_le_bytes(sha256d::Hash::hash(&header).to_byte_array());
    if hash > Target::from_le_bytes(sent.target) {
        return Err((error_code::LOW_DIFFICULTY, "low difficulty share"));
    }
    m.seen.insert(key);
    let (verdict, _) = oneshot::channel();
    Ok(ShareToPool {
        job_id: job.job_id,
        nonce: s.nonce,
        ntime: s.ntime,
        version,
        extranonce: miner_part,
        verdict,
    })
}
