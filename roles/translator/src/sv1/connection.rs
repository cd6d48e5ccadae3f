//! One SV1 miner's task: its requests answered in order, the pool's verdicts and new work
//! passed on as they come, its difficulty revisited every vardiff interval.

use std::net::SocketAddr;

use bitcoin::Target;
use channels_sv2::vardiff::classic::VardiffState;
use futures::{stream::SplitSink, SinkExt, StreamExt};
use hashpool_shares::ShareChecker;
use hashpool_sv1::{error_code, parse_client_line, response_error, MAX_LINE_LEN};
use serde_json::Value;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::{
    codec::{Framed, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};
use tracing::debug;

use super::{
    miner::{on_work, Miner},
    requests::on_request,
    vardiff::retarget,
    Shared, RECENT_JOBS,
};
use crate::{stats::Sv1Limit, sv2::MIN_EXTRANONCE2_BYTES, ChannelMode};

/// Targets every connection starts from.
#[derive(Clone, Copy)]
pub(super) struct Targets {
    /// A new miner's, from `vardiff.initial_hashrate` (floored).
    pub(super) initial: [u8; 32],
    /// The easiest any miner may have: `min_share_difficulty`'s.
    pub(super) floor: [u8; 32],
}

/// Initial read and write buffer of a miner connection.
const CONNECTION_BUFFER: usize = 512;

pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    index: u32,
    shared: &Shared,
    targets: Targets,
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
    // Public mode: no work until the miner's key is known (at authorize); `_idle` keeps the
    // empty work open until then.
    let (_idle, idle_work) = watch::channel(None);
    let (own_channel, mut work) = match (&shared.aggregated, shared.mode) {
        (Some(work), _) => (None, work.clone()),
        (None, ChannelMode::PerKey) => (None, idle_work),
        (None, _) => {
            let (tx, rx) = watch::channel(None);
            (Some(tx), rx)
        }
    };
    let public = shared.mode == ChannelMode::PerKey;
    let mut m = Miner {
        index,
        source: hashpool_sv2_io::address_source(peer.ip()),
        subscribed: false,
        authorized: None,
        version_rolling: false,
        opening: None,
        aggregated: shared.mode.shares_channels(),
        extranonce_prefix: Vec::new(),
        extranonce2_size: if public { MIN_EXTRANONCE2_BYTES } else { 0 },
        fixed_extranonce: public,
        pad: 0,
        key: None,
        target: None,
        shares: ShareChecker::new(
            Target::from_le_bytes(targets.floor),
            RECENT_JOBS,
            shared.limits.max_shares_per_job,
        ),
        hashrate: shared.vardiff.initial_hashrate,
        vardiff: VardiffState::new().map_err(|e| anyhow::anyhow!("vardiff: {e:?}"))?,
        vardiff_target: targets.initial,
        own_channel,
        extranonce_subscribed: false,
        must_reconnect: false,
        counters: None,
    };
    let period = shared.vardiff.interval;
    let mut vardiff = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    vardiff.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    debug!(%peer, index, "SV1 miner connected");
    let limits = &shared.limits;
    let authorize_by = Instant::now() + limits.authorize_timeout;
    let mut last_line = Instant::now();
    let result = async {
        loop {
            // The next deadline: authorizing (until a worker is), and hearing from the miner.
            let idle_by = last_line + limits.idle_timeout;
            let (deadline, limit) = if m.authorized.is_none() && authorize_by < idle_by {
                (authorize_by, Sv1Limit::AuthorizeTimeout)
            } else {
                (idle_by, Sv1Limit::IdleTimeout)
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    shared.stats.limit_hits.count(limit);
                    anyhow::bail!("limit `{}` met: closed", limit.as_str());
                }
                line = lines.next() => {
                    last_line = Instant::now();
                    let line = match line {
                        None => return Ok(()),
                        Some(Ok(l)) => l,
                        Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                            // The codec cannot resynchronise after an oversized line: answer, close.
                            send(&mut sink, response_error(&Value::Null, error_code::INVALID_REQUEST, "line too long"), shared).await?;
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
                            send(&mut sink, response_error(&e.id, e.code, &e.message), shared).await?;
                            continue;
                        }
                    };
                    for reply in on_request(request, &mut m, &mut work, shared, &out_tx).await {
                        send(&mut sink, reply, shared).await?;
                    }
                }
                answer = out.recv() => {
                    if let Some(answer) = answer {
                        send(&mut sink, answer, shared).await?;
                    }
                }
                changed = work.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let current = work.borrow_and_update().clone();
                    if let Some(w) = current {
                        for line in on_work(&mut m, &w) {
                            send(&mut sink, line, shared).await?;
                        }
                    }
                }
                _ = vardiff.tick() => {
                    for line in retarget(&mut m, &work, shared).await {
                        send(&mut sink, line, shared).await?;
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
            if m.must_reconnect {
                anyhow::bail!(
                    "its extranonce changed (new pool channel) and it did not send \
                     mining.extranonce.subscribe: closed so that it reconnects"
                );
            }
        }
    }
    .await;
    if m.authorized.is_some() {
        shared.stats.rehash(m.hashrate, 0.0);
        shared.stats.unregister_miner(m.index);
    }
    if let (Some((key, slot)), Some(keys)) = (m.key, &shared.keys) {
        keys.leave(key, slot, m.source, &shared.commands).await;
    }
    result
}

type Sink = SplitSink<Framed<TcpStream, LinesCodec>, String>;

/// Sends one line; a miner that does not read it within `write_timeout` is closed.
async fn send(sink: &mut Sink, line: String, shared: &Shared) -> anyhow::Result<()> {
    let timeout = shared.limits.write_timeout;
    match tokio::time::timeout(timeout, sink.send(trim(line))).await {
        Ok(sent) => Ok(sent?),
        Err(_) => {
            shared.stats.limit_hits.count(Sv1Limit::WriteTimeout);
            anyhow::bail!("limit `write_timeout` met: it read nothing for {timeout:?}: closed")
        }
    }
}

pub(super) fn trim(mut line: String) -> String {
    while line.ends_with('\n') {
        line.pop();
    }
    line
}
