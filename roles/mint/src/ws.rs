//! The mint's NUT-17 websocket (`/v1/ws`), served here in front of cdk-axum's.
//!
//! Why: CDK 0.18.3 sends a new subscriber the current state of bolt11/bolt12/onchain quotes
//! only; custom-method quotes are skipped (`cdk/src/mint/subscription.rs`, `MintQuoteCustom =>
//! continue`). An ehash quote is paid when the pool asks for it, before any wallet subscribes,
//! so a standard wallet (cdk-cli's `mint --quote-id`) that waits on its subscription for the
//! payment never hears of it. This handler subscribes through CDK's own pubsub (every live
//! event reaches the wallet as before) and, for ehash quote subscriptions, first sends each
//! quote's current state. It can go once CDK sends initial state for custom quotes
//! (docs/cashu-wallets.md says what that fix is).
//!
//! Only the kinds `/v1/info` lists under NUT-17 are accepted (ehash mint quotes and proof states;
//! no melt quotes: a redemption, the only melt, is answered over HTTP).
//!
//! A web client controls everything here, so every count is bounded: connections, subscriptions
//! per connection, filters per subscription, message size, and a client that stops reading is
//! dropped after a write time-out instead of holding the connection.

use std::{
    collections::{HashMap, HashSet},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        State,
    },
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use cdk::{
    mint::{Mint, QuoteId},
    nuts::{
        nut17::{Kind, SupportedMethods},
        MintQuoteCustomResponse, NotificationPayload,
    },
    subscription::{Params, SubId},
    ws::{
        notification_to_ws_message, NotificationInner, WsErrorBody, WsMessageOrResponse,
        WsMethodRequest, WsRequest, WsResponseResult,
    },
};
use futures::StreamExt;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use crate::processor::EHASH_METHOD;

/// What one web client may hold.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// Websocket connections open at once; past it the upgrade is answered 503.
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
    /// Quote ids (or proof Ys) one subscription may name.
    pub max_filters_per_subscription: usize,
    /// Largest request a client may send (a subscription with every filter fits).
    pub max_message_bytes: usize,
    /// A client that does not take a message within this is dropped.
    pub write_timeout: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        // As cdk-axum's per-connection limits; a thousand open wallets at once.
        Self {
            max_connections: 1024,
            max_subscriptions_per_connection: 100,
            max_filters_per_subscription: 1000,
            max_message_bytes: 128 * 1024,
            write_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
struct WsState {
    mint: Arc<Mint>,
    limits: WsLimits,
    connections: Arc<Semaphore>,
    /// The subscription kinds served (`bolt11_mint_quote`, `ehash_mint_quote`, ...).
    kinds: Arc<HashSet<String>>,
}

/// The `/v1/ws` route; merged before cdk-axum's router so that it wins. `supported` is the
/// mint info's NUT-17 list: a subscription of any other kind is refused.
pub fn router(mint: Arc<Mint>, limits: WsLimits, supported: &[SupportedMethods]) -> Router {
    let kinds = supported
        .iter()
        .flat_map(|s| &s.commands)
        .filter_map(|c| serde_json::to_value(c).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    Router::new()
        .route("/v1/ws", get(upgrade))
        .with_state(WsState {
            mint,
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            kinds: Arc::new(kinds),
        })
}

/// The wire name of a subscription kind (`Kind` serializes to a string).
fn kind_name(kind: &Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn upgrade(State(state): State<WsState>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = state.limits.max_connections,
            "websocket refused: too many open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many websocket connections",
        )
            .into_response();
    };
    ws.max_message_size(state.limits.max_message_bytes)
        .on_upgrade(move |socket| serve(socket, state, permit))
}

type Outgoing = (Arc<SubId>, NotificationPayload<QuoteId>);

/// One client's subscriptions: a forwarding task each, all feeding one queue.
struct Connection {
    state: WsState,
    subscriptions: HashMap<Arc<SubId>, JoinHandle<()>>,
    outgoing: mpsc::Sender<Outgoing>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
    }
}

async fn serve(mut socket: WebSocket, state: WsState, _permit: OwnedSemaphorePermit) {
    let write_timeout = state.limits.write_timeout;
    let (outgoing, mut queue) = mpsc::channel(100);
    let mut conn = Connection {
        state,
        subscriptions: HashMap::new(),
        outgoing,
    };
    loop {
        let reply = tokio::select! {
            Some((sub_id, payload)) = queue.recv() => {
                // A notification of a subscription ended meanwhile is dropped.
                if !conn.subscriptions.contains_key(&sub_id) {
                    continue;
                }
                serde_json::to_string(&notification_to_ws_message(NotificationInner { sub_id, payload }))
            }
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => match conn.request(text.as_str()).await {
                    Some(reply) => serde_json::to_string(&reply),
                    None => continue,
                },
                Some(Ok(Message::Ping(payload))) => {
                    if send(&mut socket, Message::Pong(payload), write_timeout).await.is_err() {
                        break;
                    }
                    continue;
                }
                Some(Ok(Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    tracing::debug!("binary websocket message ignored: NUT-17 is JSON text");
                    continue;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
        };
        let text = match reply {
            Ok(text) => text,
            Err(e) => {
                tracing::error!("cannot serialize a websocket message: {e}");
                continue;
            }
        };
        if let Err(reason) = send(&mut socket, Message::Text(text.into()), write_timeout).await {
            tracing::debug!("websocket client dropped: {reason}");
            break;
        }
    }
}

async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not reading (nothing taken within {timeout:?})")),
    }
}

