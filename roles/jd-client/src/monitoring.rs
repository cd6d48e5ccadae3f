//! The jd-client's monitoring endpoint (`jd_client.monitoring_address`): Prometheus `/metrics`
//! (names in docs/metrics.md) and `/api/v1/status` (its links, whether its miners are on a
//! declared job, counters and the last blocks found), for operators and `hashpool up`.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use axum::{routing::get, Json, Router};
use hashpool_metrics::Exporter;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::stats::JdClientStats;

/// The counters, each with its metric name and help.
/// A metric's name, help, and the stat it reads.
type Metric<T> = (&'static str, &'static str, fn(&JdClientStats) -> &T);

const COUNTERS: [Metric<AtomicU64>; 12] = [
    (
        "hashpool_jdc_tokens_allocated_total",
        "Job tokens the jd-server allocated.",
        |s| &s.tokens_allocated,
    ),
    (
        "hashpool_jdc_jobs_declared_total",
        "Jobs the jd-server accepted.",
        |s| &s.jobs_declared,
    ),
    (
        "hashpool_jdc_declarations_refused_total",
        "Jobs the jd-server refused.",
        |s| &s.declarations_refused,
    ),
    (
        "hashpool_jdc_custom_jobs_set_total",
        "Declared jobs the pool set on the channel.",
        |s| &s.custom_jobs_set,
    ),
    (
        "hashpool_jdc_custom_jobs_refused_total",
        "Declared jobs the pool refused.",
        |s| &s.custom_jobs_refused,
    ),
    (
        "hashpool_jdc_shares_accepted_total",
        "Miners' shares that met their channel's target.",
        |s| &s.shares_accepted,
    ),
    (
        "hashpool_jdc_shares_rejected_total",
        "Miners' shares refused by the jd-client.",
        |s| &s.shares_rejected,
    ),
    (
        "hashpool_jdc_shares_forwarded_total",
        "Shares sent to the pool.",
        |s| &s.shares_forwarded,
    ),
    (
        "hashpool_jdc_shares_forwarded_declared_total",
        "Shares sent to the pool on declared jobs.",
        |s| &s.shares_forwarded_declared,
    ),
    (
        "hashpool_jdc_pool_shares_accepted_total",
        "Forwarded shares the pool accepted.",
        |s| &s.pool_shares_accepted,
    ),
    (
        "hashpool_jdc_pool_shares_rejected_total",
        "Forwarded shares the pool refused.",
        |s| &s.pool_shares_rejected,
    ),
    (
        "hashpool_jdc_blocks_found_total",
        "Blocks found on declared jobs (submitted to the template provider and the jd-server).",
        |s| &s.blocks_found,
    ),
];

const FLAGS: [Metric<AtomicBool>; 4] = [
    (
        "hashpool_jdc_template_provider_connected",
        "1 while the template provider is connected.",
        |s| &s.tp_connected,
    ),
    (
        "hashpool_jdc_jd_server_connected",
        "1 while the jd-server is connected.",
        |s| &s.jds_connected,
    ),
    (
        "hashpool_jdc_pool_connected",
        "1 while the pool channel is open.",
        |s| &s.pool_connected,
    ),
    (
        "hashpool_jdc_mining_declared",
        "1 while miners mine a declared job (0: the pool's job).",
        |s| &s.mining_declared,
    ),
];

pub fn exporter(
    stats: Arc<JdClientStats>,
    minter: Option<hashpool_wallet::Minter>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::new();
    for (name, help, pick) in COUNTERS {
        let s = stats.clone();
        e.counter(name, help, move || pick(&s).load(Ordering::Relaxed))?;
    }
    for (name, help, pick) in FLAGS {
        let s = stats.clone();
        e.gauge(name, help, move || {
            f64::from(u8::from(pick(&s).load(Ordering::Relaxed)))
        })?;
    }
    let s = stats.clone();
    e.gauge(
        "hashpool_jdc_miner_channels",
        "Miners' channels open on the jd-client.",
        move || s.channels.load(Ordering::Relaxed) as f64,
    )?;
    if let Some(minter) = minter {
        hashpool_wallet::register_metrics(&mut e, minter)?;
    }
    Ok(e)
}

fn status_router(stats: Arc<JdClientStats>) -> Router {
    Router::new().route(
        "/api/v1/status",
        get(move || {
            let s = stats.clone();
            async move {
                let flag = |b: &AtomicBool| b.load(Ordering::Relaxed);
                let counters: serde_json::Map<String, serde_json::Value> = COUNTERS
                    .iter()
                    .map(|(name, _, pick)| {
                        let key = name
                            .trim_start_matches("hashpool_jdc_")
                            .trim_end_matches("_total");
                        (key.to_string(), json!(pick(&s).load(Ordering::Relaxed)))
                    })
                    .collect();
                let blocks: Vec<_> = s
                    .blocks()
                    .iter()
                    .rev()
                    .take(10)
                    .map(|b| {
                        json!({
                            "hash": b.hash.to_string(),
                            "template_id": b.template_id,
                            "transactions": b.txids.len(),
                        })
                    })
                    .collect();
                Json(json!({
                    "template_provider_connected": flag(&s.tp_connected),
                    "jd_server_connected": flag(&s.jds_connected),
                    "pool_connected": flag(&s.pool_connected),
                    "mining": if flag(&s.mining_declared) { "declared" } else { "pool" },
                    "miner_channels": s.channels.load(Ordering::Relaxed),
                    "counters": counters,
                    "last_blocks": blocks,
                }))
            }
        }),
    )
}

/// Serves `/metrics` and `/api/v1/status` on `address` until `shutdown`; returns the bound
/// address.
pub async fn serve(
    address: SocketAddr,
    stats: Arc<JdClientStats>,
    minter: Option<hashpool_wallet::Minter>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let app = exporter(stats.clone(), minter)?
        .router()
        .merge(status_router(stats));
    Ok(hashpool_metrics::serve(address, app, shutdown).await?)
}
