//! The pool's end of the mint link: the mint connects over Noise, negotiates the mint-quote
//! extension and proves it holds the configured mint key by signing a fresh challenge. Only
//! then does it receive quote requests; its answers are recorded in the ledger and announced
//! to the miners whose key the quote is locked to.

use std::{sync::Arc, time::Duration};

use binary_sv2::{Seq064KOwned, U256Owned};
use common_messages_sv2::SetupConnectionSuccess;
use ext_mint_quote::{
    error_code, mint_link_auth_digest, MintLinkChallengeOwned, MintQuoteMessage, EXTENSION_TYPE,
};
use extensions_sv2::{RequestExtensionsErrorOwned, RequestExtensionsSuccessOwned};
use hashpool_sv2_io::{
    decode_frame, encode_raw, extension_frame, spawn_reader, text, IncomingFrames,
};
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned,
};
use stratum_apps::network_helpers::{accept_noise_connection, noise_stream::NoiseTcpWriteHalf};
use tokio::{
    net::TcpListener,
    sync::{mpsc, Mutex, Notify},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{context::PoolContext, quote_batcher};

/// Time a mint has to set up and authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MintLinkError {
    #[error("noise handshake failed: {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("connection closed")]
    Closed,
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("send: {0}")]
    Send(#[from] hashpool_sv2_io::SendError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out waiting for the mint to authenticate")]
    Timeout,
}

/// The authenticated mint connection, if any. A newer authenticated link replaces an older one.
#[derive(Default)]
pub struct MintLink {
    active: Mutex<Option<mpsc::Sender<MintQuoteMessage>>>,
    /// Wakes the batcher when a mint authenticates (it resends what is open).
    pub up: Notify,
}

impl MintLink {
    /// Queues `message` to the mint; false when no mint is connected.
    pub async fn send(&self, message: MintQuoteMessage) -> bool {
        match self.active.lock().await.as_ref() {
            Some(tx) => tx.try_send(message).is_ok(),
            None => false,
        }
    }

    pub async fn is_up(&self) -> bool {
        self.active.lock().await.is_some()
    }
}

/// Accepts mint connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<PoolContext>,
    link: Arc<MintLink>,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (ctx, link, shutdown) = (ctx.clone(), link.clone(), stop.clone());
        async move {
            match session(stream, &ctx, &link, shutdown).await {
                Ok(()) | Err(MintLinkError::Closed) => info!(%peer, "mint link closed"),
                // Port probes (health checks) connect and close at once.
                Err(MintLinkError::Noise(stratum_apps::network_helpers::Error::SocketClosed)) => {
                    debug!(%peer, "connection closed before the Noise handshake")
                }
                Err(e) => warn!(%peer, "mint link dropped: {e}"),
            }
        }
    })
    .await
}

async fn next(frames: &mut IncomingFrames) -> Result<codec_sv2::SerializedFrame, MintLinkError> {
    match frames.recv().await {
        Some(Ok(f)) => Ok(f),
        _ => Err(MintLinkError::Closed),
    }
}

async fn send_ext(
    writer: &mut NoiseTcpWriteHalf,
    m: &MintQuoteMessage,
) -> Result<(), MintLinkError> {
    let frame = encode_raw(
        EXTENSION_TYPE,
        m.is_channel_message(),
        m.message_type(),
        &m.encode(),
    )?;
    Ok(hashpool_sv2_io::send_frame(writer, frame).await?)
}

/// SetupConnection, negotiation, challenge and signature; returns when the mint is proven.
async fn authenticate(
    ctx: &PoolContext,
    frames: &mut IncomingFrames,
    writer: &mut NoiseTcpWriteHalf,
) -> Result<(), MintLinkError> {
    let mut frame = next(frames).await?;
    match decode_frame(&mut frame, &[])?.1 {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(_)) => {}
        other => {
            return Err(MintLinkError::Refused(format!(
                "expected SetupConnection, got {other}"
            )))
        }
    }
    hashpool_sv2_io::send(
        writer,
        CommonMessagesOwned::SetupConnectionSuccess(SetupConnectionSuccess {
            used_version: 2,
            flags: 0,
        }),
    )
    .await?;
    let mut frame = next(frames).await?;
    let request = match decode_frame(&mut frame, &[])?.1 {
        AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
            ExtensionsNegotiationOwned::RequestExtensions(r),
        )) => r,
        other => {
            return Err(MintLinkError::Refused(format!(
                "expected RequestExtensions, got {other}"
            )))
        }
    };
    let requested = request.requested_extensions.into_inner();
    let seq = |v: Vec<u16>| Seq064KOwned::new(v).expect("few extensions");
    if !requested.contains(&EXTENSION_TYPE) {
        let refusal =
            ExtensionsNegotiationOwned::RequestExtensionsError(RequestExtensionsErrorOwned {
                request_id: request.request_id,
                unsupported_extensions: seq(requested),
                required_extensions: seq(vec![EXTENSION_TYPE]),
            });
        hashpool_sv2_io::send(writer, ExtensionsOwned::ExtensionsNegotiation(refusal)).await?;
        return Err(MintLinkError::Refused(
            "the mint-quote extension was not requested".into(),
        ));
    }
    let success =
        ExtensionsNegotiationOwned::RequestExtensionsSuccess(RequestExtensionsSuccessOwned {
            request_id: request.request_id,
            supported_extensions: seq(vec![EXTENSION_TYPE]),
        });
    hashpool_sv2_io::send(writer, ExtensionsOwned::ExtensionsNegotiation(success)).await?;

    let nonce: [u8; 32] = rand::random();
    send_ext(
        writer,
        &MintQuoteMessage::Challenge(MintLinkChallengeOwned {
            nonce: U256Owned::from(nonce),
        }),
    )
    .await?;
    let mut frame = next(frames).await?;
    let auth = match extension_frame(&mut frame)
        .filter(|e| e.extension_type == EXTENSION_TYPE)
        .map(|e| MintQuoteMessage::decode(e.message_type, &e.payload))
    {
        Some(Ok(MintQuoteMessage::Auth(a))) => a,
        Some(Err(e)) => return Err(MintLinkError::Refused(format!("bad authentication: {e}"))),
        _ => {
            return Err(MintLinkError::Refused(
                "expected the mint's authentication".into(),
            ))
        }
    };
    let expected = ctx.config.mint_public_key.into_bytes();
    if auth.mint_public_key.to_array() != expected {
        return Err(MintLinkError::Refused(
            "the mint key is not the one this pool is configured with".into(),
        ));
    }
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let key = bitcoin::secp256k1::XOnlyPublicKey::from_slice(&expected)
        .map_err(|_| MintLinkError::Refused("configured mint key is not a valid key".into()))?;
    let signature = bitcoin::secp256k1::schnorr::Signature::from_slice(auth.signature.as_ref())
        .map_err(|_| MintLinkError::Refused("malformed signature".into()))?;
    let message = bitcoin::secp256k1::Message::from_digest(mint_link_auth_digest(&nonce));
    secp.verify_schnorr(&signature, &message, &key)
        .map_err(|_| MintLinkError::Refused("the challenge signature does not verify".into()))
}