/// JSON-RPC error codes (https://www.jsonrpc.org/specification#error_object).
fn invalid_params(message: &str) -> WsErrorBody {
    WsErrorBody {
        code: -32602,
        message: format!("Invalid params: {message}"),
    }
}

impl Connection {
    /// The reply to one request; `None` for text that is not a request with an id (nothing
    /// can be answered to it).
    async fn request(&mut self, text: &str) -> Option<WsMessageOrResponse> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let id = value
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .and_then(|id| usize::try_from(id).ok())?;
        let result = match serde_json::from_value::<WsRequest>(value) {
            Ok(request) => match request.method {
                WsMethodRequest::Subscribe(params) => self.subscribe(params).await,
                WsMethodRequest::Unsubscribe(request) => {
                    match self.subscriptions.remove(&request.sub_id) {
                        Some(task) => {
                            task.abort();
                            Ok(WsResponseResult {
                                status: "OK".into(),
                                sub_id: request.sub_id,
                            })
                        }
                        None => Err(invalid_params("no such subscription")),
                    }
                }
            },
            Err(e) => Err(invalid_params(&e.to_string())),
        };
        Some((id, result).into())
    }

    async fn subscribe(&mut self, params: Params) -> Result<WsResponseResult, WsErrorBody> {
        let limits = self.state.limits;
        if self.subscriptions.contains_key(&params.id) {
            return Err(invalid_params("subscription id in use"));
        }
        if self.subscriptions.len() >= limits.max_subscriptions_per_connection {
            return Err(invalid_params("too many subscriptions on this connection"));
        }
        if params.filters.len() > limits.max_filters_per_subscription {
            return Err(invalid_params("too many filters"));
        }
        let kind = kind_name(&params.kind);
        if !self.state.kinds.contains(&kind) {
            return Err(invalid_params(&format!(
                "subscription kind `{kind}` is not served by this mint (NUT-17 in /v1/info)"
            )));
        }
        let sub_id = params.id.clone();
        let initial = self.current_state(&params).await?;
        let mut live = self
            .state
            .mint
            .pubsub_manager()
            .subscribe(params)
            .map_err(|e| invalid_params(&e.to_string()))?;
        let (outgoing, id) = (self.outgoing.clone(), sub_id.clone());
        let task = tokio::spawn(async move {
            // The current state first (it may wait for room: at most one message per filter),
            // then live events, dropped rather than waited for when the client is behind (as
            // cdk-axum does: a slow client must not hold the mint's pubsub).
            for payload in initial {
                if outgoing.send((id.clone(), payload)).await.is_err() {
                    return;
                }
            }
            while let Some(event) = live.recv().await {
                let _ = outgoing.try_send((id.clone(), event.into_inner()));
            }
        });
        self.subscriptions.insert(sub_id.clone(), task);
        Ok(WsResponseResult {
            status: "OK".into(),
            sub_id,
        })
    }

    /// The state of the ehash quotes an `ehash_mint_quote` subscription names (CDK sends none
    /// for custom methods). Unknown ids are skipped: a quote's owner learns nothing new here
    /// that `GET /v1/mint/quote/ehash/{id}` does not already answer.
    async fn current_state(
        &self,
        params: &Params,
    ) -> Result<Vec<NotificationPayload<QuoteId>>, WsErrorBody> {
        let Kind::Custom(kind) = &params.kind else {
            return Ok(Vec::new());
        };
        if kind.strip_suffix("_mint_quote") != Some(EHASH_METHOD) {
            return Ok(Vec::new());
        }
        let ids = params
            .filters
            .iter()
            .map(|f| QuoteId::from_str(f).map_err(|_| invalid_params("not a quote id")))
            .collect::<Result<Vec<_>, _>>()?;
        // Nothing to read (the database refuses an empty id list).
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let quotes = self
            .state
            .mint
            .localstore()
            .get_mint_quotes_by_ids(&ids)
            .await
            .map_err(|e| {
                tracing::error!("cannot read quotes for a subscription: {e}");
                WsErrorBody {
                    code: -32603,
                    message: "Internal error".into(),
                }
            })?;
        Ok(quotes
            .into_iter()
            .flatten()
            .filter_map(|q| MintQuoteCustomResponse::<QuoteId>::try_from(q).ok())
            .map(|r| NotificationPayload::CustomMintQuoteResponse(EHASH_METHOD.to_string(), r))
            .collect())
    }
}
