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
    routing::{get, post},
    Json, Router,
};
use serde_json::json;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::extract::Path;
use hashpool_settlement::{
    merkle_sum::{Leaf, MerkleSumTree},
    rates::{EpochCommitment, EpochQuotes, FinalRate, RateSheet, EPOCH_TAG, RATES_TAG},
    withdrawals::{
        OfferedPayout, PayoutState, SignedPayoutOffer, PAYOUT_OFFER_MAX_SKEW_SECS, PAYOUT_OFFER_TAG,
    },
};
use tokio::sync::Semaphore;

use super::rates;
use crate::ledger::AccrualLedger;

/// Found blocks read for a report at most (every one counts: the carry runs through them all).
const MAX_BLOCKS: u32 = 1_000_000;

/// Quotes of one epoch a commitment is built from on demand at most (their tree is held in
/// memory while it is built: about 100 bytes a quote).
const MAX_EPOCH_QUOTES: u32 = 500_000;

/// Complete epochs' trees kept (a wallet's quotes span a few recent epochs).
const TREES_KEPT: usize = 4;

#[derive(Clone)]
pub struct SettlementApi {
    ledger: AccrualLedger,
    fee_ppm: u32,
    window_multiplier: u32,
    /// The pool's authority key: signs the rate sheet.
    secret_key: [u8; 32],
    /// One epoch tree built at a time.
    trees: Arc<Semaphore>,
    /// Complete epochs' trees, by epoch, at most [`TREES_KEPT`].
    kept: Arc<Mutex<HashMap<u32, Arc<EpochTree>>>>,
    /// The jd-server's payout offers, when the pool pays withdrawals and has a jd-server.
    offers: Option<PayoutOffers>,
}

/// What answering a jd-server's payout offer request needs.
#[derive(Clone)]
pub struct PayoutOffers {
    /// The height being mined.
    pub jobs: Arc<crate::jobs::JobSource>,
    /// The jd-server's authority key, x-only: requests must be signed with it.
    pub jd_server_key: [u8; 32],
    pub max_payouts: usize,
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
            kept: Arc::default(),
            offers: None,
        }
    }

    /// Answers the jd-server's payout offer requests (docs/job-declaration.md).
    pub fn with_payout_offers(mut self, offers: PayoutOffers) -> Self {
        self.offers = Some(offers);
        self
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
            .route("/api/v1/settlement/payouts", get(payouts))
            .route("/api/v1/settlement/payouts/offer", post(offer_payouts))
            .route("/api/v1/settlement/payouts/{quote_id}", get(payout))
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

/// A closed epoch's quote tree.
struct EpochTree {
    epoch: crate::ledger::LedgerEpoch,
    leaves: Vec<Leaf>,
    tree: MerkleSumTree,
    /// Its batches the mint has not answered yet: with none, the tree can no longer change.
    unanswered: u64,
}

/// Epoch `index`'s quote tree: closed epochs only (an open one's quotes still change). A
/// complete one (every batch answered) is kept, so a wallet asking for its quotes one by one
/// does not have the whole tree rebuilt for each.
async fn epoch_tree(api: &SettlementApi, index: u32) -> Result<Arc<EpochTree>, Response> {
    let kept = |api: &SettlementApi| {
        api.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&index)
            .cloned()
    };
    if let Some(tree) = kept(api) {
        return Ok(tree);
    }
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
    // Built by the request that held the turn before this one.
    if let Some(tree) = kept(api) {
        return Ok(tree);
    }
    let unanswered = api
        .ledger
        .epoch_unanswered(index)
        .await
        .map_err(unreadable)?;
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
    let built = Arc::new(EpochTree {
        epoch,
        leaves,
        tree,
        unanswered,
    });
    if unanswered == 0 {
        let mut kept = api.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= TREES_KEPT {
            if let Some(&other) = kept.keys().next() {
                kept.remove(&other);
            }
        }
        kept.insert(index, built.clone());
    }
    Ok(built)
}

