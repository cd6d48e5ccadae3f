//! What keeps ehash in its epoch at the HTTP API (docs/settlement.md, "Epochs in the mint"):
//!
//! - a quote's outputs must be in its epoch's keyset (`POST /v1/mint/ehash`, and for NUT-29
//!   batches every quote of one epoch);
//! - a swap of ehash stays in one keyset: inputs and outputs all in the same one, so a closed
//!   epoch's ehash never becomes another epoch's;
//! - wallets are told one `hash` keyset is active (`/v1/keysets`, `/v1/keys`): the newest
//!   epoch's, where a standard wallet's new ehash goes. The closed epochs' keysets still sign
//!   for their own quotes and swaps; `GET /v1/hashpool/epochs` lists them for wallets that keep
//!   epochs apart (the hashpool wallet).
//!
//! CDK checks everything else about these requests (signatures, amounts, spent proofs).

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use cdk::{
    mint::{Mint, QuoteId},
    nuts::{CurrencyUnit, Id, KeysResponse, KeysetResponse},
};
use cdk_common::error::ErrorCode;
use ext_mint_quote::{EpochKeyset, EpochsResponse};
use serde::Deserialize;

use crate::cashu_error::{cashu_error, UNAVAILABLE};
use crate::epochs::EpochSignatory;
use crate::issuer::MintDb;
use crate::processor::EHASH_METHOD;
use crate::redeem::Redemption;

/// Largest request body read here: CDK takes at most 1,000 outputs per request, about 150 kB.
pub const MAX_BODY: usize = 2 << 20;

/// A request whose outputs are in another epoch's keyset: 12002, the code CDK gives outputs in
/// an inactive keyset (for this quote or these inputs, the keyset is not the one that signs).
pub const WRONG_KEYSET: ErrorCode = ErrorCode::KeysetInactive;

/// A redemption the mint will not price (an epoch not final, more ehash than it issued, less
/// than a sat, a malformed request): 20101, Hashpool's own code (the NUT table has none for
/// it), so that a CDK wallet reports the `detail`, which says which.
pub const NOT_REDEEMABLE: ErrorCode = ErrorCode::Unknown(20101);

/// A withdrawal the mint will not quote (an address of another chain, an amount out of range,
/// a malformed request): 20103, Hashpool's own code, the reason in `detail`.
pub const NOT_WITHDRAWABLE: ErrorCode = ErrorCode::Unknown(20103);

#[derive(Clone)]
pub struct EpochState {
    pub mint: Arc<Mint>,
    pub db: MintDb,
    pub epochs: Arc<EpochSignatory>,
    pub unit: CurrencyUnit,
    /// Redemption, when it is on: a melt quote is priced here first, so a refusal says why.
    pub redemption: Option<Arc<Redemption>>,
    /// Withdrawals, when they are on: a melt quote is checked here first, for the same reason.
    pub withdrawals: Option<Arc<crate::withdraw::Withdrawals>>,
}

impl EpochState {
    /// The `hash` keyset of ehash from before epochs: CDK's own active one.
    fn pre_epoch_keyset(&self) -> Option<Id> {
        self.mint
            .keysets()
            .keysets
            .into_iter()
            .find(|k| k.unit == self.unit && k.active && self.epochs.epoch_of(&k.id).is_none())
            .map(|k| k.id)
    }

    /// The keyset wallets are told is active for `hash`: the newest epoch's, else the
    /// pre-epoch one.
    fn current_keyset(&self) -> Option<Id> {
        self.epochs.newest().or_else(|| self.pre_epoch_keyset())
    }

    fn unit_of(&self, id: &Id) -> Option<CurrencyUnit> {
        self.mint.get_keyset_info(id).map(|k| k.unit)
    }

    /// The keyset a redemption's inputs must be in: its epoch's. `None` for a quote this mint
    /// does not have.
    async fn keyset_of_redemption(&self, quote: &str) -> Result<Option<Id>, Refusal> {
        let Ok(id) = quote.parse::<QuoteId>() else {
            return Ok(None);
        };
        let Some(quote) =
            self.db.get_melt_quote(&id).await.map_err(|e| {
                Refusal(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, e.to_string())
            })?
        else {
            return Ok(None);
        };
        let cdk_common::mint::MeltPaymentRequest::Custom { request, .. } = &quote.request else {
            return Ok(None);
        };
        let epoch = ext_mint_quote::parse_redeem_request(request)
            .map_err(|e| Refusal(StatusCode::BAD_REQUEST, WRONG_KEYSET, e.to_string()))?
            .epoch;
        self.epochs
            .keyset_of(epoch)
            .map(Some)
            .ok_or_else(|| wrong_keyset(format!("this mint has issued no ehash of epoch {epoch}")))
    }

