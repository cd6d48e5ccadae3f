//! `GET /api/v1/settlement` on the miner API's address: the epochs (state, ehash quoted,
//! reward, rate once final), the found blocks with their windows and what each paid, the fee
//! and the carry, as the ledger's records stand.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use super::rates;
use crate::ledger::AccrualLedger;

/// Found blocks read for a report at most (every one counts: the carry runs through them all).
const MAX_BLOCKS: u32 = 1_000_000;

#[derive(Clone)]
pub struct SettlementApi {
    ledger: AccrualLedger,
    fee_ppm: u32,
    window_multiplier: u32,
}

impl SettlementApi {
    pub fn new(ledger: AccrualLedger, fee_ppm: u32, window_multiplier: u32) -> Self {
        Self {
            ledger,
            fee_ppm,
            window_multiplier,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/settlement", get(settlement))
            .with_state(self)
    }
}

async fn settlement(State(api): State<SettlementApi>) -> Response {
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
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "the ledger could not be read" })),
            )
                .into_response();
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
        Ok(report) => Json(report).into_response(),
        Err(e) => {
            tracing::error!("settlement report: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response()
        }
    }
}
