//! The mint's HTTP server: the standard Cashu API from cdk-axum, with quote creation over HTTP
//! closed (ehash quotes come from the pool only) and the signed locking-key lookup beside it.
//! Every answer (cdk-axum's, the lookup's, the refusals') carries cdk-axum's CORS headers, so a
//! browser wallet on another origin can call any of them. Errors are Cashu's
//! (`{"detail", "code"}`) with codes of the NUT error table as CDK 0.18.3 numbers them.
//! Metrics are not here: they are served on the monitoring address (`metrics::serve`).

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use cdk::{
    mint::{Mint, QuoteId},
    nuts::PublicKey,
    secp256k1::schnorr::Signature,
};
use cdk_common::error::ErrorCode;
use ext_mint_quote::{
    quote_lookup_message, valid_lookup_nonce, LookedUpQuote as LookupQuote,
    QuoteLookupRequest as LookupRequest, QuoteLookupResponse as LookupResponse, EPOCHS_PATH,
    QUOTE_LOOKUP_MAX_SKEW_SECS, QUOTE_LOOKUP_PATH, REDEEM_METHOD, WITHDRAWALS_PATH,
    WITHDRAW_METHOD,
};
use tower_http::cors::{Any, CorsLayer};

use crate::cashu_error::cashu_error;
pub use crate::cashu_error::UNAVAILABLE;
use crate::epoch_http::{self, EpochState};
use crate::epochs::EpochSignatory;
use crate::info::normalized_url;
use crate::issuer::{MintDb, MintStats};
use crate::liabilities::{self, LiabilitiesState};
use crate::nonces::{Admission, SeenNonces};
use crate::processor::EHASH_METHOD;
use crate::quote_index::{self, quote_id_of_index_key};
use crate::redeem::Redemption;
use crate::withdraw;

/// Quotes one lookup returns at most; the wallet asks again from the last one's time.
pub const LOOKUP_PAGE: usize = 500;

/// Quote creation and melting are refused with 20003: CDK 0.18.3 answers a melt on a mint whose
/// NUT-05 is disabled (`Error::MeltingDisabled`) with this code, and for quote creation it is
/// the table's "Minting is disabled" (for requests; paid quotes still mint).
pub const REFUSED: ErrorCode = ErrorCode::MintingDisabled;
/// A lookup that is malformed or not signed as it must be: 20008, the NUT-20 "Signature for
/// mint request invalid" (the lookup is signed by the quotes' NUT-20 key).
pub const LOOKUP_NOT_SIGNED: ErrorCode = ErrorCode::WitnessMissingOrInvalid;

/// What the signed lookup needs besides the database.
pub struct LookupSettings {
    /// Every URL a lookup may be signed for, normalized; the first is the public one.
    pub urls: Vec<String>,
    /// Nonces remembered at once.
    pub nonce_capacity: usize,
}

/// What the settlement routes serve: redemption and withdrawal melts (when on) and the
/// proof-of-liabilities reports.
pub struct SettlementRoutes {
    pub redemption: Option<Arc<Redemption>>,
    pub withdrawals: Option<withdraw::ListState>,
    pub liabilities: LiabilitiesState,
}

pub async fn router(
    mint: Arc<Mint>,
    db: MintDb,
    stats: Arc<MintStats>,
    epochs: Arc<EpochSignatory>,
    lookup: LookupSettings,
    settlement: SettlementRoutes,
) -> anyhow::Result<Router> {
    let SettlementRoutes {
        redemption,
        withdrawals,
        liabilities,
    } = settlement;
    let melts = OpenMelts {
        redeem: redemption.is_some(),
        withdraw: withdrawals.is_some(),
    };
    let epoch_state = EpochState {
        mint: mint.clone(),
        db: db.clone(),
        unit: epochs.unit().clone(),
        epochs,
        redemption,
        withdrawals: withdrawals.as_ref().map(|l| l.withdrawals.clone()),
    };
    let cashu = cdk_axum::create_mint_router(mint.clone(), vec![EHASH_METHOD.to_string()]).await?;
    // Our views of the keysets answer before cdk-axum's (a merge would overlap the paths).
    let cashu = Router::new()
        .route("/v1/keysets", get(epoch_http::keysets))
        .route("/v1/keys", get(epoch_http::keys))
        .route(EPOCHS_PATH, get(epoch_http::epochs))
        .with_state(epoch_state.clone())
        .route(
            liabilities::REPORT_PATH,
            get(liabilities::report).with_state(liabilities),
        )
        .fallback_service(cashu);
    let cashu = match withdrawals {
        Some(list) => Router::new()
            .route(WITHDRAWALS_PATH, get(withdraw::list).with_state(list))
            .fallback_service(cashu),
        None => cashu,
    };
    let lookup = Router::new()
        .route(QUOTE_LOOKUP_PATH, post(lookup_quotes))
        .with_state(LookupState {
            db,
            stats,
            urls: Arc::new(lookup.urls),
            nonces: Arc::new(SeenNonces::new(lookup.nonce_capacity)),
        });
    let cashu = cashu
        .merge(lookup)
        .layer(axum::middleware::from_fn_with_state(
            epoch_state,
            epoch_http::keep_epochs,
        ))
        .layer(axum::middleware::from_fn_with_state(
            melts,
            refuse_quote_creation,
        ))
        .layer(cors());
    // Our `/v1/ws` first (cdk-axum's route of the same path would overlap in a merge);
    // everything else is cdk-axum's and the lookup's.
    let supported = mint.mint_info().await?.nuts.nut17.supported;
    Ok(crate::ws::router(mint, crate::ws::WsLimits::default(), &supported).fallback_service(cashu))
}

/// cdk-axum's CORS policy (any origin, `GET, POST, OPTIONS`, any header) for every route here:
/// its own layer covers only the routes it built, not the lookup merged beside them nor the
/// refusals.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any)
}

