//! `GET /api/v1/settlement` on the miner API's address: the epochs (state, ehash quoted,
//! reward, rate once final), the found blocks with their windows and what each paid, the fee
//! and the carry, as the ledger's records stand. `GET /api/v1/settlement/rates`: the final
//! epochs' rates, signed with the pool's authority key. `GET /api/v1/settlement/epochs/{e}`:
//! a closed epoch's quotes as a signed Merkle-sum root, and `.../epochs/{e}/quotes/{id}`: one
//! quote's inclusion proof in it.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use std::sync::Arc;

use axum::extract::Path;
use hashpool_settlement::{
    merkle_sum::{Leaf, MerkleSumTree},
    rates::{EpochCommitment, EpochQuotes, FinalRate, RateSheet, EPOCH_TAG, RATES_TAG},
};
use tokio::sync::Semaphore;

use super::rates;
use crate::ledger::AccrualLedger;

/// Found blocks read for a report at most (every one counts: the carry runs through them all).
const MAX_BLOCKS: u32 = 1_000_000;

/// Quotes of one epoch a commitment is built from on demand at most (their tree is held in
/// memory while it is built: about 100 bytes a quote).
const MAX_EPOCH_QUOTES: u32 = 500_000;

#[derive(Clone)]
pub struct SettlementApi {
    ledger: AccrualLedger,
    fee_ppm: u32,
    window_multiplier: u32,
    /// The pool's authority key: signs the rate sheet.
    secret_key: [u8; 32],
    /// One epoch tree built at a time.
    trees: Arc<Semaphore>,
}

impl SettlementApi {
    pub fn new(
        ledger: AccrualLedger,
        fee_ppm: u32,
        window_multiplier: u32,
        secret_key: [u8; 32],
    ) -> Self {
        Self {
            ledger,
            fee_ppm,
            window_multiplier,
            secret_key,
            trees: Arc::new(Semaphore::new(1)),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/settlement", get(settlement))
            .route("/api/v1/settlement/rates", get(signed_rates))
            .route("/api/v1/settlement/epochs/{index}", get(epoch_commitment))
            .route(
                "/api/v1/settlement/epochs/{index}/quotes/{quote_id}",
                get(quote_proof),
            )
            .route("/api/v1/settlement/quotes/{quote_id}", get(quote_anywhere))
            .with_state(self)
    }
}

async fn settlement(State(api): State<SettlementApi>) -> Response {
    match current(&api).await {
        Ok(report) => Json(report).into_response(),
        Err(response) => response,
    }
}

/// Every final epoch with ehash, signed.
async fn signed_rates(State(api): State<SettlementApi>) -> Response {
    let report = match current(&api).await {
        Ok(report) => report,
        Err(response) => return response,
    };
    let rates = report
        .epochs
        .iter()
        .filter_map(|e| {
            let [reward_sats, ehash] = e.rate?;
            Some(FinalRate {
                epoch: e.index,
                start_work: e.start_work.clone(),
                end_work: e.end_work.clone()?,
                reward_sats,
                ehash,
            })
        })
        .collect();
    match RateSheet::sign(RATES_TAG, &api.secret_key, rates) {
        Ok(sheet) => Json(sheet).into_response(),
        Err(e) => {
            tracing::error!("signing the rate sheet: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": "the rate sheet could not be signed" })),
            )
                .into_response()
        }
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Epoch `index`'s quote tree, with the epoch's record: closed epochs only (an open one's
/// quotes still change).
async fn epoch_tree(
    api: &SettlementApi,
    index: u32,
) -> Result<(crate::ledger::LedgerEpoch, Vec<Leaf>, MerkleSumTree), Response> {
    let unreadable = |e: crate::ledger::LedgerError| {
        tracing::warn!("epoch commitment: {e}");
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the ledger could not be read",
        )
    };
    let epochs = api.ledger.epochs().await.map_err(unreadable)?;
    let Some(epoch) = epochs.into_iter().find(|e| e.index == index) else {
        return Err(refuse(StatusCode::NOT_FOUND, format!("no epoch {index}")));
    };
    if epoch.end.is_none() {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("epoch {index} is open: its quotes still change"),
        ));
    }
    let Ok(_turn) = api.trees.acquire().await else {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    };
    let Some(quotes) = api
        .ledger
        .epoch_quotes(index, MAX_EPOCH_QUOTES)
        .await
        .map_err(unreadable)?
    else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("epoch {index} has more than {MAX_EPOCH_QUOTES} quotes to prove on demand"),
        ));
    };
    let leaves: Vec<Leaf> = quotes
        .into_iter()
        .map(|q| Leaf {
            id: q.quote_id,
            key: q.locking_key.to_hex(),
            amount: q.amount,
        })
        .collect();
    let tree = MerkleSumTree::new(&leaves)
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((epoch, leaves, tree))
}

