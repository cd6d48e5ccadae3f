//! Stratum V1 CPU miner, for local runs and tests: subscribes, authorizes, builds each job's
//! coinbase with its own extranonce2, grinds nonces on OS threads (the SV2 miner's hasher) and
//! submits what meets the difficulty. Reconnects with back-off when the server goes away.

pub mod cli;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use bitcoin::Target;
use futures::{SinkExt, StreamExt};
use hashpool_sv1::{ServerMessage, MAX_LINE_LEN};
use hashpool_sv2_io::{keep_connected, Backoff, Healthy};
use mining_device::{
    hasher::{FoundShare, Hashers, Work, WorkSlot},
    MinerStats,
};
use serde_json::{json, Value};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::{
    codec::{Framed, LinesCodec},
    sync::CancellationToken,
};
use tracing::info;

#[derive(Debug, Clone)]
pub struct Sv1MinerOptions {
    pub address: SocketAddr,
    pub user: String,
    pub threads: usize,
    pub limit_hashrate: Option<f64>,
}

pub struct Sv1Miner {
    pub stats: Arc<MinerStats>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts mining in the background until `shutdown`.
pub fn start(options: Sv1MinerOptions, shutdown: CancellationToken) -> Sv1Miner {
    let stats = Arc::new(MinerStats::default());
    let task = tokio::spawn(run(options, stats.clone(), shutdown));
    Sv1Miner { stats, task }
}

async fn run(options: Sv1MinerOptions, stats: Arc<MinerStats>, shutdown: CancellationToken) {
    let mut hashers = Hashers::start(options.threads, options.limit_hashrate, stats.clone());
    {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let (options, stats, slot) = (&options, &stats, &hashers.slot);
        // One session at a time takes the shares found.
        let shares = &tokio::sync::Mutex::new(&mut hashers.shares);
        keep_connected("SV1 pool", backoff, &shutdown, |healthy| async move {
            let mut shares = shares.lock().await;
            let result = session(options, stats, slot, &mut shares, &healthy).await;
            slot.set(None);
            stats.connected.store(false, Ordering::Relaxed);
            // `{:#}`: the whole context chain in the log line.
            result.map_err(|e| format!("{e:#}"))
        })
        .await;
    }
    hashers.stop().await;
}

/// What one connection knows.
#[derive(Default)]
struct Session {
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    target: Option<Target>,
    /// Jobs by the hasher's numeric id: (SV1 job id, extranonce2 used).
    jobs: HashMap<u32, (String, Vec<u8>)>,
    next_job: u32,
    last_notify: Option<hashpool_sv1::Notify>,
    next_id: u64,
    /// Submit request ids awaiting an answer.
    submits: HashMap<u64, ()>,
}

impl Session {
    fn work(&mut self) -> Option<Work> {
        let n = self.last_notify.clone()?;
        let target = self.target?;
        let prev_hash = hashpool_sv1::prev_hash_from_sv1(&n.prev_hash)?;
        // A fresh extranonce2 per job: counter bytes, big-endian, padded to the size given.
        self.next_job = self.next_job.wrapping_add(1);
        let counter = self.next_job.to_be_bytes();
        let mut extranonce2 = vec![0u8; self.extranonce2_size];
        let take = counter.len().min(extranonce2.len());
        let len = extranonce2.len();
        extranonce2[len - take..].copy_from_slice(&counter[counter.len() - take..]);
        let coinbase = [
            n.coinbase1.as_slice(),
            &self.extranonce1,
            &extranonce2,
            &n.coinbase2,
        ]
        .concat();
        let merkle_root = hashpool_sv1::merkle_root(&coinbase, &n.merkle_branch);
        self.jobs
            .insert(self.next_job, (n.job_id.clone(), extranonce2));
        if self.jobs.len() > 64 {
            let oldest = self.next_job.wrapping_sub(64);
            self.jobs.retain(|id, _| id.wrapping_sub(oldest) < 64);
        }
        Some(Work {
            job_id: self.next_job,
            version: n.version,
            prev_hash,
            merkle_root,
            ntime: n.ntime,
            nbits: n.nbits,
            target,
        })
    }
}

async fn session(
    options: &Sv1MinerOptions,
    stats: &MinerStats,
    slot: &WorkSlot,
    shares: &mut mpsc::Receiver<FoundShare>,
    healthy: &Healthy,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(options.address)
        .await
        .with_context(|| format!("connecting to {}", options.address))?;
    stream.set_nodelay(true)?;
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE_LEN));
    let mut s = Session {
        next_id: 4,
        ..Default::default()
    };
    lines
        .send(
            hashpool_sv1::request(1, "mining.subscribe", json!(["hashpool-sv1-cpu/0.1"]))
                .trim_end(),
        )
        .await?;
    lines
        .send(hashpool_sv1::request(2, "mining.authorize", json!([options.user, "x"])).trim_end())
        .await?;
    // This miner follows mining.set_extranonce; a server may move its extranonce.
    lines
        .send(hashpool_sv1::request(3, "mining.extranonce.subscribe", json!([])).trim_end())
        .await?;
    while shares.try_recv().is_ok() {}
    loop {
        tokio::select! {
            line = lines.next() => {
                let line = match line {
                    Some(Ok(l)) => l,
                    Some(Err(e)) => bail!("reading: {e}"),
                    None => bail!("the server closed the connection"),
                };
                let message = hashpool_sv1::parse_server_line(&line).map_err(|e| anyhow!("bad line from the server: {e}"))?;
                if on_message(message, &mut s, stats, healthy)? {
                    slot.set(s.work());
                }
            }
            share = shares.recv() => {
                let Some(share) = share else { return Ok(()) };
                let Some((job_id, extranonce2)) = s.jobs.get(&share.job_id).cloned() else {
                    continue;
                };
                let id = s.next_id;
                s.next_id += 1;
                s.submits.insert(id, ());
                stats.shares_submitted.fetch_add(1, Ordering::Relaxed);
                let params = json!([
                    options.user,
                    job_id,
                    hex::encode(extranonce2),
                    format!("{:08x}", share.ntime),
                    format!("{:08x}", share.nonce),
                ]);
                lines.send(hashpool_sv1::request(id, "mining.submit", params).trim_end()).await?;
            }
        }
    }
}

