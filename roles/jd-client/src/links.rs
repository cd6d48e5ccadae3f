//! The jd-client's three upstream connections (template provider, jd-server, pool). Each is a
//! Noise session that reconnects with back-off; it hands what it receives to the core as
//! [`Event`]s and writes what the core sends it. The pool link also negotiates the mint-quote
//! extension, opens the channel with the wallet's locking key, and hands quote announcements
//! straight to the wallet's minter.

use std::{net::SocketAddr, time::Duration};

use binary_sv2::{Seq064KOwned, U256Owned};
use common_messages_sv2::{Protocol, SetupConnectionOwned};
use extensions_sv2::RequestExtensionsOwned;
use hashpool_sv2_io::{
    decode_frame, encode_with_tlvs, extension_frame, send_frame, spawn_reader, str0255, text,
    Backoff, IncomingFrames,
};
use mining_sv2::OpenExtendedMiningChannelOwned;
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned, MiningOwned,
};
use stratum_apps::{
    key_utils::Secp256k1PublicKey,
    network_helpers::{connect_with_noise, noise_stream::NoiseTcpWriteHalf},
};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{core::Event, work::INDEX_BYTES, JdClientRunConfig};

/// Extranonce bytes each downstream channel can roll (the translator asks for 8).
pub const DOWNSTREAM_ROLLABLE: usize = 8;
/// What the core may queue for one upstream before the link is considered stuck.
pub const OUT_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("noise handshake: {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("connection closed")]
    Closed,
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("send: {0}")]
    Send(#[from] hashpool_sv2_io::SendError),
    #[error("refused: {0}")]
    Refused(String),
}

/// Which upstream a link talks to.
#[derive(Debug, Clone, Copy)]
pub enum Upstream {
    TemplateProvider,
    JdServer,
    Pool,
}

impl Upstream {
    fn protocol(self) -> Protocol {
        match self {
            Upstream::TemplateProvider => Protocol::TemplateDistributionProtocol,
            Upstream::JdServer => Protocol::JobDeclarationProtocol,
            Upstream::Pool => Protocol::MiningProtocol,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Upstream::TemplateProvider => "template provider",
            Upstream::JdServer => "jd-server",
            Upstream::Pool => "pool",
        }
    }

    fn lost(self) -> Event {
        match self {
            Upstream::TemplateProvider => Event::TpLost,
            Upstream::JdServer => Event::JdsLost,
            Upstream::Pool => Event::PoolLost,
        }
    }
}

async fn next(frames: &mut IncomingFrames) -> Result<codec_sv2::SerializedFrame, LinkError> {
    match frames.recv().await {
        Some(Ok(f)) => Ok(f),
        _ => Err(LinkError::Closed),
    }
}

async fn next_message(frames: &mut IncomingFrames) -> Result<AnyMessageOwned, LinkError> {
    Ok(decode_frame(&mut next(frames).await?, &[])?.1)
}

/// Connects, completes the Noise handshake (the key pinned when given) and SetupConnection.
async fn connect(
    upstream: Upstream,
    address: SocketAddr,
    key: Option<Secp256k1PublicKey>,
) -> Result<(IncomingFrames, NoiseTcpWriteHalf), LinkError> {
    let stream = tokio::time::timeout(
        stratum_apps::network_helpers::TCP_CONNECT_TIMEOUT,
        TcpStream::connect(address),
    )
    .await
    .map_err(|_| LinkError::Connect(std::io::ErrorKind::TimedOut.into()))?
    .map_err(LinkError::Connect)?;
    stream.set_nodelay(true).map_err(LinkError::Connect)?;
    let noise = connect_with_noise(stream, key)
        .await
        .map_err(LinkError::Noise)?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 1024);
    hashpool_sv2_io::send(
        &mut writer,
        CommonMessagesOwned::SetupConnection(SetupConnectionOwned {
            protocol: upstream.protocol(),
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: str0255(&address.ip().to_string()),
            endpoint_port: address.port(),
            vendor: str0255("hashpool"),
            hardware_version: str0255("jd-client"),
            firmware: str0255(env!("CARGO_PKG_VERSION")),
            device_id: str0255("jd-client"),
        }),
    )
    .await?;
    match next_message(&mut frames).await? {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {
            Ok((frames, writer))
        }
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionError(e)) => {
            Err(LinkError::Refused(text(&e.error_code)))
        }
        other => Err(LinkError::Refused(format!("setup answered with {other}"))),
    }
}