/// A closed epoch's quotes, committed to and signed.
async fn epoch_commitment(State(api): State<SettlementApi>, Path(index): Path<u32>) -> Response {
    let t = match epoch_tree(&api, index).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let body = EpochQuotes {
        epoch: index,
        start_work: t.epoch.start.hashes().to_string(),
        end_work: t
            .epoch
            .end
            .map(|w| w.hashes().to_string())
            .unwrap_or_default(),
        quotes: t.leaves.len() as u64,
        unanswered: t.unanswered,
        root: t.tree.root(),
    };
    match EpochCommitment::sign(EPOCH_TAG, &api.secret_key, body) {
        Ok(signed) => Json(signed).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The answer when the ledger cannot be read (logged with `what` was being read).
fn unreadable(what: &str, e: crate::ledger::LedgerError) -> Response {
    tracing::warn!("{what}: {e}");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the ledger could not be read",
    )
}

/// Newest payouts listed at most.
const PAYOUTS_LISTED: u32 = 200;

/// The withdrawals paid in the pool's coinbases: totals by state (what is still owed on chain)
/// and the newest payouts.
async fn payouts(State(api): State<SettlementApi>) -> Response {
    let read = async {
        let totals = api.ledger.payout_totals().await?;
        let newest = api.ledger.payouts(PAYOUTS_LISTED).await?;
        Ok::<_, crate::ledger::LedgerError>((totals, newest))
    };
    match read.await {
        Ok((totals, newest)) => {
            let by_state: serde_json::Map<String, serde_json::Value> = totals
                .iter()
                .map(|(state, count, sats)| {
                    (
                        state.as_str().to_string(),
                        json!({ "count": count, "sats": sats }),
                    )
                })
                .collect();
            let owed: u64 = totals
                .iter()
                .filter(|(s, _, _)| matches!(s, PayoutState::Queued | PayoutState::Offered))
                .map(|(_, _, sats)| sats)
                .sum();
            Json(json!({
                "owed_sats": owed,
                "by_state": by_state,
                "payouts": newest.iter().map(|p| p.public()).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => unreadable("payouts", e),
    }
}

/// The jd-server asks which payouts a declared coinbase at `height` must carry: signed with
/// its key, recent, for the height the pool mines (a payout is offered at one height at a
/// time, and the chain's block there decides). The payouts are offered exactly as for the
/// pool's own templates: those already offered there, then queued ones that fit.
async fn offer_payouts(
    State(api): State<SettlementApi>,
    body: Result<Json<SignedPayoutOffer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(offers) = &api.offers else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this pool pays no withdrawals to job declarators",
        );
    };
    let Ok(Json(request)) = body else {
        return refuse(StatusCode::BAD_REQUEST, "not a signed payout offer request");
    };
    if let Err(e) = request.verify(PAYOUT_OFFER_TAG, &offers.jd_server_key) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("not the jd-server's request: {e}"),
        );
    }
    let r = &request.body;
    if hashpool_role::unix_now().abs_diff(r.at) > PAYOUT_OFFER_MAX_SKEW_SECS {
        return refuse(StatusCode::FORBIDDEN, "the request is not recent");
    }
    let mining = offers.jobs.chain().map(|c| c.height);
    if mining != Some(u64::from(r.height)) {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "the pool mines height {}, not {}",
                mining.map_or("none".to_string(), |h| h.to_string()),
                r.height
            ),
        );
    }
    match api
        .ledger
        .offer_payouts(r.height, r.value_sats, offers.max_payouts)
        .await
    {
        Ok(rows) => Json(
            rows.iter()
                .map(|p| OfferedPayout {
                    quote_id: p.quote_id.clone(),
                    sats: p.sats,
                    script: p.script.to_hex_string(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => {
            tracing::warn!("payout offer: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger could not be written",
            )
        }
    }
}

/// One withdrawal's payout, by its melt quote id.
async fn payout(State(api): State<SettlementApi>, Path(quote_id): Path<String>) -> Response {
    match api.ledger.payout(&quote_id).await {
        Ok(Some(p)) => Json(p.public()).into_response(),
        Ok(None) => refuse(
            StatusCode::NOT_FOUND,
            "no such withdrawal (the pool reads the mint's list at each chain check)",
        ),
        Err(e) => unreadable("payout", e),
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
    let t = match epoch_tree(api, index).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let (leaves, tree) = (&t.leaves, &t.tree);
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

#[cfg(test)]
mod tests {
    use hashpool_ehash::{UnitWork, Work};

    use super::*;
    use crate::{
        accepted_share::AcceptedShare, miners::tests::key, observability::miner_api::tests::get,
    };

    fn share(n: u32, work: u128) -> AcceptedShare {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&n.to_le_bytes());
        AcceptedShare {
            channel_id: 1,
            locking_key: key(1),
            share_hash: hash,
            work: Work::from_hashes(work),
            block_found: false,
            block: None,
            tip: 1,
        }
    }

    /// A POST of `body` on `app`: the status and the JSON body.
    async fn post(
        app: &Router,
        path: &str,
        body: &serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        use tower::ServiceExt as _;
        let response = app
            .clone()
            .oneshot(
                axum::http::Request::post(path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn only_the_jd_servers_recent_request_for_the_mined_height_offers_payouts() {
        use crate::miners::tests::{prev_hash, template};
        use hashpool_settlement::withdrawals::{PayoutOfferRequest, Withdrawal};

        let dir = tempfile::tempdir().unwrap();
        let unit = UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        let ledger = AccrualLedger::open(&dir.path().join("l.sqlite"), "hash", unit)
            .await
            .unwrap();
        ledger
            .record_withdrawals(vec![Withdrawal {
                quote_id: "w1".into(),
                sats: 20_000,
                address: "bcrt1q".into(),
                script: "0014751e76e8199196d454941c45d1b3a323f1433bd6".into(),
                recorded_at: 1,
            }])
            .await
            .unwrap();
        // The pool mines height 10,000 (the test template's BIP34 height).
        let jobs = Arc::new(crate::jobs::JobSource::new(bitcoin::ScriptBuf::new()));
        jobs.on_new_template(template(1, true));
        jobs.on_set_new_prev_hash(prev_hash(1, [3; 32], 0x207f_ffff));
        let jd_secret = [5u8; 32];
        let jd_key = {
            let secp = bitcoin::secp256k1::Secp256k1::signing_only();
            bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, &jd_secret)
                .unwrap()
                .x_only_public_key()
                .0
                .serialize()
        };
        let offers = PayoutOffers {
            jobs,
            jd_server_key: jd_key,
            max_payouts: 10,
        };
        let path = "/api/v1/settlement/payouts/offer";
        let request = |secret: &[u8; 32], height: u32, at: u64| {
            serde_json::to_value(
                SignedPayoutOffer::sign(
                    PAYOUT_OFFER_TAG,
                    secret,
                    PayoutOfferRequest {
                        height,
                        value_sats: 5_000_000_000,
                        at,
                    },
                )
                .unwrap(),
            )
            .unwrap()
        };
        let now = hashpool_role::unix_now();

        // A pool without a jd-server offers nothing.
        let plain = SettlementApi::new(ledger.clone(), 20_000, 8, [7; 32]).router();
        assert_eq!(
            post(&plain, path, &request(&jd_secret, 10_000, now))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let app = SettlementApi::new(ledger.clone(), 20_000, 8, [7; 32])
            .with_payout_offers(offers)
            .router();
        // Another key, an old request, another height, no signature at all: refused, and
        // nothing offered.
        for (what, body, want) in [
            (
                "another key",
                request(&[6; 32], 10_000, now),
                StatusCode::FORBIDDEN,
            ),
            (
                "old",
                request(&jd_secret, 10_000, now - 600),
                StatusCode::FORBIDDEN,
            ),
            (
                "a future height",
                request(&jd_secret, 10_050, now),
                StatusCode::CONFLICT,
            ),
            (
                "not signed",
                serde_json::json!({"height": 10_000}),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            assert_eq!(post(&app, path, &body).await.0, want, "{what}");
        }
        assert_eq!(
            ledger.payout("w1").await.unwrap().unwrap().state,
            PayoutState::Queued
        );
        // The jd-server's request for the height mined: the payout, offered there.
        let (status, body) = post(&app, path, &request(&jd_secret, 10_000, now)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body[0]["quote_id"], "w1");
        assert_eq!(body[0]["sats"], 20_000);
        let row = ledger.payout("w1").await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.height),
            (PayoutState::Offered, Some(10_000))
        );
    }

    #[tokio::test]
    async fn epoch_and_quote_requests_a_client_controls_are_refused_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let unit = UnitWork::from_work(Work::from_hashes(1_000)).unwrap();
        let ledger = AccrualLedger::open(&dir.path().join("l.sqlite"), "hash", unit)
            .await
            .unwrap();
        ledger
            .observe_network_work(Work::from_hashes(4_000))
            .await
            .unwrap();
        // Epoch 0 of 2,000 hashes: 2,500 credited, one quote; the next share turns it.
        ledger.record(share(1, 2_500)).await.await.unwrap().unwrap();
        let b = ledger.create_batches().await.unwrap();
        ledger.record_quote(&b[0].request_id, "q-0").await.unwrap();
        ledger.record(share(2, 10)).await.await.unwrap().unwrap();
        let app = SettlementApi::new(ledger.clone(), 20_000, 8, [7; 32]).router();

        let (status, body) = get(&app, "/api/v1/settlement/epochs/0").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["body"]["root"]["sum"], 2);
        let (status, body) = get(&app, "/api/v1/settlement/quotes/q-0").await;
        assert_eq!((status, body["epoch"].as_u64()), (StatusCode::OK, Some(0)));
        // The open epoch, an epoch that does not exist, one past u32, a quote id of 10 kB,
        // a quote of another epoch, a path that is no number.
        for (path, want) in [
            (
                "/api/v1/settlement/epochs/1".to_string(),
                StatusCode::NOT_FOUND,
            ),
            ("/api/v1/settlement/epochs/7".into(), StatusCode::NOT_FOUND),
            (
                "/api/v1/settlement/epochs/99999999999".into(),
                StatusCode::BAD_REQUEST,
            ),
            (
                format!("/api/v1/settlement/quotes/{}", "x".repeat(10_000)),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/v1/settlement/epochs/0/quotes/q-9".into(),
                StatusCode::NOT_FOUND,
            ),
            (
                "/api/v1/settlement/epochs/zero".into(),
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (status, _) = get(&app, &path).await;
            assert_eq!(status, want, "{}", &path[..path.len().min(60)]);
        }
        // The report still answers.
        let (status, report) = get(&app, "/api/v1/settlement").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["epochs"].as_array().map(Vec::len), Some(2));
    }
}
