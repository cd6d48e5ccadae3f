//! The two charts both dashboards draw from their side's stats service: hashrate (a line) and
//! ehash issued (bars), each over the range the page's switch picks (`?range=1h|24h|7d`).

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    response::Response,
    routing::get,
    Router,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{chart, range_secs, series, svg_response, unix_now, upstream::Upstream};

/// The charts' titles; the range follows (`Pool hashrate, last 1h`).
pub struct Titles {
    pub hashrate: &'static str,
    pub issuance: &'static str,
}

struct Charts {
    upstream: Upstream,
    /// The stats service's HTTP API, e.g. `http://127.0.0.1:8091`.
    stats_url: String,
    titles: Titles,
}

impl Titles {
    /// `/chart/hashrate.svg` and `/chart/issuance.svg`, from the stats API at `stats_url`.
    pub fn routes(self, upstream: Upstream, stats_url: String) -> Router {
        let charts = Arc::new(Charts {
            upstream,
            stats_url,
            titles: self,
        });
        Router::new()
            .route("/chart/hashrate.svg", get(hashrate))
            .route("/chart/issuance.svg", get(issuance))
            .with_state(charts)
    }
}

#[derive(Deserialize)]
struct RangeQuery {
    range: Option<String>,
}

async fn hashrate(State(c): State<Arc<Charts>>, Query(q): Query<RangeQuery>) -> Response {
    c.svg("hashrate", "", c.titles.hashrate, q, hashrate_line)
        .await
}

async fn issuance(State(c): State<Arc<Charts>>, Query(q): Query<RangeQuery>) -> Response {
    c.svg("issuance", "&limit=1", c.titles.issuance, q, issuance_bars)
        .await
}

fn hashrate_line(v: &Value, title: &str, now: i64, range: i64) -> Result<String, String> {
    chart::line_chart(title, "H/s", &series(v, "samples", "hashrate"), now, range)
}

fn issuance_bars(v: &Value, title: &str, now: i64, range: i64) -> Result<String, String> {
    let bucket = v["bucket_secs"].as_i64().unwrap_or(60);
    chart::bar_chart(
        title,
        "hash",
        &series(v, "buckets", "amount"),
        bucket,
        now,
        range,
    )
}

impl Charts {
    /// `/api/v1/{name}?range=..{query}` from the stats service, drawn by `draw(data, title, now,
    /// range)`; what failed is the answer when the service or the drawing does (502).
    async fn svg(
        &self,
        name: &str,
        query: &str,
        title: &str,
        q: RangeQuery,
        draw: impl FnOnce(&Value, &str, i64, i64) -> Result<String, String>,
    ) -> Response {
        let (label, range) = range_secs(q.range.as_deref());
        let url = format!("{}/api/v1/{name}?range={label}{query}", self.stats_url);
        let title = format!("{title}, last {label}");
        let svg = async { draw(&self.upstream.get(&url).await?, &title, unix_now(), range) };
        svg_response(svg.await)
    }
}