/// A closed epoch's quotes, committed to and signed.
async fn epoch_commitment(State(api): State<SettlementApi>, Path(index): Path<u32>) -> Response {
    let (epoch, leaves, tree) = match epoch_tree(&api, index).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let unanswered = match api.ledger.epoch_unanswered(index).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("epoch commitment: {e}");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger could not be read",
            );
        }
    };
    let body = EpochQuotes {
        epoch: index,
        start_work: epoch.start.hashes().to_string(),
        end_work: epoch
            .end
            .map(|w| w.hashes().to_string())
            .unwrap_or_default(),
        quotes: leaves.len() as u64,
        unanswered,
        root: tree.root(),
    };
    match EpochCommitment::sign(EPOCH_TAG, &api.secret_key, body) {
        Ok(signed) => Json(signed).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A quote's epoch and its place in that epoch's commitment.
async fn quote_anywhere(
    State(api): State<SettlementApi>,
    Path(quote_id): Path<String>,
) -> Response {
    match api.ledger.epoch_of_quote(&quote_id).await {
        Ok(Some(Some(index))) => proof_in(&api, index, &quote_id).await,
        Ok(Some(None)) => refuse(
            StatusCode::NOT_FOUND,
            format!("quote {quote_id} is from before the first epoch"),
        ),
        Ok(None) => refuse(StatusCode::NOT_FOUND, format!("no quote {quote_id}")),
        Err(e) => {
            tracing::warn!("quote proof: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger could not be read",
            )
        }
    }
}

/// One quote's place in its epoch's commitment.
async fn quote_proof(
    State(api): State<SettlementApi>,
    Path((index, quote_id)): Path<(u32, String)>,
) -> Response {
    proof_in(&api, index, &quote_id).await
}

async fn proof_in(api: &SettlementApi, index: u32, quote_id: &str) -> Response {
    let (_, leaves, tree) = match epoch_tree(api, index).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    // Leaves are in quote id order.
    let Ok(at) = leaves.binary_search_by(|l| l.id.as_str().cmp(quote_id)) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!("no quote {quote_id} in epoch {index}"),
        );
    };
    match tree.proof(at) {
        Some(proof) => {
            Json(json!({ "epoch": index, "leaf": leaves[at], "proof": proof, "root": tree.root() }))
                .into_response()
        }
        None => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no proof for a listed quote",
        ),
    }
}

/// The report as the ledger stands, or the error response to give.
async fn current(api: &SettlementApi) -> Result<rates::SettlementReport, Response> {
    let read = async {
        let epochs = api.ledger.epochs().await?;
        let blocks = api.ledger.found_blocks(MAX_BLOCKS).await?;
        let quoted = api.ledger.quoted_per_epoch().await?;
        Ok::<_, crate::ledger::LedgerError>((epochs, blocks, quoted))
    };
    let (epochs, blocks, quoted) = match read.await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("settlement report: {e}");
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the ledger could not be read" })),
            )
                .into_response());
        }
    };
    let pool_work = api.ledger.metrics().pool_work();
    match rates::report(
        (api.fee_ppm, api.window_multiplier),
        &epochs,
        &blocks,
        &quoted,
        pool_work,
    ) {
        Ok(report) => Ok(report),
        Err(e) => {
            tracing::error!("settlement report: {e}");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response())
        }
    }
}
