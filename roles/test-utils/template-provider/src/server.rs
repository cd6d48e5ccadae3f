//! Template Distribution server: one session per pool (or jd-client) connection.

use std::sync::Arc;

use binary_sv2::{B016MOwned, B064KOwned, Seq064KOwned};
use common_messages_sv2::Protocol;
use hashpool_sv2_io::{
    decode_frame, str0255, Connection, ConnectionError, ServerIdentity, Sv2Message,
};
use parsers_sv2::{AnyMessageOwned, TemplateDistributionOwned};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use template_distribution_sv2::{
    RequestTransactionDataErrorOwned, RequestTransactionDataSuccessOwned,
    ERROR_CODE_REQUEST_TRANSACTION_DATA_STALE_TEMPLATE_ID,
    ERROR_CODE_REQUEST_TRANSACTION_DATA_TEMPLATE_ID_NOT_FOUND,
};
use tokio::{net::TcpListener, sync::broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    state::{ChainEvent, Shared, SolutionError},
    template::{self, Template},
};

/// Noise identity of the provider.
#[derive(Clone, Copy)]
pub struct Identity {
    pub public: Secp256k1PublicKey,
    pub secret: Secp256k1SecretKey,
    pub cert_validity_secs: u64,
}

/// Accepts connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    id: Identity,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    hashpool_sv2_io::accept_until(listener, shutdown, move |stream, peer| {
        let (shared, shutdown) = (shared.clone(), stop.clone());
        async move {
            shared.lock().counters.connections += 1;
            let result = session(stream, peer, &shared, id, shutdown).await;
            hashpool_sv2_io::log_session_end(peer, "template client", &result);
        }
    })
    .await
}

async fn session(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shared: &Shared,
    id: Identity,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let identity = ServerIdentity {
        public_key: id.public,
        secret_key: id.secret,
        cert_validity_secs: id.cert_validity_secs,
    };
    let mut conn = hashpool_sv2_io::accept(
        stream,
        peer,
        &identity,
        32,
        std::time::Duration::from_secs(10),
    )
    .await?;
    conn.expect_setup(Protocol::TemplateDistributionProtocol)
        .await?;
    let mut events = shared.subscribe();
    let mut reserved_size: Option<u32> = None;

    loop {
        tokio::select! {
            frame = conn.recv_frame() => {
                let (_, message, _) = decode_frame(&mut frame?, &[])?;
                match message {
                    AnyMessageOwned::TemplateDistribution(m) => {
                        handle_template_message(m, shared, &mut conn, &mut reserved_size).await?;
                    }
                    other => {
                        return Err(ConnectionError::Protocol(format!("unexpected message {other}")));
                    }
                }
            }
            event = events.recv() => {
                let Some(reserved) = reserved_size else { continue };
                match event {
                    Ok(ChainEvent::NewTip { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        send_new_tip(shared, &mut conn, reserved).await?;
                    }
                    Ok(ChainEvent::MempoolChanged) => {
                        let t = shared.new_template(reserved, false);
                        send_template(&mut conn, &t).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn handle_template_message(
    message: TemplateDistributionOwned,
    shared: &Shared,
    conn: &mut Connection,
    reserved_size: &mut Option<u32>,
) -> Result<(), ConnectionError> {
    match message {
        TemplateDistributionOwned::CoinbaseOutputConstraints(c) => {
            debug!(
                size = c.coinbase_output_max_additional_size,
                "coinbase output constraints"
            );
            *reserved_size = Some(c.coinbase_output_max_additional_size);
            send_new_tip(shared, conn, c.coinbase_output_max_additional_size).await?;
        }
        TemplateDistributionOwned::RequestTransactionData(r) => {
            let reply = match shared.template(r.template_id) {
                Some((t, true)) => TemplateDistributionOwned::RequestTransactionDataSuccess(
                    RequestTransactionDataSuccessOwned {
                        template_id: r.template_id,
                        excess_data: B064KOwned::new(Vec::new()).expect("empty"),
                        transaction_list: transaction_list(&t),
                    },
                ),
                found => TemplateDistributionOwned::RequestTransactionDataError(
                    RequestTransactionDataErrorOwned {
                        template_id: r.template_id,
                        error_code: str0255(if found.is_some() {
                            ERROR_CODE_REQUEST_TRANSACTION_DATA_STALE_TEMPLATE_ID
                        } else {
                            ERROR_CODE_REQUEST_TRANSACTION_DATA_TEMPLATE_ID_NOT_FOUND
                        }),
                    },
                ),
            };
            send(conn, reply).await?;
        }
        TemplateDistributionOwned::SubmitSolution(s) => match shared.submit_solution(&s) {
            Ok((height, hash)) => info!(height, %hash, "block connected"),
            // Several shares of one template can meet the network target; the later ones
            // arrive after the tip moved on. That is normal, not a fault.
            Err(e @ SolutionError::StaleTemplate(_)) => info!(template_id = s.template_id, "{e}"),
            Err(e) => warn!(template_id = s.template_id, "solution refused: {e}"),
        },
        other => {
            return Err(ConnectionError::Protocol(format!(
                "a template client does not send {other}"
            )))
        }
    }
    Ok(())
}

fn transaction_list(t: &Template) -> Seq064KOwned<B016MOwned> {
    let txs: Vec<B016MOwned> = t
        .transactions
        .iter()
        .map(|tx| B016MOwned::new(bitcoin::consensus::serialize(tx)).expect("a tx fits 16 MiB"))
        .collect();
    Seq064KOwned::new(txs).expect("a block holds fewer than 65536 transactions")
}

async fn send_new_tip(
    shared: &Shared,
    conn: &mut Connection,
    reserved: u32,
) -> Result<(), ConnectionError> {
    let t = shared.new_template(reserved, true);
    let prev_hash = {
        let st = shared.lock();
        template::prev_hash_message(&st.chain, t.id)
    };
    send_template(conn, &t).await?;
    send(conn, TemplateDistributionOwned::SetNewPrevHash(prev_hash)).await
}

async fn send_template(conn: &mut Connection, t: &Arc<Template>) -> Result<(), ConnectionError> {
    send(
        conn,
        TemplateDistributionOwned::NewTemplate(t.message.clone()),
    )
    .await
}

async fn send(conn: &mut Connection, message: impl Sv2Message) -> Result<(), ConnectionError> {
    conn.send(message).await
}
