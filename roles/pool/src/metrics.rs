//! The pool's own Prometheus metrics (`pool.metrics_address`): what the channel metrics of the
//! monitoring server (stratum-apps) do not show. Read from the pool's counters at scrape time.

use std::sync::Arc;

use hashpool_metrics::Exporter;

use crate::context::PoolContext;

/// Every metric of the pool's own endpoint (names documented in docs/metrics.md).
pub fn exporter(ctx: Arc<PoolContext>) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::new();
    let admission = ctx.admission.clone();
    e.gauge(
        "hashpool_pool_miner_connections",
        "Miner connections open.",
        move || admission.open_connections() as f64,
    )?;
    let admission = ctx.admission.clone();
    e.counter_vec(
        "hashpool_pool_limit_hits_total",
        "Miner connections refused or closed, and channels refused, because a limit was met.",
        &["limit"],
        move || {
            admission
                .hits()
                .into_iter()
                .map(|(limit, n)| (vec![limit.to_string()], n))
                .collect()
        },
    )?;
    let stats = ctx.stats.clone();
    e.counter_vec(
        "hashpool_pool_batches_refused_total",
        "Quote batches the mint refused for good (their work went back to pending), by code.",
        &["code"],
        move || {
            let r = stats.snapshot().batches_refused;
            [
                ("invalid-locking-key", r.invalid_locking_key),
                ("amount-out-of-range", r.amount_out_of_range),
                ("unit-mismatch", r.unit_mismatch),
                ("other", r.other),
            ]
            .into_iter()
            .map(|(code, n)| (vec![code.to_string()], n))
            .collect()
        },
    )?;
    let stats = ctx.stats.clone();
    e.counter(
        "hashpool_pool_shares_accepted_total",
        "Shares accepted (and credited once durable).",
        move || stats.snapshot().shares_accepted,
    )?;
    let stats = ctx.stats.clone();
    e.counter(
        "hashpool_pool_shares_rejected_total",
        "Shares refused.",
        move || stats.snapshot().shares_rejected,
    )?;
    Ok(e)
}
