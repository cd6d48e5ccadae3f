//! Miners' connections (SV2 miners, or a translator for SV1 miners): Noise with the
//! jd-client's key, SetupConnection for the mining protocol, then every mining message goes to
//! the core and what the core answers is written back. Extensions are declined: the ehash of
//! this jd-client's work goes to its own wallet.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use std::time::Duration;

use common_messages_sv2::Protocol;
use hashpool_sv2_io::{answer_extensions, decode_frame, ConnectionError, ServerIdentity};
use parsers_sv2::{AnyMessageOwned, ExtensionsNegotiationOwned, ExtensionsOwned};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{config::JdClientRunConfig, core::Event};

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
            let result = session(stream, peer, conn, &config, &events, stop).await;
            hashpool_sv2_io::log_session_end(peer, "miner", &result);
            let _ = events.send(Event::MinerGone { conn }).await;
        }
    })
    .await
}

async fn session(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    conn: u64,
    config: &JdClientRunConfig,
    events: &mpsc::Sender<Event>,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let identity = ServerIdentity {
        public_key: config.authority_public_key,
        secret_key: config.authority_secret_key,
        cert_validity_secs: config.cert_validity_secs,
    };
    let mut link =
        hashpool_sv2_io::accept(stream, peer, &identity, 256, Duration::from_secs(10)).await?;
    link.expect_setup(Protocol::MiningProtocol).await?;
    let (tx, mut rx) = mpsc::channel::<AnyMessageOwned>(MINER_QUEUE);
    events
        .send(Event::MinerUp { conn, tx })
        .await
        .map_err(|_| ConnectionError::Closed)?;
    loop {
        tokio::select! {
            frame = link.recv_frame() => {
                let mut frame = frame?;
                if frame.payload().len() > MAX_MINER_FRAME_PAYLOAD {
                    return Err(ConnectionError::Protocol(format!("a frame of {} bytes", frame.payload().len())));
                }
                let message = decode_frame(&mut frame, &[])?.1;
                match message {
                    AnyMessageOwned::Mining(m) => {
                        if events.send(Event::Miner { conn, message: m }).await.is_err() {
                            return Ok(());
                        }
                    }
                    AnyMessageOwned::Extensions(ExtensionsOwned::ExtensionsNegotiation(
                        ExtensionsNegotiationOwned::RequestExtensions(r),
                    )) => {
                        // Declined: this jd-client's ehash goes to its own wallet.
                        let (refusal, _) = answer_extensions(r, &[], &[]);
                        link.send(refusal).await?;
                    }
                    other => debug!(conn, "ignoring {other}"),
                }
            }
            out = rx.recv() => {
                // The core dropped this miner (it stopped reading, or the core is stopping).
                let Some(message) = out else { return Ok(()) };
                link.send(message).await?;
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}
