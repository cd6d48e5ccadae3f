//! Miners' connections (SV2 miners, or a translator for SV1 miners): Noise with the
//! jd-client's key, SetupConnection for the mining protocol, then every mining message goes to
//! the core and what the core answers is written back. Extensions are declined: the ehash of
//! this jd-client's work goes to its own wallet.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use binary_sv2::Seq064KOwned;
use common_messages_sv2::{Protocol, SetupConnectionErrorOwned, SetupConnectionSuccess};
use extensions_sv2::RequestExtensionsErrorOwned;
use hashpool_sv2_io::{decode_frame, spawn_reader, str0255};
use parsers_sv2::{
    AnyMessageOwned, CommonMessagesOwned, ExtensionsNegotiationOwned, ExtensionsOwned,
};
use stratum_apps::network_helpers::accept_noise_connection;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{core::Event, JdClientRunConfig};

/// Largest frame a miner has reason to send.
const MAX_MINER_FRAME_PAYLOAD: usize = 1 << 16;
/// Messages queued for one miner before it counts as not reading (and is dropped).
pub const MINER_QUEUE: usize = 4096;

pub async fn serve(
    listener: TcpListener,
    config: JdClientRunConfig,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    let ids = Arc::new(AtomicU64::new(1));
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (config, events, stop) = (config.clone(), events.clone(), stop.clone());
        let conn = ids.fetch_add(1, Ordering::Relaxed);
        async move {
            match session(stream, conn, &config, &events, stop).await {
                Ok(()) => debug!(%peer, conn, "miner disconnected"),
                Err(e) => info!(%peer, conn, "miner dropped: {e}"),
            }
            let _ = events.send(Event::MinerGone { conn }).await;
        }
    })
    .await
}

async fn session(
    stream: tokio::net::TcpStream,
    conn: u64,
    config: &JdClientRunConfig,
    events: &mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let noise = accept_noise_connection(
        stream,
        config.authority_public_key,
        config.authority_secret_key,
        config.cert_validity_secs,
    )
    .await
    .map_err(|e| format!("noise handshake: {e:?}"))?;
    let (reader, mut writer) = noise.into_split();
    let mut frames = spawn_reader(reader, 256);
    // SetupConnection first.
    let setup = match frames.recv().await {
        Some(Ok(mut f)) => decode_frame(&mut f, &[]).map_err(|e| e.to_string())?.1,
        _ => return Ok(()),
    };
    match setup {
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(s))
            if s.protocol == Protocol::MiningProtocol
                && s.min_version <= 2
                && s.max_version >= 2 =>
        {
            hashpool_sv2_io::send(
                &mut writer,
                CommonMessagesOwned::SetupConnectionSuccess(SetupConnectionSuccess {
                    used_version: 2,
                    flags: 0,
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        AnyMessageOwned::Common(CommonMessagesOwned::SetupConnection(s)) => {
            let code = if s.protocol != Protocol::MiningProtocol {
                "unsupported-protocol"
            } else {
                "protocol-version-mismatch"
            };
            let _ = hashpool_sv2_io::send(
                &mut writer,
                CommonMessagesOwned::SetupConnectionError(SetupConnectionErrorOwned {
                    flags: 0,
                    error_code: str0255(code),
                }),
            )
            .await;
            return Err(format!("setup refused: {code}"));
        }
        other => return Err(format!("expected SetupConnection, got {other}")),
    }
    let (tx, mut rx) = mpsc::channel::<AnyMessageOwned>(MINER_QUEUE);
    events
        .send(Event::MinerUp { conn, tx })
        .await
        .map_err(|_| "shutting down".to_string())?;
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let mut frame = match frame {
                    Some(Ok(f)) => f,
                    _ => return Ok(()),
                };
                if frame.payload().len() > MAX_MINER_FRAME_PAYLOAD {
                    return Err(format!("a frame of {} bytes", frame.payload().len()));
                }
                let message = decode_frame(&mut frame, &[]).map_err(|e| e.to_string())?.1;
                match message {
                    AnyMessageOwned::Mining(m) => {
                        if events.send(Event::Miner { conn, message: m }).await.is_err() {
                            return Ok(());
                        }
                    }
                    AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                        ExtensionsNegotiationOwned::RequestExtensions(r),
                    )) => {
                        let refusal = ExtensionsOwned::ExtensionsNegotiation(
                            ExtensionsNegotiationOwned::RequestExtensionsError(
                                RequestExtensionsErrorOwned {
                                    request_id: r.request_id,
                                    unsupported_extensions: r.requested_extensions.clone(),
                                    required_extensions: Seq064KOwned::new(Vec::new())
                                        .expect("empty"),
                                },
                            ),
                        );
                        hashpool_sv2_io::send(&mut writer, refusal).await.map_err(|e| e.to_string())?;
                    }
                    other => debug!(conn, "ignoring {other}"),
                }
            }
            out = rx.recv() => {
                // The core dropped this miner (it stopped reading, or the core is stopping).
                let Some(message) = out else { return Ok(()) };
                hashpool_sv2_io::send(&mut writer, message).await.map_err(|e| e.to_string())?;
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}
