//! The pool's own Prometheus metrics (`pool.metrics_address`): what the channel metrics of the
//! monitoring server (stratum-apps) do not show. Read from the pool's counters at scrape time.

use std::sync::Arc;

use hashpool_metrics::Exporter;

use crate::{counters::PoolStats, miners::Admission};

/// Every metric of the pool's own endpoint (names documented in docs/metrics.md).
pub fn exporter(
    admission: Arc<Admission>,
    stats: Arc<PoolStats>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::new();
    e.gauge(
        "hashpool_pool_miner_connections",
        "Miner connections open.",
        {
            let admission = admission.clone();
            move || admission.open_connections() as f64
        },
    )?;
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
    e.counter_vec(
        "hashpool_pool_batches_refused_total",
        "Quote batches the mint refused for good (their work went back to pending), by code.",
        &["code"],
        {
            let stats = stats.clone();
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
            }
        },
    )?;
    e.counter(
        "hashpool_pool_shares_accepted_total",
        "Shares accepted (and credited once durable).",
        {
            let stats = stats.clone();
            move || stats.snapshot().shares_accepted
        },
    )?;
    e.counter(
        "hashpool_pool_shares_rejected_total",
        "Shares refused.",
        move || stats.snapshot().shares_rejected,
    )?;
    Ok(e)
}
