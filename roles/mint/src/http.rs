//! The mint's HTTP server: the standard Cashu API from cdk-axum, with quote creation over HTTP
//! closed (ehash quotes come from the pool only) and the signed locking-key lookup beside it.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use cdk::{
    mint::{Mint, QuoteId},
    nuts::PublicKey,
    secp256k1::schnorr::Signature,
};
use ext_mint_quote::{
    quote_lookup_message, LookedUpQuote as LookupQuote, QuoteLookupRequest as LookupRequest,
    QuoteLookupResponse as LookupResponse, QUOTE_LOOKUP_MAX_SKEW_SECS, QUOTE_LOOKUP_PATH,
};

use crate::issuer::{quote_id_of_index_key, MintDb, MintStats, INDEX_NAMESPACE};
use crate::processor::EHASH_METHOD;

/// Quotes one lookup returns at most; the wallet asks again from the last one's time.
pub const LOOKUP_PAGE: usize = 500;

pub async fn router(mint: Arc<Mint>, db: MintDb, stats: Arc<MintStats>) -> anyhow::Result<Router> {
    let cashu = cdk_axum::create_mint_router(mint, vec![EHASH_METHOD.to_string()]).await?;
    let lookup = Router::new()
        .route(QUOTE_LOOKUP_PATH, post(lookup_quotes))
        .with_state(LookupState {
            db,
            stats: stats.clone(),
        });
    Ok(cashu
        .merge(lookup)
        .merge(crate::metrics::exporter(stats)?.router())
        .layer(axum::middleware::from_fn(refuse_quote_creation)))
}

/// Cashu-style error body (`detail`, `code`).
fn cashu_error(status: StatusCode, code: u32, detail: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "detail": detail.into(), "code": code })),
    )
        .into_response()
}

/// `POST /v1/mint/quote/{method}` and every melt route are closed: ehash is issued only for
/// work the pool accepted, and cannot be melted.
async fn refuse_quote_creation(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let creates_quote = request.method() == Method::POST
        && matches!(segments.as_slice(), ["v1", "mint", "quote", _]);
    let melts = segments.get(1) == Some(&"melt");
    if creates_quote {
        tracing::info!(%path, "refused quote creation over HTTP");
        return cashu_error(
            StatusCode::FORBIDDEN,
            20000,
            "ehash quotes are created by the pool for accepted work; they cannot be requested",
        );
    }
    if melts {
        return cashu_error(StatusCode::FORBIDDEN, 20000, "ehash cannot be melted");
    }
    next.run(request).await
}

#[derive(Clone)]
struct LookupState {
    db: MintDb,
    stats: Arc<MintStats>,
}

async fn lookup_quotes(
    State(state): State<LookupState>,
    body: Result<Json<LookupRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let stats = state.stats.clone();
    let response = answer_lookup(state, body).await;
    let counter = if response.status().is_success() {
        &stats.lookups_answered
    } else {
        &stats.lookups_refused
    };
    MintStats::add(counter, 1);
    response
}

async fn answer_lookup(
    state: LookupState,
    body: Result<Json<LookupRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(request)) = body else {
        return cashu_error(StatusCode::BAD_REQUEST, 10000, "malformed lookup request");
    };
    let Ok(pubkey) = PublicKey::from_hex(&request.pubkey) else {
        return cashu_error(
            StatusCode::BAD_REQUEST,
            10000,
            "`pubkey` is not a public key",
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if now.abs_diff(request.time) > QUOTE_LOOKUP_MAX_SKEW_SECS {
        return cashu_error(
            StatusCode::UNAUTHORIZED,
            20008,
            "`time` is too far from the mint's clock",
        );
    }
    let message = quote_lookup_message(&pubkey.to_hex(), request.time);
    if signature_invalid(&pubkey, &message, &request.signature) {
        return cashu_error(
            StatusCode::UNAUTHORIZED,
            20008,
            "the signature is not by the locking key",
        );
    }
    match lookup(&state, &pubkey, request.after.as_deref()).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => {
            tracing::error!("quote lookup failed: {e}");
            cashu_error(
                StatusCode::SERVICE_UNAVAILABLE,
                10000,
                "lookup failed; try again",
            )
        }
    }
}

fn signature_invalid(pubkey: &PublicKey, message: &[u8], signature: &str) -> bool {
    match signature.parse::<Signature>() {
        Ok(s) => pubkey.verify(message, &s).is_err(),
        Err(_) => true,
    }
}

async fn lookup(
    state: &LookupState,
    pubkey: &PublicKey,
    after: Option<&str>,
) -> anyhow::Result<LookupResponse> {
    let mut keys = state.db.kv_list(INDEX_NAMESPACE, &pubkey.to_hex()).await?;
    keys.sort_unstable();
    let start = after.map_or(0, |a| keys.partition_point(|k| k.as_str() <= a));
    let page: Vec<&String> = keys[start..].iter().take(LOOKUP_PAGE).collect();
    let next = (start + page.len() < keys.len())
        .then(|| page.last().map(|k| k.to_string()))
        .flatten();
    let mut ids: Vec<QuoteId> = Vec::with_capacity(page.len());
    let mut cursors = Vec::with_capacity(page.len());
    for key in page {
        if let Some((_, id)) = quote_id_of_index_key(key) {
            ids.push(id.parse()?);
            cursors.push(key.clone());
        }
    }
    let quotes = if ids.is_empty() {
        Vec::new()
    } else {
        state.db.get_mint_quotes_by_ids(&ids).await?
    };
    Ok(LookupResponse {
        quotes: quotes
            .into_iter()
            .zip(cursors)
            .filter_map(|(q, cursor)| q.map(|q| (q, cursor)))
            .map(|(q, cursor)| LookupQuote {
                quote: q.id.to_string(),
                amount: q.amount_paid().value(),
                amount_issued: q.amount_issued().value(),
                created_time: q.created_time,
                cursor,
            })
            .collect(),
        next,
    })
}
