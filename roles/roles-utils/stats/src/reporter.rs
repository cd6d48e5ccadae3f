//! The reporting side of the stats protocol. A role calls [`StatsReporter::report`], which never
//! blocks and never fails: reports wait in a bounded buffer; while the stats service is away
//! the oldest are dropped (and counted) to make room. A background task connects, proves the
//! reporter's key, and drains the buffer; a report is removed from it only once written.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hashpool_sv2_io::{
    connect_noise, keep_connected, Backoff, Connection, ConnectionError, HostPort,
};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::protocol::{sign_hello, Report, Role, StatsMessage};

/// Where and as whom a role reports.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The stats service's ingest address; a host name is resolved at each connect.
    pub address: HostPort,
    /// The stats service's authority key, pinned.
    pub service_public_key: Secp256k1PublicKey,
    /// The key this reporter proves it holds.
    pub secret_key: Secp256k1SecretKey,
    pub role: Role,
    pub name: String,
    /// Reports kept while the service is away.
    pub buffer: usize,
}

/// What the reporter did, for the role's metrics.
#[derive(Debug, Default)]
pub struct ReporterStats {
    pub sent: AtomicU64,
    /// Reports dropped because the buffer was full (the service away too long).
    pub dropped: AtomicU64,
    /// 1 while connected and authenticated.
    pub connected: AtomicU64,
    pub buffered: AtomicU64,
}

struct Shared {
    buffer: Mutex<VecDeque<Report>>,
    capacity: usize,
    wake: Notify,
    stats: Arc<ReporterStats>,
}

/// Cheap to clone; every clone feeds the same buffer.
#[derive(Clone)]
pub struct StatsReporter {
    shared: Arc<Shared>,
}

impl StatsReporter {
    /// Starts the background task; it runs until `shutdown`.
    pub fn spawn(config: ReporterConfig, shutdown: CancellationToken) -> Self {
        let reporter = Self::unconnected(config.buffer);
        let shared = reporter.shared.clone();
        tokio::spawn(async move {
            let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
            let peer = format!("stats service {}", config.address);
            let (config, shared) = (&config, &shared);
            keep_connected(&peer, backoff, &shutdown, |healthy| async move {
                let result = session(config, shared, healthy).await;
                shared.stats.connected.store(0, Ordering::Relaxed);
                result
            })
            .await
        });
        reporter
    }

    /// A reporter whose buffer nobody drains (for tests of the buffer, and for roles with
    /// reporting turned off that still want one code path).
    pub fn unconnected(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                buffer: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                wake: Notify::new(),
                stats: Arc::default(),
            }),
        }
    }

    /// Queues `report`; drops the oldest queued one if the buffer is full.
    pub fn report(&self, report: Report) {
        let s = &self.shared;
        {
            let mut buffer = s.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.len() >= s.capacity {
                // The oldest snapshot goes first: the next snapshot says the same and more,
                // while a block or an issuance is said once.
                match buffer.iter().position(|r| matches!(r, Report::Snapshot(_))) {
                    Some(i) => {
                        buffer.remove(i);
                    }
                    None => {
                        buffer.pop_front();
                    }
                }
                let dropped = s.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    warn!(
                        dropped,
                        "stats service away: its buffer is full, the oldest reports are dropped"
                    );
                }
            }
            buffer.push_back(report);
            s.stats
                .buffered
                .store(buffer.len() as u64, Ordering::Relaxed);
        }
        s.wake.notify_one();
    }

    pub fn stats(&self) -> &Arc<ReporterStats> {
        &self.shared.stats
    }

    /// The reports waiting, oldest first (for tests).
    pub fn pending(&self) -> Vec<Report> {
        let buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.iter().cloned().collect()
    }
}

fn unexpected(m: StatsMessage, expected: &str) -> ConnectionError {
    match m {
        StatsMessage::Refused(r) => ConnectionError::Refused(format!("{}: {}", r.code, r.message)),
        other => ConnectionError::Protocol(format!(
            "expected {expected}, got message {:#04x}",
            other.message_type()
        )),
    }
}

async fn session(
    config: &ReporterConfig,
    shared: &Shared,
    healthy: hashpool_sv2_io::Healthy,
) -> Result<(), ConnectionError> {
    let mut conn: Connection =
        connect_noise(&config.address, Some(config.service_public_key), 16).await?;
    let challenge = match conn.recv_extension().await? {
        StatsMessage::Challenge(c) => c,
        other => return Err(unexpected(other, "a challenge")),
    };
    let hello = sign_hello(
        &challenge,
        config.role,
        &config.name,
        &config.secret_key.into_bytes(),
    )
    .map_err(ConnectionError::Refused)?;
    conn.send_extension(&StatsMessage::Hello(hello)).await?;
    match conn.recv_extension().await? {
        StatsMessage::Welcome(_) => healthy.mark(),
        other => return Err(unexpected(other, "welcome")),
    }
    info!(service = %config.address, "reporting stats");
    shared.stats.connected.store(1, Ordering::Relaxed);
    loop {
        // Oldest first; taken off the buffer only after it was written.
        let head = {
            let buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.front().cloned()
        };
        let Some(report) = head else {
            tokio::select! {
                _ = shared.wake.notified() => continue,
                m = conn.recv_extension() => match m? {
                    refused @ StatsMessage::Refused(_) => return Err(unexpected(refused, "nothing")),
                    _ => continue,
                },
            }
        };
        conn.send_extension(&StatsMessage::Report(report.clone()))
            .await?;
        let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        // The head may have been dropped for room while this one was being written.
        if buffer.front() == Some(&report) {
            buffer.pop_front();
        }
        shared
            .stats
            .buffered
            .store(buffer.len() as u64, Ordering::Relaxed);
        shared.stats.sent.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Block;

    fn block(n: u64) -> Report {
        Report::Block(Block {
            at: n,
            hash: format!("{n:064x}"),
            ..Default::default()
        })
    }

    #[test]
    fn snapshots_make_room_before_events() {
        let r = StatsReporter::unconnected(3);
        let snapshot = |at| {
            Report::Snapshot(crate::protocol::Snapshot {
                at,
                ..Default::default()
            })
        };
        r.report(block(1));
        r.report(snapshot(2));
        r.report(block(3));
        r.report(snapshot(4));
        r.report(block(5));
        assert_eq!(r.pending(), vec![block(1), block(3), block(5)]);
        assert_eq!(r.stats().dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_it() {
        let r = StatsReporter::unconnected(3);
        for n in 0..5 {
            r.report(block(n));
        }
        assert_eq!(r.pending(), vec![block(2), block(3), block(4)]);
        assert_eq!(r.stats().dropped.load(Ordering::Relaxed), 2);
        assert_eq!(r.stats().buffered.load(Ordering::Relaxed), 3);
    }
}
