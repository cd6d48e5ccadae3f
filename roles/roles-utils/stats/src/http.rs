//! The stats service's HTTP JSON API (what the web roles read) and its `/metrics`.
//! Errors are JSON `{"error": "..."}` with a fitting status.

use std::sync::{atomic::Ordering, Arc};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ingest::{now_secs, IngestStats},
    store::{reporter_subject, Store, StoreError, TOTAL},
};

#[derive(Clone)]
struct ApiState {
    service: &'static str,
    store: Store,
    stats: Arc<IngestStats>,
    /// The window each hashrate sample averages over (`hashrate_window_secs`).
    sample_window_secs: u64,
}

/// The hashrate windows `/api/v1/hashrate` answers unless `?windows=` names others.
pub const DEFAULT_WINDOWS: &str = "1m,1h,1d";
/// At most this many windows in one `?windows=`.
const MAX_WINDOWS: usize = 8;

/// `1m,1h,1d`: each a [`parse_range`], at most [`MAX_WINDOWS`].
pub fn parse_windows(text: &str) -> Result<Vec<(String, i64)>, String> {
    let windows: Vec<&str> = text.split(',').map(str::trim).collect();
    if windows.len() > MAX_WINDOWS {
        return Err(format!(
            "{} windows asked: at most {MAX_WINDOWS}",
            windows.len()
        ));
    }
    windows
        .into_iter()
        .map(|w| parse_range(w).map(|secs| (w.to_string(), secs)))
        .collect()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn store_error(e: StoreError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// `1h`, `24h`, `7d`, `90m`, `30s` or plain seconds.
pub fn parse_range(text: &str) -> Result<i64, String> {
    let bad = || format!("bad range `{text}`: use e.g. 1h, 24h, 7d or seconds");
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(scale) {
        Some(secs) if secs > 0 && secs <= 366 * 86_400 => Ok(secs),
        _ => Err(bad()),
    }
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
    subject: Option<String>,
    reporter: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
    windows: Option<String>,
}

impl RangeQuery {
    /// The range asked for and where it starts; the error is for a 400.
    fn since(&self, default: &str) -> Result<(String, i64), String> {
        let range = self.range.clone().unwrap_or_else(|| default.to_string());
        let secs = parse_range(&range)?;
        Ok((range, now_secs() - secs))
    }

    fn limit(&self) -> Result<i64, String> {
        match self.limit.unwrap_or(100) {
            n @ 1..=1000 => Ok(n),
            n => Err(format!("limit {n} is not between 1 and 1000")),
        }
    }
}

pub fn router(
    service: &'static str,
    store: Store,
    stats: Arc<IngestStats>,
    sample_window_secs: u64,
) -> Router {
    let state = ApiState {
        service,
        store,
        stats,
        sample_window_secs,
    };
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/hashrate", get(hashrate))
        .route("/api/v1/subjects", get(subjects))
        .route("/api/v1/blocks", get(blocks))
        .route("/api/v1/network", get(network))
        .route("/api/v1/issuance", get(issuance))
        .route("/api/v1/balance", get(balance))
        .route("/api/v1/totals", get(totals))
        .with_state(state)
}

async fn health(State(s): State<ApiState>) -> Response {
    match s.store.health().await {
        Ok(rows) => Json(json!({
            "status": "ok",
            "role": s.service,
            "version": hashpool_metrics::VERSION,
            "service": s.service,
            "now": now_secs(),
            "reporters_connected": s.stats.reporters_connected.load(Ordering::Relaxed),
            "services": rows,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

/// `?subject=` a subject id (`reporter/channel:3`), or `?reporter=` a reporter's own total;
/// without either, everything reported. The samples of `?range=` (each the average over
/// `sample_window_secs`) and the average over each of `?windows=` ending now.
async fn hashrate(State(s): State<ApiState>, Query(q): Query<RangeQuery>) -> Response {
    let (range, since) = match q.since("1h") {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let windows = match parse_windows(q.windows.as_deref().unwrap_or(DEFAULT_WINDOWS)) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let subject = match (&q.subject, &q.reporter) {
        (Some(subject), _) => subject.clone(),
        (None, Some(reporter)) => reporter_subject(reporter),
        (None, None) => TOTAL.to_string(),
    };
    let answer = tokio::try_join!(
        s.store.hashrate(&subject, since),
        s.store.hashrate_windows(&subject, now_secs(), &windows)
    );
    match answer {
        Ok((samples, windows)) => Json(json!({
            "subject": subject,
            "range": range,
            "sample_window_secs": s.sample_window_secs,
            "samples": samples.iter().map(|(at, h)| json!({"at": at, "hashrate": h})).collect::<Vec<_>>(),
            "windows": windows,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn subjects(State(s): State<ApiState>, Query(q): Query<RangeQuery>) -> Response {
    match s.store.subjects(q.kind.as_deref()).await {
        Ok(rows) => Json(json!({ "subjects": rows })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn blocks(State(s): State<ApiState>, Query(q): Query<RangeQuery>) -> Response {
    let limit = match q.limit() {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match tokio::try_join!(s.store.blocks(limit), s.store.blocks_total()) {
        Ok((rows, total)) => Json(json!({ "total": total, "blocks": rows })).into_response(),
        Err(e) => store_error(e),
    }
}

/// The chain being mined (height, difficulty, when the tip changed), the last block found and
/// the effort of the round since it: the accepted work since that block over the difficulty.
async fn network(State(s): State<ApiState>) -> Response {
    match tokio::try_join!(s.store.network(), s.store.blocks(1), s.store.work_total()) {
        Ok((network, last, work_total)) => {
            let last = last.into_iter().next();
            let since =
                (work_total - last.as_ref().and_then(|b| b.work_total).unwrap_or(0.0)).max(0.0);
            let effort = network
                .as_ref()
                .filter(|n| n.difficulty > 0.0)
                .map(|n| since / n.difficulty);
            Json(json!({
                "network": network,
                "last_block": last,
                "work_since_last_block": since,
                "effort": effort,
            }))
            .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn issuance(State(s): State<ApiState>, Query(q): Query<RangeQuery>) -> Response {
    let ((range, since), limit) = match (q.since("24h"), q.limit()) {
        (Ok(x), Ok(l)) => (x, l),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let span = now_secs() - since;
    // About 60 bars whatever the range, on whole minutes.
    let bucket = ((span / 60) / 60 * 60).max(60);
    let result = async {
        let total = s.store.issuance_total().await?;
        let recent = s.store.issuance(since, limit).await?;
        let buckets = s.store.issuance_buckets(since, bucket).await?;
        Ok::<_, StoreError>((total, recent, buckets))
    }
    .await;
    match result {
        Ok(((amount, count), recent, buckets)) => Json(json!({
            "range": range,
            "total_amount": amount,
            "total_count": count,
            "bucket_secs": bucket,
            "buckets": buckets.iter().map(|(at, a)| json!({"at": at, "amount": a})).collect::<Vec<_>>(),
            "recent": recent,
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn balance(State(s): State<ApiState>, Query(q): Query<RangeQuery>) -> Response {
    let (range, since) = match q.since("24h") {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match s.store.balances(since).await {
        Ok(rows) => Json(json!({
            "range": range,
            "samples": rows.iter().map(|(at, a)| json!({"at": at, "amount": a})).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn totals(State(s): State<ApiState>) -> Response {
    match s.store.totals().await {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|(name, value)| (name, json!(value)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_nonsense_is_refused() {
        assert_eq!(parse_range("1h"), Ok(3600));
        assert_eq!(parse_range("24h"), Ok(86_400));
        assert_eq!(parse_range("7d"), Ok(604_800));
        assert_eq!(parse_range("90"), Ok(90));
        for bad in [
            "",
            "h",
            "0h",
            "-1h",
            "1y",
            "1h30m",
            "99999999999999999999d",
            "400d",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_parse_and_too_many_or_bad_ones_are_refused() {
        assert_eq!(
            parse_windows(DEFAULT_WINDOWS),
            Ok(vec![
                ("1m".to_string(), 60),
                ("1h".to_string(), 3600),
                ("1d".to_string(), 86_400)
            ])
        );
        assert_eq!(
            parse_windows(" 10m ,24h"),
            Ok(vec![("10m".into(), 600), ("24h".into(), 86_400)])
        );
        assert!(parse_windows("1m,,1h").is_err());
        assert!(parse_windows("1m,1y").is_err());
        assert!(parse_windows(&["1m"; 9].join(",")).is_err());
        assert_eq!(parse_windows(&["1m"; 8].join(",")).map(|w| w.len()), Ok(8));
    }
}
