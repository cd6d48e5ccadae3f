//! The mint's end of the mint link: it dials the pool over Noise (the pool's key pinned), sets
//! up, negotiates the mint-quote extension, answers the pool's challenge with its key, then
//! turns each quote request into a quote. It reconnects with back-off for as long as it runs.

use std::sync::{atomic::Ordering, Arc};

use common_messages_sv2::Protocol;
use ext_mint_quote::{
    sign_challenge, MintQuoteErrorOwned, MintQuoteMessage, MintQuoteRequestOwned,
    MintQuoteResponseOwned, EXTENSION_TYPE,
};
use hashpool_sv2_io::{
    decode_extension, extension_frame, keep_connected, str0255, Backoff, Connection,
    ConnectionError, Dial, Healthy, Negotiated,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{config::MintRunConfig, issuer::Issuer};

/// Keeps a link to the pool until `shutdown`.
pub async fn run(config: MintRunConfig, issuer: Arc<Issuer>, shutdown: CancellationToken) {
    let backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    let peer = format!("pool {}", config.pool_address);
    keep_connected(&peer, backoff, &shutdown, |healthy| async {
        let result = session(&config, &issuer, healthy, &shutdown).await;
        issuer.stats().pool_link_up.store(0, Ordering::Relaxed);
        result
    })
    .await
}

/// Dial, negotiate the extension, answer the pool's challenge with the mint's key.
async fn connect(config: &MintRunConfig) -> Result<Connection, ConnectionError> {
    let dial = Dial::new(
        &config.pool_address,
        Some(config.pool_authority_public_key),
        Protocol::MiningProtocol,
        "mint",
    )
    .capacity(4096);
    let (mut conn, _) = hashpool_sv2_io::dial(&dial).await?;
    let set_up = async {
        match conn.request_extensions(&[EXTENSION_TYPE]).await? {
            Negotiated::Agreed(e) if e.contains(&EXTENSION_TYPE) => {}
            other => {
                return Err(ConnectionError::Refused(format!(
                    "the pool does not offer the mint-quote extension: {other:?}"
                )))
            }
        }
        let challenge = match conn.recv_extension::<MintQuoteMessage>().await? {
            MintQuoteMessage::Challenge(c) => c,
            _ => {
                return Err(ConnectionError::Refused(
                    "expected the pool's challenge".into(),
                ))
            }
        };
        let auth = sign_challenge(&challenge, &config.secret_key.into_bytes())
            .map_err(|e| ConnectionError::Refused(format!("mint key: {e}")))?;
        conn.send_extension(&MintQuoteMessage::Auth(auth)).await
    };
    tokio::time::timeout(dial.setup_timeout, set_up)
        .await
        .map_err(|_| ConnectionError::Timeout("authenticating to the pool"))??;
    Ok(conn)
}

async fn session(
    config: &MintRunConfig,
    issuer: &Arc<Issuer>,
    healthy: Healthy,
    shutdown: &CancellationToken,
) -> Result<(), ConnectionError> {
    let mut conn = connect(config).await?;
    info!(pool = %config.pool_address, "mint link up");
    issuer.stats().pool_link_up.store(1, Ordering::Relaxed);

    let (answers_tx, mut answers) = mpsc::channel::<MintQuoteMessage>(4096);
    let limit = Arc::new(Semaphore::new(config.max_concurrent_quotes));
    loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                let mut frame = frame?;
                let request = match extension_frame(&mut frame).as_ref().and_then(decode_extension) {
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
                        warn!("ignored a message of another protocol from the pool");
                        continue;
                    }
                };
                // A link that carries requests is healthy: start over at the shortest delay.
                healthy.mark();
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
                conn.send_extension(&answer).await?;
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
