//! The pool's end of the mint link: the mint connects over Noise, negotiates the mint-quote
//! extension and proves it holds the configured mint key by signing a fresh challenge. Only
//! then does it receive quote requests; its answers are recorded in the ledger and announced
//! to the miners whose key the quote is locked to.

use std::{sync::Arc, time::Duration};

use common_messages_sv2::Protocol;
use ext_mint_quote::{
    error_code, new_challenge, verify_challenge, MintQuoteMessage, EXTENSION_TYPE,
};
use hashpool_sv2_io::{
    decode_extension, extension_frame, text, Connection, ConnectionError, ServerIdentity,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, Mutex, Notify},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{
    config::PoolRunConfig,
    counters::PoolStats,
    events::EventSink,
    ledger::AccrualLedger,
    miners::{Quote, Registry},
};

/// Time a mint has to set up and authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the mint link needs: the keys that prove each side, the ledger the mint's answers
/// are recorded in, and where issued quotes are announced and reported.
pub struct MintLinkHandles {
    pub config: Arc<PoolRunConfig>,
    pub ledger: AccrualLedger,
    pub stats: Arc<PoolStats>,
    pub miners: Arc<Registry>,
    pub events: EventSink,
}

/// The authenticated mint connection, if any. A newer authenticated link replaces an older one.
#[derive(Default)]
pub struct MintLink {
    active: Mutex<Option<mpsc::Sender<MintQuoteMessage>>>,
    /// Whether `active` holds a link, for readers that cannot wait (the metrics scrape).
    connected: std::sync::atomic::AtomicBool,
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

    /// [`Self::is_up`] without waiting, as of the last attach or detach.
    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes `tx` the link requests go to (replacing an older one) and wakes the batcher.
    pub(super) async fn attach(&self, tx: mpsc::Sender<MintQuoteMessage>) {
        *self.active.lock().await = Some(tx);
        self.connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.up.notify_one();
    }

    /// Forgets `tx` if it is still the active link (a newer link stays).
    async fn detach(&self, tx: &mpsc::Sender<MintQuoteMessage>) {
        let mut active = self.active.lock().await;
        if active.as_ref().is_some_and(|a| a.same_channel(tx)) {
            *active = None;
            self.connected
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Accepts mint connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<MintLinkHandles>,
    link: Arc<MintLink>,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (ctx, link, shutdown) = (ctx.clone(), link.clone(), stop.clone());
        async move {
            let result = session(stream, peer, &ctx, &link, shutdown).await;
            hashpool_sv2_io::log_session_end(peer, "mint", &result);
        }
    })
    .await
}

/// Setup, the extension (required), then the challenge: returns once the mint has proven
/// it holds the configured mint key.
async fn authenticate(ctx: &MintLinkHandles, conn: &mut Connection) -> Result<(), ConnectionError> {
    conn.expect_setup(Protocol::MiningProtocol).await?;
    conn.expect_extensions(&[EXTENSION_TYPE], &[EXTENSION_TYPE])
        .await?;
    let challenge = new_challenge();
    conn.send_extension(&MintQuoteMessage::Challenge(challenge.clone()))
        .await?;
    let auth = match conn.recv_extension::<MintQuoteMessage>().await? {
        MintQuoteMessage::Auth(a) => a,
        _ => {
            return Err(ConnectionError::Refused(
                "expected the mint's authentication".into(),
            ))
        }
    };
    verify_challenge(&challenge, &auth, &ctx.config.mint_public_key.into_bytes())
        .map_err(|e| ConnectionError::Refused(e.to_string()))
}

async fn session(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    ctx: &Arc<MintLinkHandles>,
    link: &MintLink,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let identity = ServerIdentity {
        public_key: ctx.config.authority_public_key,
        secret_key: ctx.config.pool.authority_secret_key,
        cert_validity_secs: ctx.config.pool.cert_validity_secs,
    };
    let mut conn = hashpool_sv2_io::accept(stream, peer, &identity, 1024, AUTH_TIMEOUT).await?;
    tokio::time::timeout(AUTH_TIMEOUT, authenticate(ctx, &mut conn))
        .await
        .map_err(|_| ConnectionError::Timeout("waiting for the mint to authenticate"))??;

    let (tx, mut outbound) = mpsc::channel(16 * 1024);
    link.attach(tx.clone()).await;
    info!("mint link authenticated");

    let result = loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                let mut frame = match frame {
                    Ok(f) => f,
                    Err(e) => break Err(e),
                };
                match extension_frame(&mut frame).as_ref().and_then(decode_extension) {
                    Some(Ok(m)) => {
                        if let Err(e) = on_answer(ctx, m).await {
                            break Err(e);
                        }
                    }
                    Some(Err(e)) => break Err(ConnectionError::Protocol(format!("undecodable message: {e}"))),
                    None => break Err(ConnectionError::Protocol("only mint-quote messages are expected".into())),
                }
            }
            m = outbound.recv() => {
                let Some(m) = m else { break Ok(()) };
                if let Err(e) = conn.send_extension(&m).await {
                    break Err(e);
                }
            }
            _ = shutdown.cancelled() => break Ok(()),
        }
    };
    link.detach(&tx).await;
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Records one answer of the mint: a quote (recorded, announced to the key's miners), a
/// temporary failure (nothing changes: the request is sent again) or a refusal for good (the
/// batch's work back to pending). Any other message from a mint is a protocol error.
pub(super) async fn on_answer(
    ctx: &Arc<MintLinkHandles>,
    message: MintQuoteMessage,
) -> Result<(), ConnectionError> {
    let ledger = &ctx.ledger;
    match message {
        MintQuoteMessage::Response(r) => {
            let request_id = r.request_id.to_array();
            let quote_id = text(&r.quote_id);
            match ledger.record_quote(&request_id, &quote_id).await {
                Ok(Some(batch)) => {
                    if batch.amount != r.amount {
                        warn!(quote = %quote_id, asked = batch.amount, got = r.amount, "mint quoted a different amount");
                    }
                    ctx.miners.announce(
                        &batch.locking_key,
                        Quote {
                            id: &quote_id,
                            amount: batch.amount,
                        },
                    );
                    // What the mint issued (it said so in its answer).
                    ctx.events
                        .quote_issued(&quote_id, r.amount, batch.locking_key.to_hex());
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
        other => Err(ConnectionError::Protocol(format!(
            "a mint does not send message {:#04x}",
            other.message_type()
        ))),
    }
}
