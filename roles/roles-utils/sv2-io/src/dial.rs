use std::{net::SocketAddr, time::Duration};

use common_messages_sv2::{Protocol, SetupConnectionOwned};
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned};
use stratum_apps::{
    key_utils::Secp256k1PublicKey,
    network_helpers::{connect_with_noise, TCP_CONNECT_TIMEOUT},
};
use tokio::net::TcpStream;

use crate::{str0255, text, Connection, ConnectionError};

/// How to reach an SV2 server and present ourselves to it.
#[derive(Debug, Clone)]
pub struct Dial {
    pub address: SocketAddr,
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
    pub fn new(
        address: SocketAddr,
        authority_key: Option<Secp256k1PublicKey>,
        protocol: Protocol,
        role: &str,
    ) -> Self {
        Self {
            address,
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
            endpoint_host: str0255(&self.address.ip().to_string()),
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
/// without SetupConnection (the stats protocol); [`dial`] for the SV2 protocols.
pub async fn connect_noise(
    address: SocketAddr,
    authority_key: Option<Secp256k1PublicKey>,
    capacity: usize,
) -> Result<Connection, ConnectionError> {
    let stream = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| ConnectionError::Connect(std::io::ErrorKind::TimedOut.into()))?
        .map_err(ConnectionError::Connect)?;
    stream.set_nodelay(true).map_err(ConnectionError::Connect)?;
    let noise = connect_with_noise(stream, authority_key)
        .await
        .map_err(ConnectionError::Noise)?;
    Ok(Connection::new(noise, address, capacity))
}

async fn set_up(options: &Dial) -> Result<(Connection, u32), ConnectionError> {
    let mut conn = connect_noise(options.address, options.authority_key, options.capacity).await?;
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
