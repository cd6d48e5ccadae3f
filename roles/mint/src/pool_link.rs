//! The mint's end of the mint link: it dials the pool over Noise (the pool's key pinned), sets
//! up, negotiates the mint-quote extension, answers the pool's challenge with its key, then
//! turns each quote request into a quote. It reconnects with back-off for as long as it runs.

use std::{sync::Arc, time::Duration};

use binary_sv2::{SignatureOwned, U256Owned};
use common_messages_sv2::{Protocol, SetupConnectionOwned};
use ext_mint_quote::{
    mint_link_auth_digest, MintLinkAuthOwned, MintQuoteErrorOwned, MintQuoteMessage,
    MintQuoteRequestOwned, MintQuoteResponseOwned, EXTENSION_TYPE,
};
use extensions_sv2::RequestExtensionsOwned;
use hashpool_sv2_io::{
    decode_frame, encode_raw, extension_frame, spawn_reader, str0255, Backoff, IncomingFrames,
};
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned,
};
use stratum_apps::network_helpers::{connect_with_noise, noise_stream::NoiseTcpWriteHalf};
use tokio::{
    net::TcpStream,
    sync::{mpsc, Semaphore},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{config::MintRunConfig, issuer::Issuer};

const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("noise handshake (is the pool's key right?): {0:?}")]
    Noise(stratum_apps::network_helpers::Error),
    #[error("the pool closed the link")]
    Closed,
    #[error("frame: {0}")]
    Frame(#[from] hashpool_sv2_io::FrameError),
    #[error("send: {0}")]
    Send(#[from] hashpool_sv2_io::SendError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("timed out setting up the link")]
    Timeout,
}

/// Keeps a link to the pool until `shutdown`.
pub async fn run(config: MintRunConfig, issuer: Arc<Issuer>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    loop {
        let session = session(&config, &issuer, &mut backoff, shutdown.clone());
        let result = tokio::select! {
            result = session => result,
            _ = shutdown.cancelled() => return,
        };
        issuer
            .stats()
            .pool_link_up
            .store(0, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(()) => return,
            Err(e) => warn!(pool = %config.pool_address, "mint link down: {e}"),
        }
        let delay = backoff.next_delay();
        debug!(?delay, "reconnecting to the pool");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn next(frames: &mut IncomingFrames) -> Result<codec_sv2::SerializedFrame, LinkError> {
    match frames.recv().await {
        Some(Ok(f)) => Ok(f),
        _ => Err(LinkError::Closed),
    }
}

async fn send_ext(writer: &mut NoiseTcpWriteHalf, m: &MintQuoteMessage) -> Result<(), LinkError> {
    let frame = encode_raw(
        EXTENSION_TYPE,
        m.is_channel_message(),
        m.message_type(),
        &m.encode(),
    )?;
    Ok(hashpool_sv2_io::send_frame(writer, frame).await?)
}

async fn setup(
    config: &MintRunConfig,
    frames: &mut IncomingFrames,
    writer: &mut NoiseTcpWriteHalf,
) -> Result<(), LinkError> {
    hashpool_sv2_io::send(
        writer,
        CommonMessagesOwned::SetupConnection(SetupConnectionOwned {
            protocol: Protocol::MiningProtocol,
            min_version: 2,
            max_version: 2,
            flags: 0,
            endpoint_host: str0255(&config.pool_address.ip().to_string()),
            endpoint_port: config.pool_address.port(),
            vendor: str0255("hashpool"),
            hardware_version: str0255("mint"),
            firmware: str0255(env!("CARGO_PKG_VERSION")),
            device_id: str0255("mint"),
        }),
    )
    .await?;
    match decode_frame(&mut next(frames).await?, &[])?.1 {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnectionSuccess(_)) => {}
        other => return Err(LinkError::Refused(format!("setup: {other}"))),
    }
    hashpool_sv2_io::send(
        writer,
        ExtensionsOwned::ExtensionsNegotiation(ExtensionsNegotiationOwned::RequestExtensions(
            RequestExtensionsOwned {
                request_id: 1,
                requested_extensions: vec![EXTENSION_TYPE].try_into().expect("one extension fits"),
            },
        )),
    )
    .await?;
    match decode_frame(&mut next(frames).await?, &[])?.1 {
        AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
            ExtensionsNegotiationOwned::RequestExtensionsSuccess(_),
        )) => {}
        other => return Err(LinkError::Refused(format!("extension: {other}"))),
    }
    let mut frame = next(frames).await?;
    let challenge = match extension_frame(&mut frame)
        .filter(|e| e.extension_type == EXTENSION_TYPE)
        .map(|e| MintQuoteMessage::decode(e.message_type, &e.payload))
    {
        Some(Ok(MintQuoteMessage::Challenge(c))) => c,
        _ => return Err(LinkError::Refused("expected the pool's challenge".into())),
    };
    let secp = bitcoin::secp256k1::Secp256k1::signing_only();
    let keypair =
        bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, &config.secret_key.into_bytes())
            .map_err(|e| LinkError::Refused(format!("mint key: {e}")))?;
    let digest = mint_link_auth_digest(&challenge.nonce.to_array());
    let signature = secp.sign_schnorr(&bitcoin::secp256k1::Message::from_digest(digest), &keypair);
    send_ext(
        writer,
        &MintQuoteMessage::Auth(MintLinkAuthOwned {
            mint_public_key: U256Owned::from(keypair.x_only_public_key().0.serialize()),
            signature: SignatureOwned::from(*signature.as_ref()),
        }),
    )
    .await
}

