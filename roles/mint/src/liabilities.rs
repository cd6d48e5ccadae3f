//! The mint's proof-of-liabilities report per epoch (docs/settlement.md, "Proof of
//! liabilities"): `GET /v1/hashpool/epochs/{epoch}/report`, signed with the mint's authority
//! key. Its quote tree is built exactly as the pool builds its epoch commitment, so a wallet
//! checks one against the other (`hashpool_settlement::liabilities::check_mint_report`).
//!
//! Each report reads every quote of the mint's database (CDK lists them whole), and anyone may
//! ask for one: reports are built one at a time, and a report built less than
//! [`REPORT_FRESH`] ago is answered again instead of built anew.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use cdk::nuts::{MeltQuoteState, PaymentMethod};
use cdk_common::{error::ErrorCode, mint::MeltPaymentRequest};
use hashpool_settlement::{
    liabilities::{MintEpochReport, MintReport, MINT_EPOCH_TAG},
    merkle_sum::{Leaf, MerkleSumTree},
};

use crate::cashu_error::{cashu_error, UNAVAILABLE};
use crate::epochs::EpochSignatory;
use crate::issuer::MintDb;
use crate::processor::EHASH_METHOD;
use crate::redeem::sat_lookup_id;

pub const REPORT_PATH: &str = "/v1/hashpool/epochs/{epoch}/report";

/// An epoch that is not a number, or of which the mint issued nothing: 20102, Hashpool's own
/// code (a CDK wallet reports the `detail`).
pub const NO_SUCH_EPOCH: ErrorCode = ErrorCode::Unknown(20102);

/// How long a built report is answered again.
pub const REPORT_FRESH: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct LiabilitiesState {
    pub db: MintDb,
    pub epochs: Arc<EpochSignatory>,
    /// The mint's authority secret key: signs the reports.
    pub secret_key: [u8; 32],
    /// Held while a report is built (one at a time); the latest built, per epoch.
    pub building: Arc<tokio::sync::Mutex<HashMap<u32, (Instant, MintReport)>>>,
}

/// The epoch's report, as the database stands.
pub async fn build(
    db: &MintDb,
    epochs: &EpochSignatory,
    epoch: u32,
) -> Result<Option<MintEpochReport>, String> {
    let Some(keyset) = epochs.keyset_of(epoch) else {
        return Ok(None);
    };
    let ehash = PaymentMethod::Custom(EHASH_METHOD.into());
    let mut leaves: Vec<Leaf> = db
        .get_mint_quotes()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|q| q.payment_method == ehash)
        .filter(|q| ext_mint_quote::epoch_of_quote_request(&q.request) == Ok(Some(epoch)))
        .filter_map(|q| {
            let amount = q.amount_paid().value();
            let key = q.pubkey?;
            (amount > 0).then(|| Leaf {
                id: q.id.to_string(),
                key: key.to_hex(),
                amount,
            })
        })
        .collect();
    leaves.sort_by(|a, b| a.id.cmp(&b.id));
    let tree = MerkleSumTree::new(&leaves).map_err(|e| e.to_string())?;
    let (mut redeemed, mut sats_issued) = (0u64, 0u64);
    let (mut mint_sats_issued, mut sats_withdrawn) = (0u64, 0u64);
    for melt in db.get_melt_quotes().await.map_err(|e| e.to_string())? {
        let MeltPaymentRequest::Custom { method, request } = &melt.request else {
            continue;
        };
        if melt.state != MeltQuoteState::Paid {
            continue;
        }
        if method == ext_mint_quote::WITHDRAW_METHOD {
            sats_withdrawn = sats_withdrawn.saturating_add(melt.amount().value());
            continue;
        }
        let Ok(redemption) = ext_mint_quote::parse_redeem_request(request) else {
            continue;
        };
        if method != ext_mint_quote::REDEEM_METHOD {
            continue;
        }
        let sat = db
            .get_mint_quote_by_request_lookup_id(&sat_lookup_id(&melt.id.to_string()))
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |q| q.amount_paid().value());
        mint_sats_issued = mint_sats_issued.saturating_add(sat);
        if redemption.epoch == epoch {
            redeemed = redeemed.saturating_add(melt.amount().value());
            sats_issued = sats_issued.saturating_add(sat);
        }
    }
    let root = tree.root();
    Ok(Some(MintEpochReport {
        epoch,
        keyset: keyset.to_string(),
        quotes: leaves.len() as u64,
        issued: root.sum,
        root,
        redeemed,
        outstanding: root.sum.saturating_sub(redeemed),
        sats_issued,
        mint_sats_issued,
        sats_withdrawn,
    }))
}

pub async fn report(State(state): State<LiabilitiesState>, Path(epoch): Path<String>) -> Response {
    let Ok(epoch) = epoch.parse::<u32>() else {
        return cashu_error(
            StatusCode::BAD_REQUEST,
            NO_SUCH_EPOCH,
            "the epoch is a number from 0 to 4294967295",
        );
    };
    let mut built = state.building.lock().await;
    if let Some((at, report)) = built.get(&epoch) {
        if at.elapsed() < REPORT_FRESH {
            return Json(report.clone()).into_response();
        }
    }
    match build(&state.db, &state.epochs, epoch).await {
        Ok(Some(body)) => match MintReport::sign(MINT_EPOCH_TAG, &state.secret_key, body) {
            Ok(signed) => {
                // Epochs a client never asks for again are not kept.
                built.retain(|_, (at, _)| at.elapsed() < REPORT_FRESH);
                built.insert(epoch, (Instant::now(), signed.clone()));
                Json(signed).into_response()
            }
            Err(e) => cashu_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                UNAVAILABLE,
                e.to_string(),
            ),
        },
        Ok(None) => cashu_error(
            StatusCode::NOT_FOUND,
            NO_SUCH_EPOCH,
            format!("this mint has issued no ehash of epoch {epoch}"),
        ),
        Err(e) => cashu_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, e),
    }
}
