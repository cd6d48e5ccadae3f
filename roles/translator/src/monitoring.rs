//! The translator's monitoring endpoint (`translator.monitoring_address`): Prometheus
//! `/metrics`, `/api/v1/health` and a JSON status for dashboards. Per-miner series are left out of `/metrics` on
//! purpose: thousands of miners would make thousands of series.

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc},
};

use axum::{routing::get, Json, Router};
use hashpool_metrics::Exporter;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{ChannelMode, TranslatorStats};

/// Every metric the translator exports (names documented in docs/metrics.md).
pub fn exporter(
    stats: Arc<TranslatorStats>,
    minter: Option<hashpool_wallet::Minter>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::for_role("translator")?;
    let read = |pick: fn(&TranslatorStats) -> &AtomicU64| {
        let stats = stats.clone();
        move || TranslatorStats::get(pick(&stats))
    };
    e.gauge(
        "hashpool_translator_sv1_connections",
        "SV1 connections open.",
        {
            let r = read(|s| &s.connections);
            move || r() as f64
        },
    )?
    .gauge(
        "hashpool_translator_hashrate_hashes_per_second",
        "Sum of the authorized SV1 miners' hashrate as vardiff estimates it.",
        {
            let r = read(|s| &s.miners_hashrate);
            move || r() as f64
        },
    )?
    .gauge(
        "hashpool_translator_pool_connected",
        "1 while a pool connection is set up.",
        {
            let r = read(|s| &s.pool_connected);
            move || r() as f64
        },
    )?
    .counter(
        "hashpool_translator_pool_connections_total",
        "Pool connections set up since start.",
        read(|s| &s.pool_connections),
    )?
    .counter(
        "hashpool_translator_shares_forwarded_total",
        "Shares sent to the pool.",
        read(|s| &s.shares_forwarded),
    )?
    .counter_vec(
        "hashpool_translator_shares_total",
        "Miners' shares by outcome: below_channel_target (answered here), accepted (by the pool), \
         refused_upstream (by the pool), unjudged (no pool judged them), refused_here.",
        &["outcome"],
        {
            let stats = stats.clone();
            move || share_outcomes(&stats)
        },
    )?
    .counter_vec(
        "hashpool_translator_shares_refused_total",
        "Refused shares by who refused them (translator, pool) and why.",
        &["by", "reason"],
        {
            let stats = stats.clone();
            move || share_refusals(&stats)
        },
    )?
    .counter(
        "hashpool_translator_suggested_difficulty_clamped_total",
        "mining.suggest_difficulty requests raised to min_share_difficulty or lowered to the cap.",
        read(|s| &s.suggested_difficulty_clamped),
    )?
    .counter(
        "hashpool_translator_stats_reports_dropped_total",
        "Stats reports dropped because stats-proxy was away longer than the buffer lasts.",
        read(|s| &s.stats_reports_dropped),
    )?
    .counter(
        "hashpool_translator_vardiff_updates_total",
        "Miner difficulty changes made by vardiff.",
        read(|s| &s.vardiff_updates),
    )?
    .counter_vec(
        "hashpool_translator_limit_hits_total",
        "SV1 connections refused or closed because a limit was met.",
        &["limit"],
        {
            let stats = stats.clone();
            move || {
                stats
                    .limit_hits
                    .all()
                    .into_iter()
                    .map(|(limit, n)| (vec![limit.to_string()], n))
                    .collect()
            }
        },
    )?;
    if let Some(minter) = minter {
        hashpool_wallet::register_metrics(&mut e, minter)?;
    }
    Ok(e)
}

/// `hashpool_translator_shares_total{outcome}`: every share a miner sent lands in one outcome
/// (forwarded shares once the pool answered, or once it is known none will).
fn share_outcomes(s: &TranslatorStats) -> Vec<(Vec<String>, u64)> {
    let get = |c: &AtomicU64| TranslatorStats::get(c);
    let unjudged = get(&s.shares_unjudged_upstream);
    [
        ("below_channel_target", get(&s.shares_below_channel_target)),
        ("accepted", get(&s.shares_accepted_by_pool)),
        (
            "refused_upstream",
            get(&s.shares_refused_upstream).saturating_sub(unjudged),
        ),
        ("unjudged", unjudged),
        ("refused_here", get(&s.shares_refused_here)),
    ]
    .into_iter()
    .map(|(outcome, n)| (vec![outcome.to_string()], n))
    .collect()
}