async fn session(
    config: &MintRunConfig,
    issuer: &Arc<Issuer>,
    backoff: &mut Backoff,
    shutdown: CancellationToken,
) -> Result<(), LinkError> {
    let stream = TcpStream::connect(config.pool_address)
        .await
        .map_err(LinkError::Connect)?;
    let noise = connect_with_noise(stream, Some(config.pool_authority_public_key))
        .await
        .map_err(LinkError::Noise)?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 4096);
    tokio::time::timeout(SETUP_TIMEOUT, setup(config, &mut frames, &mut writer))
        .await
        .map_err(|_| LinkError::Timeout)??;
    info!(pool = %config.pool_address, "mint link up");
    issuer
        .stats()
        .pool_link_up
        .store(1, std::sync::atomic::Ordering::Relaxed);

    let (answers_tx, mut answers) = mpsc::channel::<MintQuoteMessage>(4096);
    let limit = Arc::new(Semaphore::new(config.max_concurrent_quotes));
    let mut first_request = true;
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => return Err(LinkError::Closed),
                };
                let request = match extension_frame(&mut frame)
                    .filter(|e| e.extension_type == EXTENSION_TYPE)
                    .map(|e| MintQuoteMessage::decode(e.message_type, &e.payload))
                {
                    Some(Ok(MintQuoteMessage::Request(r))) => r,
                    Some(Ok(other)) => {
                        warn!(message_type = other.message_type(), "ignored: the pool sends only quote requests");
                        continue;
                    }
                    Some(Err(e)) => {
                        warn!("undecodable message from the pool: {e}");
                        continue;
                    }
                    None => {
                        warn!("ignored a non-extension message from the pool");
                        continue;
                    }
                };
                if first_request {
                    // A link that carries requests is healthy: start over at the shortest delay.
                    backoff.reset();
                    first_request = false;
                }
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return Ok(());
                };
                let (issuer, answers_tx) = (issuer.clone(), answers_tx.clone());
                tokio::spawn(async move {
                    let answer = answer(&issuer, request).await;
                    drop(permit);
                    let _ = answers_tx.send(answer).await;
                });
            }
            answer = answers.recv() => {
                let Some(answer) = answer else { return Ok(()) };
                send_ext(&mut writer, &answer).await?;
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn answer(issuer: &Issuer, request: MintQuoteRequestOwned) -> MintQuoteMessage {
    match issuer.issue(&request).await {
        Ok(issued) => {
            debug!(quote = %issued.quote_id, amount = issued.amount, "quote issued");
            MintQuoteMessage::Response(MintQuoteResponseOwned {
                request_id: request.request_id,
                quote_id: str0255(&issued.quote_id),
                amount: issued.amount,
            })
        }
        Err(e) => {
            warn!(code = e.code(), "quote request refused: {e}");
            MintQuoteMessage::Error(MintQuoteErrorOwned {
                request_id: request.request_id,
                error_code: str0255(e.code()),
                message: str0255(&e.to_string()),
            })
        }
    }
}
