use crate::{FrameError, SendError};

/// Why a connection could not be set up or was lost: one type for every role's links.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The TCP connection to `address` (with the address it resolved to, for a name) failed.
    #[error("connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// The host name of `address` did not resolve (now: it is resolved again at the next try).
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("noise handshake failed (is the peer's authority key right?): {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl ConnectionError {
    /// A port probe (a health check) connects and closes before the Noise handshake: not worth
    /// a warning.
    pub fn is_probe(&self) -> bool {
        matches!(
            self,
            ConnectionError::Noise(stratum_apps::network_helpers::Error::SocketClosed)
        )
    }
}

/// Logs how a served peer's session ended, at the level it deserves: a peer that closed at
/// info, a port probe (a health check) at debug, a refusal or a violation at warn.
pub fn log_session_end(
    peer: std::net::SocketAddr,
    who: &str,
    result: &Result<(), ConnectionError>,
) {
    match result {
        Ok(()) | Err(ConnectionError::Closed) => tracing::info!(%peer, "{who} disconnected"),
        Err(e) if e.is_probe() => {
            tracing::debug!(%peer, "connection closed before the Noise handshake")
        }
        Err(e) => tracing::warn!(%peer, "{who} dropped: {e}"),
    }
}

impl From<SendError> for ConnectionError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Encode(e) => ConnectionError::Frame(e),
            SendError::Closed => ConnectionError::Closed,
        }
    }
}