/// `hashpool_translator_shares_refused_total{by, reason}`: the refusals of
/// [`share_outcomes`] by reason (`other`: malformed or no pool here, any other pool error).
fn share_refusals(s: &TranslatorStats) -> Vec<(Vec<String>, u64)> {
    let get = |c: &AtomicU64| TranslatorStats::get(c);
    let here = [
        ("stale", get(&s.shares_refused_stale)),
        ("duplicate", get(&s.shares_refused_duplicate)),
        ("low_difficulty", get(&s.shares_refused_low_difficulty)),
        ("job_share_limit", get(&s.shares_refused_job_share_limit)),
    ];
    let here_other = here.iter().fold(get(&s.shares_refused_here), |n, (_, k)| {
        n.saturating_sub(*k)
    });
    let upstream_stale = get(&s.shares_refused_upstream_stale);
    let upstream_other = get(&s.shares_refused_upstream)
        .saturating_sub(get(&s.shares_unjudged_upstream))
        .saturating_sub(upstream_stale);
    here.into_iter()
        .chain([("other", here_other)])
        .map(|(reason, n)| ("translator", reason, n))
        .chain([
            ("pool", "stale", upstream_stale),
            ("pool", "other", upstream_other),
        ])
        .map(|(by, reason, n)| (vec![by.to_string(), reason.to_string()], n))
        .collect()
}

/// `GET /api/v1/status`: the pool link, the miners and the share counters, as JSON.
fn status_router(stats: Arc<TranslatorStats>, mode: ChannelMode) -> Router {
    Router::new().route(
        "/api/v1/status",
        get(move || {
            let s = stats.clone();
            async move {
                let get = |c: &AtomicU64| TranslatorStats::get(c);
                Json(json!({
                    "pool_connected": get(&s.pool_connected) == 1,
                    "pool_connections": get(&s.pool_connections),
                    "channel_mode": match mode {
                        ChannelMode::Aggregated => "aggregated",
                        ChannelMode::PerMiner => "per_miner",
                        ChannelMode::PerKey => "per_key",
                    },
                    "sv1_connections": get(&s.connections),
                    "miners_hashrate": get(&s.miners_hashrate),
                    "shares": {
                        "below_channel_target": get(&s.shares_below_channel_target),
                        "forwarded": get(&s.shares_forwarded),
                        "accepted_by_pool": get(&s.shares_accepted_by_pool),
                        "refused_upstream": get(&s.shares_refused_upstream),
                        "refused_here": get(&s.shares_refused_here),
                        "refused_stale": get(&s.shares_refused_stale),
                        "refused_duplicate": get(&s.shares_refused_duplicate),
                        "refused_low_difficulty": get(&s.shares_refused_low_difficulty),
                        "refused_job_share_limit": get(&s.shares_refused_job_share_limit),
                        "refused_upstream_stale": get(&s.shares_refused_upstream_stale),
                        "unjudged_upstream": get(&s.shares_unjudged_upstream),
                    },
                    "suggested_difficulty_clamped": get(&s.suggested_difficulty_clamped),
                    "limit_hits": s.limit_hits.all().into_iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                }))
            }
        }),
    )
}

/// Serves `/metrics`, `/api/v1/health` and `/api/v1/status` on `address` until `shutdown`;
/// returns the bound address.
pub async fn serve(
    address: SocketAddr,
    stats: Arc<TranslatorStats>,
    minter: Option<hashpool_wallet::Minter>,
    mode: ChannelMode,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let app = exporter(stats.clone(), minter)?
        .router()
        .merge(status_router(stats, mode))
        .merge(hashpool_metrics::health_router("translator"));
    Ok(hashpool_metrics::serve(address, app, shutdown).await?)
}