/// Keeps one upstream connected until `shutdown`, reconnecting with back-off.
pub async fn run(
    upstream: Upstream,
    config: JdClientRunConfig,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    loop {
        let result = tokio::select! {
            r = session(upstream, &config, &events, &mut backoff) => r,
            _ = shutdown.cancelled() => return,
        };
        if events.send(upstream.lost()).await.is_err() {
            return;
        }
        let delay = backoff.next_delay();
        warn!(
            upstream = upstream.name(),
            retry_in_ms = delay.as_millis() as u64,
            "{} unavailable: {}",
            upstream.name(),
            result.err().map(|e| e.to_string()).unwrap_or_default()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn session(
    upstream: Upstream,
    config: &JdClientRunConfig,
    events: &mpsc::Sender<Event>,
    backoff: &mut Backoff,
) -> Result<(), LinkError> {
    let (address, key) = match upstream {
        Upstream::TemplateProvider => (
            config.template_provider.address,
            config.template_provider.authority_public_key,
        ),
        Upstream::JdServer => (
            config.jd_server.address,
            config.jd_server.authority_public_key,
        ),
        Upstream::Pool => (config.pool.address, Some(config.pool.authority_public_key)),
    };
    let (mut frames, mut writer) = connect(upstream, address, key).await?;
    let (tx, mut rx) = mpsc::channel::<AnyMessageOwned>(OUT_QUEUE);
    let connected = match upstream {
        Upstream::TemplateProvider => Event::TpUp(tx),
        Upstream::JdServer => Event::JdsUp(tx),
        Upstream::Pool => {
            let channel = open_pool_channel(config, &mut frames, &mut writer).await?;
            Event::PoolUp { tx, channel }
        }
    };
    info!(upstream = upstream.name(), %address, "connected");
    backoff.reset();
    events
        .send(connected)
        .await
        .map_err(|_| LinkError::Closed)?;
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => return Err(LinkError::Closed),
                };
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension(config, &ext);
                    continue;
                }
                let event = match decode_frame(&mut frame, &[])?.1 {
                    AnyMessageOwned::TemplateDistribution(m) => Event::Tp(m),
                    AnyMessageOwned::JobDeclaration(m) => Event::Jds(m),
                    AnyMessageOwned::Mining(m) => Event::Pool(m),
                    other => {
                        debug!(upstream = upstream.name(), "ignoring {other}");
                        continue;
                    }
                };
                events.send(event).await.map_err(|_| LinkError::Closed)?;
            }
            out = rx.recv() => {
                let Some(message) = out else { return Ok(()) };
                hashpool_sv2_io::send(&mut writer, message).await?;
            }
        }
    }
}

/// Mint-quote extension, then one extended channel locked to the wallet's key.
async fn open_pool_channel(
    config: &JdClientRunConfig,
    frames: &mut IncomingFrames,
    writer: &mut NoiseTcpWriteHalf,
) -> Result<mining_sv2::OpenExtendedMiningChannelSuccessOwned, LinkError> {
    let mut with_tlv = false;
    if config.locking_key.is_some() {
        hashpool_sv2_io::send(
            writer,
            ExtensionsOwned::ExtensionsNegotiation(ExtensionsNegotiationOwned::RequestExtensions(
                RequestExtensionsOwned {
                    request_id: 1,
                    requested_extensions: Seq064KOwned::new(vec![ext_mint_quote::EXTENSION_TYPE])
                        .expect("one extension"),
                },
            )),
        )
        .await?;
        match next_message(frames).await? {
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsSuccess(_),
            )) => with_tlv = true,
            AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                ExtensionsNegotiationOwned::RequestExtensionsError(_),
            )) => warn!("the pool does not offer the mint-quote extension: mining without ehash"),
            other => return Err(LinkError::Refused(format!("extensions: {other}"))),
        }
    }
    let open = MiningOwned::OpenExtendedMiningChannel(OpenExtendedMiningChannelOwned {
        request_id: 1,
        user_identity: str0255(&config.pool.user_identity),
        nominal_hash_rate: config.pool.nominal_hashrate,
        max_target: U256Owned::from([0xff; 32]),
        min_extranonce_size: (INDEX_BYTES + DOWNSTREAM_ROLLABLE) as u16,
    });
    match config.locking_key.filter(|_| with_tlv) {
        Some(key) => {
            let frame = encode_with_tlvs(open, &[ext_mint_quote::locking_key_tlv(&key)])?;
            send_frame(writer, frame).await?
        }
        None => hashpool_sv2_io::send(writer, open).await?,
    }
    // Quote announcements may come before the answer; anything else before it is refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut frame = tokio::time::timeout_at(deadline, next(frames))
            .await
            .map_err(|_| LinkError::Refused("no answer to the channel request".into()))??;
        if let Some(ext) = extension_frame(&mut frame) {
            on_extension(config, &ext);
            continue;
        }
        match decode_frame(&mut frame, &[])?.1 {
            AnyMessageOwned::Mining(MiningOwned::OpenExtendedMiningChannelSuccess(s)) => {
                info!(
                    channel_id = s.channel_id,
                    extranonce_prefix = s.extranonce_prefix.as_ref().len(),
                    extranonce_size = s.extranonce_size,
                    ehash = with_tlv,
                    "pool channel open"
                );
                return Ok(s);
            }
            AnyMessageOwned::Mining(MiningOwned::OpenMiningChannelError(e)) => {
                return Err(LinkError::Refused(format!(
                    "channel refused: {}",
                    text(&e.error_code)
                )))
            }
            other => debug!("before the channel: ignoring {other}"),
        }
    }
}

/// Quote announcements go to the wallet; anything else from an extension is only logged.
fn on_extension(config: &JdClientRunConfig, ext: &hashpool_sv2_io::ExtensionFrame) {
    let announced =
        hashpool_wallet::announced_quote(ext.extension_type, ext.message_type, &ext.payload);
    if let (Some((quote, _)), Some(minter)) = (announced, &config.minter) {
        minter.announce(quote);
    }
}