/// Applies a server message; true when the work changed.
fn on_message(
    message: ServerMessage,
    s: &mut Session,
    stats: &MinerStats,
    healthy: &Healthy,
) -> anyhow::Result<bool> {
    match message {
        ServerMessage::Response { id, result, error } => {
            let id = id.as_u64().unwrap_or_default();
            match id {
                1 => {
                    if let Some((code, msg)) = error {
                        bail!("subscribe refused: {msg} ({code})");
                    }
                    // [[subscriptions], extranonce1, extranonce2_size]
                    let e1 = result
                        .get(1)
                        .and_then(Value::as_str)
                        .and_then(|h| hex::decode(h).ok())
                        .context("subscribe result without extranonce1")?;
                    let size = result
                        .get(2)
                        .and_then(Value::as_u64)
                        .context("subscribe result without extranonce2 size")?;
                    s.extranonce1 = e1;
                    s.extranonce2_size = size as usize;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    stats.connected.store(true, Ordering::Relaxed);
                    healthy.mark();
                    return Ok(true);
                }
                2 => {
                    if error.is_some() || result != Value::Bool(true) {
                        bail!("authorize refused: {error:?}");
                    }
                    info!("authorized");
                }
                _ if s.submits.remove(&id).is_some() => {
                    if error.is_none() && result == Value::Bool(true) {
                        stats.shares_acknowledged.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.shares_rejected.fetch_add(1, Ordering::Relaxed);
                        info!(?error, "share rejected");
                    }
                }
                _ => {}
            }
            Ok(false)
        }
        ServerMessage::Notify(n) => {
            stats.jobs.fetch_add(1, Ordering::Relaxed);
            s.last_notify = Some(n);
            Ok(true)
        }
        ServerMessage::SetDifficulty(d) => {
            stats.set_targets.fetch_add(1, Ordering::Relaxed);
            s.target = Some(Target::from_le_bytes(hashpool_sv1::difficulty_to_target(d)));
            Ok(true)
        }
        ServerMessage::SetExtranonce {
            extranonce1,
            extranonce2_size,
        } => {
            s.extranonce1 = extranonce1;
            s.extranonce2_size = extranonce2_size;
            Ok(true)
        }
        ServerMessage::SetVersionMask(_) | ServerMessage::Other(_) => Ok(false),
    }
}
