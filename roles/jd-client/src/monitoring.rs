//! The jd-client's monitoring endpoint (`jd_client.monitoring_address`): Prometheus `/metrics`
//! (names in docs/metrics.md), `/api/v1/health`, and `/api/v1/status` (its links, whether its
//! miners are on a declared job, counters and the last blocks found) for operators and
//! `hashpool up`.

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

/// A counter's key in `/api/v1/status` and the stat it reads.
type Counter = (&'static str, fn(&JdClientStats) -> &AtomicU64);

/// Every counter, by its key in the status JSON.
const COUNTERS: [Counter; 12] = [
    ("tokens_allocated", |s| &s.tokens_allocated),
    ("jobs_declared", |s| &s.jobs_declared),
    ("declarations_refused", |s| &s.declarations_refused),
    ("custom_jobs_set", |s| &s.custom_jobs_set),
    ("custom_jobs_refused", |s| &s.custom_jobs_refused),
    ("shares_accepted", |s| &s.shares_accepted),
    ("shares_rejected", |s| &s.shares_rejected),
    ("shares_forwarded", |s| &s.shares_forwarded),
    ("shares_forwarded_declared", |s| {
        &s.shares_forwarded_declared
    }),
    ("pool_shares_accepted", |s| &s.pool_shares_accepted),
    ("pool_shares_rejected", |s| &s.pool_shares_rejected),
    ("blocks_found", |s| &s.blocks_found),
];

/// A metric's name, help, and the stat it reads.
type Metric<T> = (&'static str, &'static str, fn(&JdClientStats) -> &T);

const PLAIN_COUNTERS: [Metric<AtomicU64>; 2] = [
    (
        "hashpool_jd_client_tokens_allocated_total",
        "Job tokens the jd-server allocated.",
        |s| &s.tokens_allocated,
    ),
    (
        "hashpool_jd_client_blocks_found_total",
        "Blocks found on declared jobs (submitted to the template provider and the jd-server).",
        |s| &s.blocks_found,
    ),
];

/// A counter with one label: name, help, label, and each label value with its stat.
type Labelled = (
    &'static str,
    &'static str,
    &'static str,
    [(&'static str, fn(&JdClientStats) -> u64); 2],
);

const LABELLED_COUNTERS: [Labelled; 5] = [
    (
        "hashpool_jd_client_declarations_total",
        "Job declarations by the jd-server's answer.",
        "outcome",
        [
            ("accepted", |s| s.jobs_declared.load(Ordering::Relaxed)),
            ("refused", |s| {
                s.declarations_refused.load(Ordering::Relaxed)
            }),
        ],
    ),
    (
        "hashpool_jd_client_custom_jobs_total",
        "Declared jobs by the pool's answer (set on the channel, refused).",
        "outcome",
        [
            ("set", |s| s.custom_jobs_set.load(Ordering::Relaxed)),
            ("refused", |s| s.custom_jobs_refused.load(Ordering::Relaxed)),
        ],
    ),
    (
        "hashpool_jd_client_shares_total",
        "Miners' shares by the jd-client's verdict.",
        "outcome",
        [
            ("accepted", |s| s.shares_accepted.load(Ordering::Relaxed)),
            ("rejected", |s| s.shares_rejected.load(Ordering::Relaxed)),
        ],
    ),
    (
        "hashpool_jd_client_shares_forwarded_total",
        "Shares sent to the pool, by the job they are on (declared, the pool's).",
        "job",
        [
            ("declared", |s| {
                s.shares_forwarded_declared.load(Ordering::Relaxed)
            }),
            ("pool", |s| {
                s.shares_forwarded
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.shares_forwarded_declared.load(Ordering::Relaxed))
            }),
        ],
    ),
    (
        "hashpool_jd_client_pool_shares_total",
        "Forwarded shares by the pool's verdict.",
        "outcome",
        [
            ("accepted", |s| {
                s.pool_shares_accepted.load(Ordering::Relaxed)
            }),
            ("rejected", |s| {
                s.pool_shares_rejected.load(Ordering::Relaxed)
            }),
        ],
    ),
];

const FLAGS: [Metric<AtomicBool>; 4] = [
    (
        "hashpool_jd_client_template_provider_connected",
        "1 while the template provider is connected.",
        |s| &s.tp_connected,
    ),
    (
        "hashpool_jd_client_jd_server_connected",
        "1 while the jd-server is connected.",
        |s| &s.jds_connected,
    ),
    (
        "hashpool_jd_client_pool_connected",
        "1 while the pool channel is open.",
        |s| &s.pool_connected,
    ),
    (
        "hashpool_jd_client_mining_declared",
        "1 while miners mine a declared job (0: the pool's job).",
        |s| &s.mining_declared,
    ),
];

pub fn exporter(
    stats: Arc<JdClientStats>,
    minter: Option<hashpool_wallet::Minter>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::for_role("jd-client")?;
    for (name, help, pick) in PLAIN_COUNTERS {
        let s = stats.clone();
        e.counter(name, help, move || pick(&s).load(Ordering::Relaxed))?;
    }
    for (name, help, label, series) in LABELLED_COUNTERS {
        let s = stats.clone();
        e.counter_vec(name, help, &[label], move || {
            series
                .iter()
                .map(|(value, read)| (vec![value.to_string()], read(&s)))
                .collect()
        })?;
    }
    for (name, help, pick) in FLAGS {
        let s = stats.clone();
        e.gauge(name, help, move || {
            f64::from(u8::from(pick(&s).load(Ordering::Relaxed)))
        })?;
    }
    let s = stats.clone();
    e.gauge(
        "hashpool_jd_client_miner_channels",
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
                    .map(|(key, pick)| (key.to_string(), json!(pick(&s).load(Ordering::Relaxed))))
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

/// Serves `/metrics`, `/api/v1/health` and `/api/v1/status` on `address` until `shutdown`;
/// returns the bound address.
pub async fn serve(
    address: SocketAddr,
    stats: Arc<JdClientStats>,
    minter: Option<hashpool_wallet::Minter>,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let app = exporter(stats.clone(), minter)?
        .router()
        .merge(status_router(stats))
        .merge(hashpool_metrics::health_router("jd-client"));
    Ok(hashpool_metrics::serve(address, app, shutdown).await?)
}
