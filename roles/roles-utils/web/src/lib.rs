//! What `web-pool` and `web-proxy` share.
//!
//! - [`assets`]: uPlot, the charting library, served by the binary (no CDN): the pages need
//!   nothing from the internet.
//! - [`page`]: the HTML shell, styles and the small script that refreshes a page by itself and
//!   draws its charts.
//! - [`upstream`]: JSON from the stats services, the wallet API and monitoring endpoints, with a
//!   short timeout so a role that is down shows as down instead of stalling the page.
//! - [`units`]: hashrates, difficulties and times as people read them.
//! - [`html`]: escaping and tables for pages rendered by the server.
//! - [`stats_charts`]: the hashrate and issuance charts both pages draw from their stats service;
//!   [`hashrate_windows`]: the hashrate cards over the last minute, hour and day.
//! - [`dashboard`], [`cli`]: serving a page behind the host [`guard`], and the binaries' command
//!   line and run loop.

pub mod assets;
pub mod cli;
pub mod dashboard;
pub mod guard;
pub mod hashrate_windows;
pub mod html;
pub mod page;
pub mod settings;
pub mod stats_charts;
pub mod units;
pub mod upstream;

pub use dashboard::{Dashboard, Running};

/// Chart ranges the pages offer (label, seconds).
pub const RANGES: [(&str, i64); 3] = [("1h", 3_600), ("24h", 86_400), ("7d", 604_800)];

/// The range `text` names, or 1 h.
pub fn range_secs(text: Option<&str>) -> (&'static str, i64) {
    RANGES
        .iter()
        .copied()
        .find(|(label, _)| Some(*label) == text)
        .unwrap_or(RANGES[0])
}

/// Points of a stats API series: `v[list]` = `[{"at": .., field: ..}]`.
pub fn series(v: &serde_json::Value, list: &str, field: &str) -> Vec<(i64, f64)> {
    v[list]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r["at"].as_i64()?, r[field].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds since the Unix epoch, as the charts' timestamps.
pub fn unix_now() -> i64 {
    i64::try_from(hashpool_role::unix_now()).unwrap_or(i64::MAX)
}
