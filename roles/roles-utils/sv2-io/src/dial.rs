use std::{net::SocketAddr, time::Duration};

pub use hashpool_config::HostPort;

use common_messages_sv2::{Protocol, SetupConnectionOwned};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned};
use stratum_apps::{
    key_utils::Secp256k1PublicKey,
    network_helpers::{connect_with_noise, TCP_CONNECT_TIMEOUT},
};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::{str0255, text, Connection, ConnectionError};

/// How to reach an SV2 server and present ourselves to it.
#[derive(Debug, Clone)]
pub struct Dial {
    /// A host name (resolved at each connect) or an IP address, and the port.
    pub address: HostPort,
    /// The server's authority key, pinned in the Noise handshake (`None` trusts any key: only
    /// for a peer on the same host).
    pub authority_key: Option<Secp256k1PublicKey>,
    pub protocol: Protocol,
    pub flags: u32,
    /// Sent as the hardware version: which Hashpool role is connecting.
    pub role: String,
    pub device_id: String,
    /// Frames read ahead of the consumer.
    pub capacity: usize,
    /// For the Noise handshake and SetupConnection together.
    pub setup_timeout: Duration,
}

impl Dial {
    /// `address`: a [`HostPort`], or a `SocketAddr` (or `&HostPort`).
    pub fn new(
        address: impl Into<HostPort>,
        authority_key: Option<Secp256k1PublicKey>,
        protocol: Protocol,
        role: &str,
    ) -> Self {
        Self {
            address: address.into(),
            authority_key,
            protocol,
            flags: 0,
            role: role.to_string(),
            device_id: role.to_string(),
            capacity: 1024,
            setup_timeout: Duration::from_secs(10),
        }
    }

    pub fn device_id(mut self, id: &str) -> Self {
        self.device_id = id.to_string();
        self
    }

    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    pub fn capacity(mut self, frames: usize) -> Self {
        self.capacity = frames;
        self
    }

    fn setup_message(&self) -> SetupConnectionOwned {
        SetupConnectionOwned {
            protocol: self.protocol,
            min_version: 2,
            max_version: 2,
            flags: self.flags,
            // The host as dialed (a name, for a server that hosts several), as SV2 asks.
            endpoint_host: str0255(&self.address.host()),
            endpoint_port: self.address.port(),
            vendor: str0255("hashpool"),
            hardware_version: str0255(&self.role),
            firmware: str0255(env!("CARGO_PKG_VERSION")),
            device_id: str0255(&self.device_id),
        }
    }
}

/// Connects (TCP with no Nagle delay, Noise with the key pinned, SetupConnection) and returns
/// the connection with the flags the server answered.
pub async fn dial(options: &Dial) -> Result<(Connection, u32), ConnectionError> {
    tokio::time::timeout(options.setup_timeout, set_up(options))
        .await
        .map_err(|_| ConnectionError::Timeout("setting up the connection"))?
}

/// TCP (no Nagle delay) and the Noise handshake with `authority_key` pinned, for a protocol
/// without SetupConnection (the stats protocol); [`dial`] for the SV2 protocols. A host name is
/// resolved now, on every call.
pub async fn connect_noise(
    address: impl Into<HostPort>,
    authority_key: Option<Secp256k1PublicKey>,
    capacity: usize,
) -> Result<Connection, ConnectionError> {
    let (stream, peer) = connect_tcp(&address.into()).await?;
    let noise = connect_with_noise(stream, authority_key)
        .await
        .map_err(ConnectionError::Noise)?;
    Ok(Connection::new(noise, peer, capacity))
}

/// The socket addresses `address` stands for now: the IP address itself, or what the host name
/// resolves to (system resolver: `/etc/hosts`, then DNS). A name that resolves to nothing is an
/// error naming it.
pub async fn resolve(address: &HostPort) -> Result<Vec<SocketAddr>, ConnectionError> {
    if let Some(ip) = address.socket_addr() {
        return Ok(vec![ip]);
    }
    let resolve_error = |source| ConnectionError::Resolve {
        address: address.to_string(),
        source,
    };
    let found = tokio::time::timeout(
        TCP_CONNECT_TIMEOUT,
        tokio::net::lookup_host((address.host(), address.port())),
    )
    .await
    .map_err(|_| resolve_error(std::io::ErrorKind::TimedOut.into()))?
    .map_err(resolve_error)?;
    let mut addresses: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    if addresses.is_empty() {
        return Err(resolve_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name has no address",
        )));
    }
    Ok(addresses)
}

/// Resolves `address` and connects (no Nagle delay) to the first of its addresses that answers,
/// in the resolver's order.
async fn connect_tcp(address: &HostPort) -> Result<(TcpStream, SocketAddr), ConnectionError> {
    let candidates = resolve(address).await?;
    let mut last = None;
    for peer in candidates {
        let attempt = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(peer))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        match attempt {
            Ok(stream) => {
                let connect_error = |source| ConnectionError::Connect {
                    address: address.to_string(),
                    source,
                };
                stream.set_nodelay(true).map_err(connect_error)?;
                if address.is_name() {
                    info!("connected to {address} (resolved to {peer})");
                } else {
                    debug!(%address, "connected");
                }
                return Ok((stream, peer));
            }
            Err(e) => {
                if address.is_name() {
                    debug!("connecting to {address} at {peer} failed: {e}");
                }
                last = Some((peer, e));
            }
        }
    }
    let Some((peer, source)) = last else {
        // `resolve` returns at least one address.
        return Err(ConnectionError::Resolve {
            address: address.to_string(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    Err(ConnectionError::Connect {
        address: if address.is_name() {
            format!("{address} ({peer})")
        } else {
            address.to_string()
        },
        source,
    })
}

async fn set_up(options: &Dial) -> Result<(Connection, u32), ConnectionError> {
    let mut conn = connect_noise(&options.address, options.authority_key, options.capacity).await?;
    conn.send(CommonMessagesOwned::SetupConnection(
        options.setup_message(),
    ))
    .await?;
    match conn.recv_message().await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(s)) => {
            Ok((conn, s.flags))
        }
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => Err(
            ConnectionError::Refused(format!("setup: {}", text(&e.error_code))),
        ),
        other => Err(ConnectionError::Protocol(format!(
            "SetupConnection answered with {other}"
        ))),
    }
}