    /// The keyset a quote's outputs must be in; `None` for a quote this mint does not have
    /// (CDK refuses it with its own answer).
    async fn keyset_of_quote(&self, quote: &str) -> Result<Option<Id>, Refusal> {
        let Ok(id) = quote.parse::<QuoteId>() else {
            return Ok(None);
        };
        let Some(quote) =
            self.db.get_mint_quote(&id).await.map_err(|e| {
                Refusal(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, e.to_string())
            })?
        else {
            return Ok(None);
        };
        let epoch = ext_mint_quote::epoch_of_quote_request(&quote.request).map_err(|e| {
            Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                UNAVAILABLE,
                e.to_string(),
            )
        })?;
        let keyset = match epoch {
            Some(epoch) => self.epochs.keyset_of(epoch),
            None => self.pre_epoch_keyset(),
        };
        keyset.map(Some).ok_or_else(|| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                UNAVAILABLE,
                format!("the keyset of quote {id}'s epoch is not loaded"),
            )
        })
    }
}

#[derive(Deserialize)]
struct Output {
    id: Id,
}

#[derive(Deserialize)]
struct MintBody {
    quote: String,
    outputs: Vec<Output>,
}

#[derive(Deserialize)]
struct BatchMintBody {
    quotes: Vec<String>,
    outputs: Vec<Output>,
}

#[derive(Deserialize)]
struct MeltQuoteBody {
    request: String,
}

#[derive(Deserialize)]
struct MeltBody {
    quote: String,
    inputs: Vec<Output>,
    #[serde(default)]
    outputs: Option<Vec<Output>>,
}

#[derive(Deserialize)]
struct SwapBody {
    inputs: Vec<Output>,
    outputs: Vec<Output>,
}

enum Checked {
    Mint,
    BatchMint,
    Swap,
    RedeemQuote,
    Redeem,
    WithdrawQuote,
}

fn checked_route(method: &Method, path: &str) -> Option<Checked> {
    if method != Method::POST {
        return None;
    }
    let segments = crate::routes::segments(path);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["v1", "mint", m] if *m == EHASH_METHOD => Some(Checked::Mint),
        ["v1", "mint", m, "batch"] if *m == EHASH_METHOD => Some(Checked::BatchMint),
        ["v1", "swap"] => Some(Checked::Swap),
        ["v1", "melt", m] if *m == ext_mint_quote::REDEEM_METHOD => Some(Checked::Redeem),
        ["v1", "melt", "quote", m] if *m == ext_mint_quote::REDEEM_METHOD => {
            Some(Checked::RedeemQuote)
        }
        ["v1", "melt", "quote", m] if *m == ext_mint_quote::WITHDRAW_METHOD => {
            Some(Checked::WithdrawQuote)
        }
        _ => None,
    }
}

/// Why a request is refused, answered as Cashu's error body.
struct Refusal(StatusCode, ErrorCode, String);

impl Refusal {
    fn into_response(self) -> Response {
        cashu_error(self.0, self.1, self.2)
    }
}

fn wrong_keyset(detail: String) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, WRONG_KEYSET, detail)
}

/// Every output in `keyset`.
fn all_in(items: &[Output], keyset: Id, what: &str) -> Result<(), Refusal> {
    match items.iter().find(|o| o.id != keyset) {
        Some(o) => Err(wrong_keyset(format!(
            "{what} must be in keyset {keyset}, not {}",
            o.id
        ))),
        None => Ok(()),
    }
}

