//! A bare SV2 client for tests that speak to the pool the way a faulty or hostile peer would.

use std::{net::SocketAddr, time::Duration};

use anyhow::{anyhow, bail};
use binary_sv2::U256Owned;
use codec_sv2::SerializedFrame;
use common_messages_sv2::{Protocol, SetupConnectionOwned};
use hashpool_sv2_io::{decode_frame, Connection, Sv2Message};
use mining_sv2::OpenStandardMiningChannelOwned;
use parsers_sv2::{AnyMessageOwned, CommonMessagesOwned, MiningOwned};
use stratum_apps::{key_utils::Secp256k1PublicKey, network_helpers::connect_with_noise};
use tokio::net::TcpStream;

/// A TCP connection to `addr` from `source` (port picked by the OS).
pub async fn tcp_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
    recv_buffer: Option<u32>,
) -> anyhow::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(source, 0))?;
    Ok(socket.connect(addr).await?)
}

pub struct RawClient {
    conn: Connection,
}

use hashpool_sv2_io::str0255 as s;

pub fn setup_connection(protocol: Protocol) -> SetupConnectionOwned {
    SetupConnectionOwned {
        protocol,
        min_version: 2,
        max_version: 2,
        flags: 1,
        endpoint_host: s("127.0.0.1"),
        endpoint_port: 0,
        vendor: s("test"),
        hardware_version: s("raw"),
        firmware: s("0"),
        device_id: s("raw"),
    }
}

impl RawClient {
    pub async fn connect(
        addr: SocketAddr,
        key: Option<Secp256k1PublicKey>,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        Self::handshake(stream, key).await
    }

    /// Connects from `source` (another loopback address, so a test can be several peers) with
    /// an optional small receive buffer (so a client that stops reading makes the pool's
    /// writes block after a few kilobytes rather than megabytes).
    pub async fn connect_from(
        addr: SocketAddr,
        key: Option<Secp256k1PublicKey>,
        source: std::net::IpAddr,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Self> {
        let stream = tcp_from(addr, source, recv_buffer).await?;
        Self::handshake(stream, key).await
    }

    /// The Noise handshake only: no SetupConnection (tests send what they want).
    async fn handshake(stream: TcpStream, key: Option<Secp256k1PublicKey>) -> anyhow::Result<Self> {
        let peer = stream.peer_addr()?;
        let noise = connect_with_noise(stream, key)
            .await
            .map_err(|e| anyhow!("noise handshake: {e:?}"))?;
        Ok(Self {
            conn: Connection::new(noise, peer, 64),
        })
    }

    pub async fn send(&mut self, msg: impl Sv2Message) -> anyhow::Result<()> {
        Ok(self.conn.send(msg).await?)
    }

    /// Sends an already built frame (e.g. a message with TLVs).
    pub async fn send_frame(&mut self, frame: SerializedFrame) -> anyhow::Result<()> {
        Ok(self.conn.send_frame(frame).await?)
    }

    /// Sends a frame with any header and payload, valid or not.
    pub async fn send_raw(
        &mut self,
        ext_type: u16,
        msg_type: u8,
        payload: &[u8],
    ) -> anyhow::Result<()> {
        let frame = hashpool_sv2_io::encode_raw(ext_type, false, msg_type, payload)?;
        self.send_frame(frame).await
    }

    /// The next frame, undecoded (for extensions the SRI parsers do not know).
    pub async fn recv_frame(&mut self, timeout: Duration) -> anyhow::Result<SerializedFrame> {
        match tokio::time::timeout(timeout, self.conn.recv_frame()).await {
            Err(_) => bail!("no frame within {timeout:?}"),
            Ok(frame) => Ok(frame?),
        }
    }

    /// The next message, or an error if the connection closed or nothing came in time.
    pub async fn recv(&mut self, timeout: Duration) -> anyhow::Result<AnyMessageOwned> {
        match tokio::time::timeout(timeout, self.conn.recv_frame()).await {
            Err(_) => bail!("no message within {timeout:?}"),
            Ok(frame) => Ok(decode_frame(&mut frame?, &[])?.1),
        }
    }

    /// Reads until a message matches `pick`, skipping others (jobs, targets).
    pub async fn recv_until<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&AnyMessageOwned) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if let Some(t) = pick(&m) {
                return Ok(t);
            }
        }
    }

    /// Whether the peer closes the connection within `timeout` (messages before that are
    /// skipped).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.conn.recv_frame()).await {
                Err(_) => return false,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return true,
            }
        }
    }

    /// SetupConnection for mining, then OpenStandardMiningChannel with the identity
    /// `<test_key(worker)>.<worker>` (a key-shaped identity needs no extension); returns the
    /// channel id.
    pub async fn open_standard_channel(&mut self, worker: &str) -> anyhow::Result<u32> {
        let user = format!("{}.{worker}", crate::test_key(worker));
        let user = user.as_str();
        self.send(CommonMessagesOwned::SetupConnection(setup_connection(
            Protocol::MiningProtocol,
        )))
        .await?;
        match self.recv(Duration::from_secs(10)).await? {
            AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {}
            other => bail!("expected SetupConnection.Success, got {other}"),
        }
        self.send(MiningOwned::OpenStandardMiningChannel(
            OpenStandardMiningChannelOwned {
                request_id: 42,
                user_identity: s(user),
                nominal_hash_rate: 1_000.0,
                max_target: U256Owned::from([0xff; 32]),
            },
        ))
        .await?;
        self.recv_until(Duration::from_secs(10), |m| match m {
            AnyMessageOwned::Mining(MiningOwned::OpenStandardMiningChannelSuccess(s)) => {
                Some(s.channel_id)
            }
            _ => None,
        })
        .await
    }
}