/// The melts this mint serves.
#[derive(Debug, Clone, Copy)]
struct OpenMelts {
    redeem: bool,
    withdraw: bool,
}

/// `POST /v1/mint/quote/{method}` and every melt route are closed: ehash is issued only for
/// work the pool accepted, and the only melts are redemption's and withdrawal's (when on).
async fn refuse_quote_creation(
    State(open): State<OpenMelts>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let segments = crate::routes::segments(path);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let creates_quote = request.method() == Method::POST
        && matches!(segments.as_slice(), ["v1", "mint", "quote", _]);
    // Redemption's melts (`/v1/melt/quote/hashpool-redeem`, `/v1/melt/hashpool-redeem`, and
    // the quote's state) are the only ones, when redemption is on.
    let method = match segments.as_slice() {
        ["v1", "melt", "quote", m, ..] | ["v1", "melt", m] => Some(*m),
        _ => None,
    };
    let open = method.is_some_and(|m| {
        (open.redeem && m == REDEEM_METHOD) || (open.withdraw && m == WITHDRAW_METHOD)
    });
    let melts = segments.get(1) == Some(&"melt") && !open;
    if creates_quote {
        tracing::info!(%path, "refused quote creation over HTTP");
        return cashu_error(
            StatusCode::FORBIDDEN,
            REFUSED,
            "ehash quotes are created by the pool for accepted work; they cannot be requested",
        );
    }
    if melts {
        return cashu_error(
            StatusCode::FORBIDDEN,
            REFUSED,
            "melting is disabled but for the redemption of final epochs' ehash and the \
             withdrawal of sats, where the mint offers them (see NUT-05 in /v1/info)",
        );
    }
    next.run(request).await
}

#[derive(Clone)]
struct LookupState {
    db: MintDb,
    stats: Arc<MintStats>,
    urls: Arc<Vec<String>>,
    nonces: Arc<SeenNonces>,
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
        return cashu_error(
            StatusCode::BAD_REQUEST,
            LOOKUP_NOT_SIGNED,
            "malformed lookup request",
        );
    };
    let Ok(pubkey) = PublicKey::from_hex(&request.pubkey) else {
        return cashu_error(
            StatusCode::BAD_REQUEST,
            LOOKUP_NOT_SIGNED,
            "`pubkey` is not a public key",
        );
    };
    if let Some(after) = &request.after {
        if quote_id_of_index_key(after).is_none() {
            return cashu_error(
                StatusCode::BAD_REQUEST,
                LOOKUP_NOT_SIGNED,
                "`after` is not a cursor this mint gave: pass an answer's `next` or a quote's `cursor`",
            );
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if now.abs_diff(request.time) > QUOTE_LOOKUP_MAX_SKEW_SECS {
        return cashu_error(
            StatusCode::UNAUTHORIZED,
            LOOKUP_NOT_SIGNED,
            "`time` is too far from the mint's clock",
        );
    }
    if !valid_lookup_nonce(&request.nonce) {
        return cashu_error(
            StatusCode::BAD_REQUEST,
            LOOKUP_NOT_SIGNED,
            "`nonce` must be 16 to 64 lowercase hex characters, fresh for every lookup",
        );
    }
    // The mint the wallet signed for must be this one: a lookup signed for another mint (and
    // replayed here by it) is refused.
    let signed_for_us = normalized_url(&request.mint).is_ok_and(|u| state.urls.contains(&u));
    if !signed_for_us {
        return cashu_error(
            StatusCode::UNAUTHORIZED,
            LOOKUP_NOT_SIGNED,
            format!(
                "the lookup is signed for mint `{}`; this mint is `{}`",
                request.mint,
                state.urls.first().map_or("", String::as_str)
            ),
        );
    }
    let message = quote_lookup_message(
        &pubkey.to_hex(),
        request.time,
        &request.nonce,
        &request.mint,
    );
    if signature_invalid(&pubkey, &message, &request.signature) {
        return cashu_error(
            StatusCode::UNAUTHORIZED,
            LOOKUP_NOT_SIGNED,
            "the signature is not by the locking key",
        );
    }
    // Checked after the signature, so unsigned junk costs no memory. After `time` + the skew
    // the time check refuses the request, so the nonce may be forgotten then.
    let expires = request.time.saturating_add(QUOTE_LOOKUP_MAX_SKEW_SECS);
    match state.nonces.admit(
        format!("{}:{}", pubkey.to_hex(), request.nonce),
        expires,
        now,
    ) {
        Admission::Fresh => {}
        Admission::Replayed => {
            MintStats::add(&state.stats.lookups_replayed, 1);
            tracing::info!(pubkey = %pubkey.to_hex(), "refused a replayed quote lookup");
            return cashu_error(
                StatusCode::UNAUTHORIZED,
                LOOKUP_NOT_SIGNED,
                "replayed lookup: this nonce was used already; sign a new one with a fresh nonce",
            );
        }
        Admission::Full => {
            tracing::warn!("quote lookup refused: the nonce store is full");
            return cashu_error(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                "too many lookups in the last minutes; try again later",
            );
        }
    }
    match lookup(&state, &pubkey, request.after.as_deref()).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => {
            tracing::error!("quote lookup failed: {e}");
            cashu_error(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
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
    let quote_index::Page { keys: page, next } =
        quote_index::page(&state.db, pubkey, after, LOOKUP_PAGE).await?;
    let mut ids: Vec<QuoteId> = Vec::with_capacity(page.len());
    let mut cursors = Vec::with_capacity(page.len());
    for key in page {
        if let Some((_, id)) = quote_id_of_index_key(&key) {
            ids.push(id.parse()?);
            cursors.push(key);
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
