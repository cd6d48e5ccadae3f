//! The pool's own Prometheus metrics (`pool.metrics_address`): what the channel metrics of the
//! monitoring server (stratum-apps) do not show. Read from the pool's counters at scrape time.

use std::sync::Arc;

use hashpool_metrics::Exporter;

use crate::{
    counters::PoolStats, ledger::LedgerMetrics, miners::Admission, quotes::mint_link::MintLink,
};

/// Every metric of the pool's own endpoint (names documented in docs/metrics.md).
pub fn exporter(
    admission: Arc<Admission>,
    stats: Arc<PoolStats>,
    ledger: Arc<LedgerMetrics>,
    mint: Arc<MintLink>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::for_role("pool")?;
    e.gauge(
        "hashpool_pool_mint_link_up",
        "1 while an authenticated mint is connected to the pool's mint link.",
        move || f64::from(u8::from(mint.is_connected())),
    )?;
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
    e.counter_vec(
        "hashpool_pool_shares_total",
        "Miners' shares by outcome: accepted (and credited once durable), rejected.",
        &["outcome"],
        {
            let stats = stats.clone();
            move || {
                let s = stats.snapshot();
                vec![
                    (vec!["accepted".to_string()], s.shares_accepted),
                    (vec!["rejected".to_string()], s.shares_rejected),
                ]
            }
        },
    )?;
    e.counter(
        "hashpool_pool_blocks_found_total",
        "Blocks found by the pool's miners.",
        {
            let stats = stats.clone();
            move || stats.snapshot().blocks_found
        },
    )?;
    e.gauge(
        "hashpool_pool_template_provider_connected",
        "1 while the template provider is connected.",
        move || f64::from(u8::from(stats.snapshot().provider_connected)),
    )?;
    e.gauge(
        "hashpool_pool_ledger_pending_work_hashes",
        "Work accrued to every key and not yet in a quote batch.",
        {
            let ledger = ledger.clone();
            // f64 is exact to 2^53 hashes and 16 significant digits beyond: enough to watch.
            move || ledger.pending_work() as f64
        },
    )?;
    e.gauge(
        "hashpool_pool_ledger_open_batches",
        "Quote batches the mint has neither answered nor refused.",
        {
            let ledger = ledger.clone();
            move || ledger.open_batches() as f64
        },
    )?;
    e.gauge(
        "hashpool_pool_ledger_oldest_open_batch_age_seconds",
        "Age of the oldest quote batch the mint has not answered (0 when none is open).",
        {
            let ledger = ledger.clone();
            move || ledger.oldest_open_batch_age(hashpool_role::unix_now_ms())
        },
    )?;
    e.histogram(
        "hashpool_pool_ledger_commit_duration_seconds",
        "Ledger group commits: time from the transaction's start to its durable commit.",
        ledger.commit_seconds.clone(),
    )?;
    Ok(e)
}
