//! The stats service's listener: Noise responder for reporters, challenge, then reports into
//! the store. A reporter that is not allowed, speaks another version or role, or sends anything
//! malformed is refused with a reason and disconnected; the service goes on.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hashpool_sv2_io::{Connection, ConnectionError, ServerIdentity};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    protocol::{
        verify_hello, Challenge, Refused, Report, Role, StatsMessage, Welcome, PROTOCOL_VERSION,
    },
    store::Store,
};

/// A reporter has this long to answer the challenge.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub authority_public_key: Secp256k1PublicKey,
    pub authority_secret_key: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
    /// The only role that reports here.
    pub role: Role,
    /// Keys allowed to report (x-only).
    pub reporter_keys: Vec<[u8; 32]>,
    /// Reports are stored at the time they carry (so reports buffered through an outage land
    /// where they belong), clamped to this far back and never in the future.
    pub max_report_age_secs: i64,
}

#[derive(Debug, Default)]
pub struct IngestStats {
    pub reports: AtomicU64,
    /// Connections refused: bad key, version, role, malformed or unexpected frames.
    pub refused: AtomicU64,
    /// The same by reason, in [`REFUSAL_REASONS`] order.
    refusals: [AtomicU64; REFUSAL_REASONS.len()],
    pub reporters_connected: AtomicU64,
    /// Reports the store could not take (database errors).
    pub store_errors: AtomicU64,
    /// The latest connection of each reporter name: only it may mark the reporter gone.
    generations: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    next_generation: AtomicU64,
}

/// Why a reporter connection was refused: the code sent to it (`handshake`: the Noise
/// handshake failed; `other`: a code not in this list).
pub const REFUSAL_REASONS: [&str; 7] = [
    "handshake",
    "unauthorized",
    "unsupported-version",
    "wrong-role",
    "malformed",
    "unexpected",
    "other",
];

impl IngestStats {
    /// Counts a refused connection.
    fn refuse(&self, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let i = REFUSAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REFUSAL_REASONS.len() - 1);
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Refused connections by reason ([`REFUSAL_REASONS`]).
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        REFUSAL_REASONS
            .iter()
            .zip(&self.refusals)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn connected(&self, reporter: &str) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(reporter.to_string(), generation);
        generation
    }

    /// True if `generation` was the reporter's latest connection (then it is forgotten).
    fn left(&self, reporter: &str, generation: u64) -> bool {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if g.get(reporter) == Some(&generation) {
            g.remove(reporter);
            true
        } else {
            false
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("connection closed")]
    Closed,
    #[error("refused ({code}): {message}")]
    Refused { code: &'static str, message: String },
}

impl IngestError {
    /// The refusal's code (`other` for a closed connection).
    fn code(&self) -> &'static str {
        match self {
            Self::Refused { code, .. } => code,
            Self::Closed => "other",
        }
    }
}

fn refused(code: &'static str, message: impl Into<String>) -> IngestError {
    IngestError::Refused {
        code,
        message: message.into(),
    }
}

pub fn now_secs() -> i64 {
    i64::try_from(hashpool_role::unix_now()).unwrap_or(i64::MAX)
}