async fn check(state: &EpochState, route: Checked, body: &[u8]) -> Result<(), Refusal> {
    // A body CDK would refuse as malformed is left for CDK to refuse.
    match route {
        Checked::Mint => {
            let Ok(m) = serde_json::from_slice::<MintBody>(body) else {
                return Ok(());
            };
            match state.keyset_of_quote(&m.quote).await? {
                Some(keyset) => all_in(
                    &m.outputs,
                    keyset,
                    &format!("the outputs of quote {:.80}", m.quote),
                ),
                None => Ok(()),
            }
        }
        Checked::BatchMint => {
            let Ok(m) = serde_json::from_slice::<BatchMintBody>(body) else {
                return Ok(());
            };
            // Past the batch limit nothing is read: the request is refused as CDK would.
            if m.quotes.len() > crate::MAX_BATCH_QUOTES {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BatchSizeExceeded,
                    format!(
                        "a batch mint takes at most {} quotes",
                        crate::MAX_BATCH_QUOTES
                    ),
                ));
            }
            let mut keysets = BTreeSet::new();
            for quote in &m.quotes {
                keysets.extend(state.keyset_of_quote(quote).await?);
            }
            let mut keysets = keysets.into_iter();
            match (keysets.next(), keysets.next()) {
                (None, _) => Ok(()),
                (Some(keyset), None) => all_in(&m.outputs, keyset, "these quotes"),
                (Some(_), Some(_)) => Err(wrong_keyset(
                    "the quotes of one batch mint must be of one epoch: mint each epoch's \
                     quotes in a batch of their own"
                        .into(),
                )),
            }
        }
        Checked::RedeemQuote => {
            let Ok(q) = serde_json::from_slice::<MeltQuoteBody>(body) else {
                return Ok(());
            };
            match &state.redemption {
                Some(r) => {
                    r.price(&q.request).await.map(|_| ()).map_err(|e| {
                        Refusal(StatusCode::BAD_REQUEST, NOT_REDEEMABLE, e.to_string())
                    })
                }
                None => Ok(()),
            }
        }
        Checked::WithdrawQuote => {
            let Ok(q) = serde_json::from_slice::<MeltQuoteBody>(body) else {
                return Ok(());
            };
            match &state.withdrawals {
                Some(w) => w
                    .check(&q.request)
                    .map(|_| ())
                    .map_err(|e| Refusal(StatusCode::BAD_REQUEST, NOT_WITHDRAWABLE, e.to_string())),
                None => Ok(()),
            }
        }
        Checked::Redeem => {
            let Ok(m) = serde_json::from_slice::<MeltBody>(body) else {
                return Ok(());
            };
            match state.keyset_of_redemption(&m.quote).await? {
                Some(keyset) => {
                    let what = |side: &str| format!("the {side} of redemption {:.80}", m.quote);
                    all_in(&m.inputs, keyset, &what("inputs"))?;
                    all_in(
                        m.outputs.as_deref().unwrap_or_default(),
                        keyset,
                        &what("outputs"),
                    )
                }
                None => Ok(()),
            }
        }
        Checked::Swap => {
            let Ok(s) = serde_json::from_slice::<SwapBody>(body) else {
                return Ok(());
            };
            // Up to a thousand proofs in a handful of keysets: each keyset's unit read once.
            let ids: BTreeSet<Id> = s.inputs.iter().chain(&s.outputs).map(|o| o.id).collect();
            let ehash: Vec<&Id> = ids
                .iter()
                .filter(|id| state.unit_of(id).as_ref() == Some(&state.unit))
                .collect();
            if ehash.len() > 1 {
                return Err(wrong_keyset(
                    "a swap of ehash keeps its epoch: inputs and outputs all in one keyset \
                     (GET /v1/hashpool/epochs lists them)"
                        .into(),
                ));
            }
            Ok(())
        }
    }
}

/// The middleware: reads the body of the routes above, refuses what would move ehash between
/// epochs, passes the rest on untouched.
pub async fn keep_epochs(
    State(state): State<EpochState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = checked_route(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return cashu_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::Unknown(10000),
                format!("request body over {MAX_BODY} bytes"),
            )
        }
    };
    if let Err(refusal) = check(&state, route, &bytes).await {
        tracing::info!(path = %parts.uri.path(), detail = %refusal.2, "refused an ehash request");
        return refusal.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `GET /v1/keysets`: CDK's answer, with only the current `hash` keyset active.
pub async fn keysets(State(state): State<EpochState>) -> Json<KeysetResponse> {
    let current = state.current_keyset();
    let mut answer = state.mint.keysets();
    for k in &mut answer.keysets {
        if k.unit == state.unit {
            k.active = Some(k.id) == current;
        }
    }
    Json(answer)
}

/// `GET /v1/keys`: the active keysets' keys, `hash`'s current one only.
pub async fn keys(State(state): State<EpochState>) -> Json<KeysResponse> {
    let current = state.current_keyset();
    let mut answer = state.mint.pubkeys();
    answer
        .keysets
        .retain(|k| k.unit != state.unit || Some(k.id) == current);
    Json(answer)
}

/// `GET /v1/hashpool/epochs` (ext-mint-quote's SPEC, "Epoch keysets").
/// How long the epoch list waits for the pool's rate sheet.
const RATE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn epochs(State(state): State<EpochState>) -> impl IntoResponse {
    let mut epochs = Vec::new();
    for (epoch, keyset) in state.epochs.all() {
        // Final rates as the redemption knows them (the pool's sheet, read again at most
        // every few seconds); an unreadable sheet leaves the rates out.
        let rate = match &state.redemption {
            // Wallets read this list to mint: a pool slow to answer leaves the rates out
            // rather than holding them up.
            Some(r) => tokio::time::timeout(RATE_WAIT, r.final_rate(epoch))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            None => None,
        };
        epochs.push(EpochKeyset {
            epoch,
            keyset: keyset.to_string(),
            rate: rate.map(|r| ext_mint_quote::EpochRate {
                reward_sats: r.reward_sats,
                ehash: r.ehash,
            }),
        });
    }
    Json(EpochsResponse {
        pre_epoch: state.pre_epoch_keyset().map(|id| id.to_string()),
        epochs,
    })
}
