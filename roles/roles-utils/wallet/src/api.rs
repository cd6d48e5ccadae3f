//! A role's wallet over HTTP (the translator's, or the jd-client's; bound to 127.0.0.1 by
//! default): balance, recent issuance, create a token, receive a token, and a faucet limited
//! per client address. The miner's page (web-proxy) reads it.
//! Errors are JSON `{"error": "..."}` with a fitting status.

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use crate::{EhashWallet, WalletError};
use axum::{
    extract::{rejection::JsonRejection, ConnectInfo, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct FaucetSettings {
    /// ehash per faucet token.
    pub amount: u64,
    /// One faucet token per client address per this long.
    pub interval: Duration,
}

impl FaucetSettings {
    /// From a role's config: ehash per token (at least 1), seconds between a client's tokens.
    pub fn from_config(amount: u64, interval_secs: u64) -> Self {
        Self {
            amount: amount.max(1),
            interval: Duration::from_secs(interval_secs),
        }
    }
}

#[derive(Clone)]
struct ApiState {
    wallet: Arc<EhashWallet>,
    faucet: FaucetSettings,
    limiter: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn wallet_error(e: WalletError) -> Response {
    let text = e.to_string();
    // What the caller asked for cannot be done with this wallet (vs. the wallet or mint failing).
    let status = if text.contains("nsufficient") || text.contains("Token") || text.contains("token")
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    error(status, text)
}

pub fn router(wallet: Arc<EhashWallet>, faucet: FaucetSettings) -> Router {
    let per = faucet.interval.max(Duration::from_millis(1));
    let quota = Quota::with_period(per)
        .expect("non-zero period")
        .allow_burst(NonZeroU32::MIN);
    let state = ApiState {
        wallet,
        faucet,
        limiter: Arc::new(RateLimiter::keyed(quota)),
    };
    Router::new()
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/history", get(history))
        .route("/api/v1/tokens", post(create_token))
        .route("/api/v1/receive", post(receive))
        .route("/api/v1/faucet", post(faucet_token))
        .with_state(state)
}

/// Serves the API on `address` until `shutdown`; returns the bound address.
pub async fn serve(
    address: SocketAddr,
    wallet: Arc<EhashWallet>,
    faucet: FaucetSettings,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    // Spending endpoints on a loopback port: only requests that name this server, and not
    // from another site's page (DNS rebinding, cross-origin POSTs).
    let allowed = hashpool_web::guard::AllowedHosts::for_address(bound, &[]);
    let app = router(wallet, faucet)
        .layer(axum::middleware::from_fn_with_state(
            allowed,
            hashpool_web::guard::same_host,
        ))
        .into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!("wallet API: {e}");
        }
    });
    Ok((bound, task))
}

async fn balance(State(s): State<ApiState>) -> Response {
    match s.wallet.balance().await {
        Ok(balance) => Json(json!({
            "balance": balance,
            "unit": "hash",
            "locking_key": s.wallet.locking_key().to_hex(),
        }))
        .into_response(),
        Err(e) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(State(s): State<ApiState>, Query(q): Query<HistoryQuery>) -> Response {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    match s.wallet.history(limit).await {
        Ok(items) => Json(json!({ "issuance": items })).into_response(),
        Err(e) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    amount: u64,
}

async fn create_token(
    State(s): State<ApiState>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"amount\": <positive integer>}",
        );
    };
    if request.amount == 0 {
        return error(StatusCode::BAD_REQUEST, "amount must be positive");
    }
    match s.wallet.balance().await {
        Ok(b) if b < request.amount => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("insufficient balance: {b} < {}", request.amount),
            )
        }
        Err(e) => return wallet_error(e),
        _ => {}
    }
    match s.wallet.send(request.amount).await {
        Ok(token) => Json(json!({ "token": token, "amount": request.amount })).into_response(),
        Err(e) => wallet_error(e),
    }
}

#[derive(Deserialize)]
struct ReceiveRequest {
    token: String,
}

async fn receive(
    State(s): State<ApiState>,
    body: Result<Json<ReceiveRequest>, JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"token\": \"cashuB...\"}",
        );
    };
    match s.wallet.receive(request.token.trim()).await {
        Ok(amount) => Json(json!({ "amount": amount })).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("cannot receive this token: {e}"),
        ),
    }
}

async fn faucet_token(
    State(s): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Err(not_until) = s.limiter.check_key(&peer.ip()) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({
                "error": "faucet used too recently from this address",
                "retry_after_secs": wait.as_secs().max(1),
            })),
        )
            .into_response();
    }
    match s.wallet.send(s.faucet.amount).await {
        Ok(token) => Json(json!({ "token": token, "amount": s.faucet.amount })).into_response(),
        Err(e) => wallet_error(e),
    }
}