pub async fn serve(
    listener: TcpListener,
    config: Arc<IngestConfig>,
    store: Store,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) {
    hashpool_sv2_io::accept_until(listener, shutdown.clone(), move |stream, peer| {
        let (config, store, stats, shutdown) = (
            config.clone(),
            store.clone(),
            stats.clone(),
            shutdown.clone(),
        );
        async move {
            tokio::select! {
                _ = connection(stream, peer, &config, &store, &stats) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    config: &IngestConfig,
    store: &Store,
    stats: &IngestStats,
) {
    let identity = ServerIdentity {
        public_key: config.authority_public_key,
        secret_key: config.authority_secret_key,
        cert_validity_secs: config.cert_validity_secs,
    };
    let mut conn = match hashpool_sv2_io::accept(stream, peer, &identity, 64, HELLO_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => {
            stats.refuse("handshake");
            debug!(%peer, "stats connection failed: {e}");
            return;
        }
    };
    let reporter = match authenticate(&mut conn, config).await {
        Ok(name) => name,
        Err(e) => {
            stats.refuse(e.code());
            refuse(&mut conn, &e).await;
            warn!(%peer, "stats reporter refused: {e}");
            return;
        }
    };
    info!(%peer, %reporter, "stats reporter connected");
    stats.reporters_connected.fetch_add(1, Ordering::Relaxed);
    let generation = stats.connected(&reporter);
    let _ = store
        .reporter_health(
            &reporter,
            true,
            &format!("reporting from {peer}"),
            now_secs(),
        )
        .await;
    let result = reports(&mut conn, &reporter, config, store, stats).await;
    stats.reporters_connected.fetch_sub(1, Ordering::Relaxed);
    // A newer connection of the same reporter (it reconnected before this one was seen to
    // close) keeps it up.
    if stats.left(&reporter, generation) {
        let _ = store
            .reporter_health(&reporter, false, "disconnected", now_secs())
            .await;
    }
    match result {
        Err(e @ IngestError::Refused { .. }) => {
            stats.refuse(e.code());
            refuse(&mut conn, &e).await;
            warn!(%peer, %reporter, "stats reporter disconnected: {e}");
        }
        _ => info!(%peer, %reporter, "stats reporter left"),
    }
}

async fn refuse(conn: &mut Connection, e: &IngestError) {
    if let IngestError::Refused { code, message } = e {
        let m = StatsMessage::Refused(Refused {
            code: code.to_string(),
            message: message.clone(),
        });
        let _ = conn.send_extension(&m).await;
    }
}

async fn next(conn: &mut Connection) -> Result<StatsMessage, IngestError> {
    conn.recv_extension().await.map_err(|e| match e {
        ConnectionError::Closed => IngestError::Closed,
        other => refused("malformed", other.to_string()),
    })
}

async fn send(conn: &mut Connection, m: &StatsMessage) -> Result<(), IngestError> {
    conn.send_extension(m)
        .await
        .map_err(|_| IngestError::Closed)
}

/// Challenge and Hello; returns the reporter's name.
async fn authenticate(conn: &mut Connection, config: &IngestConfig) -> Result<String, IngestError> {
    let nonce: [u8; 32] = rand::random();
    let challenge = Challenge {
        protocol_version: PROTOCOL_VERSION,
        nonce: hex::encode(nonce),
    };
    send(conn, &StatsMessage::Challenge(challenge)).await?;
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, next(conn)).await {
        Err(_) => return Err(refused("unexpected", "no hello in time")),
        Ok(m) => match m? {
            StatsMessage::Hello(h) => h,
            other => {
                return Err(refused(
                    "unexpected",
                    format!("expected hello, got message {:#04x}", other.message_type()),
                ))
            }
        },
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(refused(
            "unsupported-version",
            format!(
                "this service speaks version {PROTOCOL_VERSION}, not {}",
                hello.protocol_version
            ),
        ));
    }
    if hello.role != config.role {
        return Err(refused(
            "wrong-role",
            format!(
                "this service takes reports from the {}, not the {}",
                config.role.as_str(),
                hello.role.as_str()
            ),
        ));
    }
    if hello.reporter.is_empty() || hello.reporter.len() > 128 || hello.reporter.contains('/') {
        return Err(refused(
            "malformed",
            "a reporter name is 1 to 128 characters, without '/'",
        ));
    }
    verify_hello(&hello, &nonce, &config.reporter_keys)
        .map_err(|reason| refused("unauthorized", reason))?;
    send(conn, &StatsMessage::Welcome(Welcome {})).await?;
    Ok(hello.reporter)
}

/// Reports until the reporter leaves or sends something it must not.
async fn reports(
    conn: &mut Connection,
    reporter: &str,
    config: &IngestConfig,
    store: &Store,
    stats: &IngestStats,
) -> Result<(), IngestError> {
    loop {
        let report = match next(conn).await {
            Err(IngestError::Closed) => return Ok(()),
            Err(e) => return Err(e),
            Ok(StatsMessage::Report(r)) => r,
            Ok(other) => {
                return Err(refused(
                    "unexpected",
                    format!("message {:#04x} after hello", other.message_type()),
                ))
            }
        };
        let now = now_secs();
        let at = |reported: u64| {
            i64::try_from(reported)
                .unwrap_or(i64::MAX)
                .clamp(now - config.max_report_age_secs.max(0), now)
        };
        let stored = match &report {
            Report::Snapshot(s) => store
                .ingest_snapshot(reporter, at(s.at), s)
                .await
                .map(|_| ()),
            Report::Block(b) => store.ingest_block(reporter, at(b.at), b).await.map(|_| ()),
            Report::Issuance(i) => store
                .ingest_issuance(reporter, at(i.at), i)
                .await
                .map(|_| ()),
        };
        match stored {
            Ok(()) => {
                stats.reports.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // The reporter is not at fault: keep the connection.
                stats.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(%reporter, "could not store a report: {e}");
            }
        }
    }
}
