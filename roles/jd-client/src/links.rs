//! The jd-client's three upstream connections (template provider, jd-server, pool). Each is a
//! Noise session that reconnects with back-off; it hands what it receives to the core as
//! [`Event`]s and writes what the core sends it. The pool link also negotiates the mint-quote
//! extension, opens the channel with the wallet's locking key, and hands quote announcements
//! straight to the wallet's minter.

use std::time::Duration;

use binary_sv2::U256Owned;
use common_messages_sv2::Protocol;
use hashpool_sv2_io::{
    decode_frame, encode_with_tlvs, extension_frame, keep_connected, str0255, text, Backoff,
    Connection, ConnectionError, Dial, Healthy,
};
use hashpool_wallet::Minter;
use mining_sv2::OpenExtendedMiningChannelOwned;
use parsers_sv2::{AnyMessageOwned, MiningOwned};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{config::JdClientRunConfig, core::Event, work::INDEX_BYTES};

/// Extranonce bytes each downstream channel can roll (the translator asks for 8).
pub const DOWNSTREAM_ROLLABLE: usize = 8;
/// What the core may queue for one upstream before the link is considered stuck.
pub const OUT_QUEUE: usize = 1024;

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

/// Keeps one upstream connected until `shutdown`, reconnecting with back-off.
pub async fn run(
    upstream: Upstream,
    config: JdClientRunConfig,
    minter: Option<Minter>,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    let (config, minter, events) = (&config, minter.as_ref(), &events);
    keep_connected(upstream.name(), backoff, &shutdown, |healthy| async move {
        let result = session(upstream, config, minter, events, healthy).await;
        // The core gone (it dropped its end) is the one clean end of a link.
        if events.send(upstream.lost()).await.is_err() {
            return Ok(());
        }
        result.and(Err(ConnectionError::Closed))
    })
    .await
}

async fn session(
    upstream: Upstream,
    config: &JdClientRunConfig,
    minter: Option<&Minter>,
    events: &mpsc::Sender<Event>,
    healthy: Healthy,
) -> Result<(), ConnectionError> {
    let (address, key) = match upstream {
        Upstream::TemplateProvider => (
            &config.template_provider.address,
            config.template_provider.authority_public_key,
        ),
        Upstream::JdServer => (
            &config.jd_server.address,
            config.jd_server.authority_public_key,
        ),
        Upstream::Pool => (&config.pool.address, Some(config.pool.authority_public_key)),
    };
    let dial = Dial::new(address, key, upstream.protocol(), "jd-client");
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    let (tx, mut rx) = mpsc::channel::<AnyMessageOwned>(OUT_QUEUE);
    let connected = match upstream {
        Upstream::TemplateProvider => Event::TpUp(tx),
        Upstream::JdServer => Event::JdsUp(tx),
        Upstream::Pool => {
            let channel = open_pool_channel(config, minter, &mut conn).await?;
            Event::PoolUp { tx, channel }
        }
    };
    info!(upstream = upstream.name(), %address, "connected");
    healthy.mark();
    events
        .send(connected)
        .await
        .map_err(|_| ConnectionError::Closed)?;
    loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                let mut frame = frame?;
                if let Some(ext) = extension_frame(&mut frame) {
                    on_extension(minter, &ext);
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
                events.send(event).await.map_err(|_| ConnectionError::Closed)?;
            }
            out = rx.recv() => {
                let Some(message) = out else { return Ok(()) };
                conn.send(message).await?;
            }
        }
    }
}

/// Mint-quote extension, then one extended channel locked to the wallet's key.
async fn open_pool_channel(
    config: &JdClientRunConfig,
    minter: Option<&Minter>,
    conn: &mut Connection,
) -> Result<mining_sv2::OpenExtendedMiningChannelSuccessOwned, ConnectionError> {
    // Without the mint-quote extension the pool's channel earns no ehash.
    let with_tlv =
        config.locking_key.is_some() && conn.try_extension(ext_mint_quote::EXTENSION_TYPE).await?;
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
            conn.send_frame(frame).await?
        }
        None => conn.send(open).await?,
    }
    // Quote announcements may come before the answer; anything else before it is refused.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut frame = tokio::time::timeout_at(deadline, conn.recv_frame())
            .await
            .map_err(|_| ConnectionError::Timeout("waiting for the pool channel"))??;
        if let Some(ext) = extension_frame(&mut frame) {
            on_extension(minter, &ext);
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
                return Err(ConnectionError::Refused(format!(
                    "channel refused: {}",
                    text(&e.error_code)
                )))
            }
            other => debug!("before the channel: ignoring {other}"),
        }
    }
}

/// Quote announcements go to the wallet; anything else from an extension is only logged.
fn on_extension(minter: Option<&Minter>, ext: &hashpool_sv2_io::ExtensionFrame) {
    let announced =
        hashpool_wallet::announced_quote(ext.extension_type, ext.message_type, &ext.payload);
    if let (Some((quote, _)), Some(minter)) = (announced, minter) {
        minter.announce(quote);
    }
}