async fn session(
    stream: tokio::net::TcpStream,
    ctx: &Arc<PoolContext>,
    link: &MintLink,
    shutdown: CancellationToken,
) -> Result<(), MintLinkError> {
    let noise = accept_noise_connection(
        stream,
        ctx.config.authority_public_key,
        ctx.config.pool.authority_secret_key,
        ctx.config.pool.cert_validity_secs,
    )
    .await
    .map_err(MintLinkError::Noise)?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 1024);
    tokio::time::timeout(AUTH_TIMEOUT, authenticate(ctx, &mut frames, &mut writer))
        .await
        .map_err(|_| MintLinkError::Timeout)??;

    let (tx, mut outbound) = mpsc::channel(16 * 1024);
    *link.active.lock().await = Some(tx.clone());
    link.up.notify_one();
    info!("mint link authenticated");

    let result = loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => break Err(MintLinkError::Closed),
                };
                let Some(ext) = extension_frame(&mut frame).filter(|e| e.extension_type == EXTENSION_TYPE) else {
                    break Err(MintLinkError::Refused("only mint-quote messages are expected".into()));
                };
                match MintQuoteMessage::decode(ext.message_type, &ext.payload) {
                    Ok(m) => {
                        if let Err(e) = on_answer(ctx, m).await {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(MintLinkError::Refused(format!("undecodable message: {e}"))),
                }
            }
            m = outbound.recv() => {
                let Some(m) = m else { break Ok(()) };
                if let Err(e) = send_ext(&mut writer, &m).await {
                    break Err(e);
                }
            }
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    let mut active = link.active.lock().await;
    if active.as_ref().is_some_and(|a| a.same_channel(&tx)) {
        *active = None;
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn on_answer(ctx: &Arc<PoolContext>, message: MintQuoteMessage) -> Result<(), MintLinkError> {
    let ledger = ctx.shares.ledger();
    match message {
        MintQuoteMessage::Response(r) => {
            let request_id = r.request_id.to_array();
            let quote_id = text(&r.quote_id);
            match ledger.record_quote(&request_id, &quote_id).await {
                Ok(Some(batch)) => {
                    if batch.amount != r.amount {
                        warn!(quote = %quote_id, asked = batch.amount, got = r.amount, "mint quoted a different amount");
                    }
                    quote_batcher::announce(ctx, &batch, &quote_id);
                    // What the mint issued (it said so in its answer).
                    crate::stats_report::quote_issued(
                        ctx,
                        &quote_id,
                        r.amount,
                        batch.locking_key.to_hex(),
                    );
                }
                Ok(None) => {} // an answer to a resent request: already recorded
                Err(e) => error!(quote = %quote_id, "cannot record a quote: {e}"),
            }
            Ok(())
        }
        MintQuoteMessage::Error(e) => {
            let code = text(&e.error_code);
            let request_id = e.request_id.to_array();
            if code == error_code::TEMPORARY_FAILURE {
                warn!(%code, message = %text(&e.message), "mint could not create a quote yet; it will be asked again");
            } else {
                let request = hex(&request_id);
                match ledger.record_refusal(&request_id, &code).await {
                    Ok(Some(batch)) => {
                        error!(
                            request_id = %request,
                            key = %batch.locking_key,
                            amount = batch.amount,
                            %code,
                            message = %text(&e.message),
                            "mint refused a quote request for good; its work is back in pending and will be requested again in a new batch"
                        );
                        ctx.stats.record_batch_refused(&code);
                    }
                    // Resent requests are refused again; their first refusal returned the work.
                    Ok(None) => debug!(
                        request_id = %request,
                        %code,
                        "refusal of a request already refused, answered or unknown: nothing changes"
                    ),
                    Err(err) => {
                        error!(request_id = %request, %code, "cannot record a refusal: {err}")
                    }
                }
            }
            Ok(())
        }
        other => Err(MintLinkError::Refused(format!(
            "a mint does not send message {:#04x}",
            other.message_type()
        ))),
    }
}
