//! `GET /api/v1/settlement` on the miner API's address: the epochs (state, ehash quoted,
//! reward, rate once final), the found blocks with their windows and what each paid, the fee
//! and the carry, as the ledger's records stand. `GET /api/v1/settlement/rates`: the final
//! epochs' rates, signed with the pool's authority key.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::json;

use hashpool_settlement::rates::{FinalRate, RateSheet};

use super::rates;
use crate::ledger::AccrualLedger;

/// Found blocks read for a report at most (every one counts: the carry runs through them all).
const MAX_BLOCKS: u32 = 1_000_000;

#[derive(Clone)]
pub struct SettlementApi {
    ledger: AccrualLedger,
    fee_ppm: u32,
    window_multiplier: u32,
    /// The pool's authority key: signs the rate sheet.
    secret_key: [u8; 32],
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
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/settlement", get(settlement))
            .route("/api/v1/settlement/rates", get(signed_rates))
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
    match RateSheet::sign(&api.secret_key, rates) {
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
