//! The two charts both dashboards draw from their side's stats service: hashrate (a line) and
//! ehash issued (bars), each over the range the page's switch picks (`?range=1h|24h|7d`). The
//! server answers the series as JSON (`/chart/{name}.json`); the page draws them with uPlot
//! (values under the cursor, drag to zoom, double-click to zoom out).

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{range_secs, series, units, unix_now, upstream::Upstream};

/// The charts' titles; the range follows (`Pool hashrate, last 1h`).
pub struct Titles {
    pub hashrate: &'static str,
    pub issuance: &'static str,
}

/// A chart as the page's script draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartData {
    /// `Pool hashrate, last 1h`.
    pub title: String,
    /// What the series is called in the legend (the title without the range).
    pub label: String,
    /// The values' unit, after the SI prefix the page picks (`H/s`, `hash`).
    pub unit: String,
    /// `line` or `bars`.
    pub kind: String,
    /// The range shown: Unix seconds from and to.
    pub from: i64,
    pub to: i64,
    /// Bars: seconds each one covers.
    pub bucket_secs: Option<i64>,
    /// `[at, value]`, oldest first, within the range.
    pub points: Vec<(i64, f64)>,
}

struct Charts {
    upstream: Upstream,
    /// The stats service's HTTP API, e.g. `http://127.0.0.1:8091`.
    stats_url: String,
    titles: Titles,
}

impl Titles {
    /// `/chart/hashrate.json` and `/chart/issuance.json`, from the stats API at `stats_url`.
    pub fn routes(self, upstream: Upstream, stats_url: String) -> Router {
        let charts = Arc::new(Charts {
            upstream,
            stats_url,
            titles: self,
        });
        Router::new()
            .route("/chart/hashrate.json", get(hashrate))
            .route("/chart/issuance.json", get(issuance))
            .with_state(charts)
    }
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

async fn hashrate(State(c): State<Arc<Charts>>, Query(q): Query<RangeQuery>) -> Response {
    c.chart("hashrate", "", c.titles.hashrate, q, hashrate_line)
        .await
}

async fn issuance(State(c): State<Arc<Charts>>, Query(q): Query<RangeQuery>) -> Response {
    c.chart("issuance", "&limit=1", c.titles.issuance, q, issuance_bars)
        .await
}

/// Hashrate samples within the range; the title says the window each sample averages.
fn hashrate_line(v: &Value, title: String, label: &str, now: i64, range: i64) -> ChartData {
    let title = match v["sample_window_secs"].as_i64().filter(|w| *w > 0) {
        Some(window) => format!(
            "{title} (each point: the {} before it)",
            units::span(window)
        ),
        None => title,
    };
    ChartData {
        title,
        label: label.to_string(),
        unit: "H/s".into(),
        kind: "line".into(),
        from: now - range,
        to: now,
        bucket_secs: None,
        points: within(series(v, "samples", "hashrate"), now - range, now),
    }
}

/// Issuance buckets: each bar at its bucket's start; the oldest may start before the range.
fn issuance_bars(v: &Value, title: String, label: &str, now: i64, range: i64) -> ChartData {
    let bucket = v["bucket_secs"].as_i64().filter(|b| *b > 0).unwrap_or(60);
    ChartData {
        title,
        label: label.to_string(),
        unit: "hash".into(),
        kind: "bars".into(),
        from: now - range,
        to: now,
        bucket_secs: Some(bucket),
        points: within(series(v, "buckets", "amount"), now - range - bucket, now),
    }
}

fn within(mut points: Vec<(i64, f64)>, from: i64, to: i64) -> Vec<(i64, f64)> {
    points.retain(|(t, v)| *t > from && *t <= to && v.is_finite());
    points.sort_by_key(|p| p.0);
    points
}

impl Charts {
    /// `/api/v1/{name}?range=..{query}` from the stats service, made a chart by `make(data,
    /// title, label, now, range)`; what failed is the answer when the service does not answer
    /// (502).
    async fn chart(
        &self,
        name: &str,
        query: &str,
        label: &str,
        q: RangeQuery,
        make: impl FnOnce(&Value, String, &str, i64, i64) -> ChartData,
    ) -> Response {
        let (range_label, range) = range_secs(q.range.as_deref());
        let url = format!(
            "{}/api/v1/{name}?range={range_label}{query}",
            self.stats_url
        );
        match self.upstream.get(&url).await {
            Ok(v) => {
                let title = format!("{label}, last {range_label}");
                Json(make(&v, title, label, unix_now(), range)).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hashrate_points_are_those_of_the_range_oldest_first() {
        let v = json!({"samples": [
            {"at": 1_000, "hashrate": 5.0},
            {"at": 9_000, "hashrate": 7.0},
            {"at": 8_000, "hashrate": 6.0},
            {"at": 11_000, "hashrate": 1.0},
        ]});
        let c = hashrate_line(
            &v,
            "Pool hashrate, last 1h".into(),
            "Pool hashrate",
            10_000,
            3_600,
        );
        assert_eq!(c.points, vec![(8_000, 6.0), (9_000, 7.0)]);
        assert_eq!(c.title, "Pool hashrate, last 1h");
        let mut v = v;
        v["sample_window_secs"] = json!(300);
        let c = hashrate_line(
            &v,
            "Pool hashrate, last 1h".into(),
            "Pool hashrate",
            10_000,
            3_600,
        );
        assert_eq!(
            c.title,
            "Pool hashrate, last 1h (each point: the 5 min before it)"
        );
        assert_eq!((c.from, c.to), (6_400, 10_000));
        assert_eq!((c.kind.as_str(), c.unit.as_str()), ("line", "H/s"));
    }

    #[test]
    fn issuance_keeps_the_bucket_that_starts_before_the_range() {
        let v = json!({"bucket_secs": 600, "buckets": [
            {"at": 6_000, "amount": 3.0},
            {"at": 5_000, "amount": 9.0},
            {"at": 9_600, "amount": 4.0},
        ]});
        let c = issuance_bars(
            &v,
            "ehash issued, last 1h".into(),
            "ehash issued",
            10_000,
            3_600,
        );
        // The bucket at 6,000 covers 6,000..6,600: partly in the range from 6,400.
        assert_eq!(c.points, vec![(6_000, 3.0), (9_600, 4.0)]);
        assert_eq!(c.bucket_secs, Some(600));
        assert_eq!(c.kind, "bars");
    }
}
