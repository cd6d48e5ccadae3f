//! The mint's Prometheus metrics, served at `/metrics` on the monitoring address
//! (`mint.monitoring_address`) beside `GET /api/v1/health`, never on the public Cashu port
//! (names in docs/metrics.md).

use std::sync::{atomic::AtomicU64, Arc};

use hashpool_metrics::Exporter;

use crate::issuer::{IssueError, MintStats};

pub fn exporter(stats: Arc<MintStats>) -> Result<Exporter, hashpool_metrics::Error> {
    let read = |pick: fn(&MintStats) -> &AtomicU64| {
        let stats = stats.clone();
        move || MintStats::get(pick(&stats))
    };
    let mut e = Exporter::for_role("mint")?;
    e.counter_vec(
        "hashpool_mint_quote_requests_total",
        "The pool's quote requests by outcome: issued (a paid, locked quote created), repeated \
         (a quote already issued), refused.",
        &["outcome"],
        {
            let stats = stats.clone();
            move || {
                let get = MintStats::get;
                [
                    ("issued", get(&stats.quotes_issued)),
                    ("repeated", get(&stats.requests_repeated)),
                    ("refused", get(&stats.requests_refused)),
                ]
                .into_iter()
                .map(|(outcome, n)| (vec![outcome.to_string()], n))
                .collect()
            }
        },
    )?
    .counter_vec(
        "hashpool_mint_quote_requests_refused_total",
        "Refused quote requests by reason: invalid_locking_key, amount_out_of_range, \
         unit_mismatch, conflict (a request id reused for another quote), temporary (a failure \
         the pool's retry may get past).",
        &["reason"],
        {
            let stats = stats.clone();
            move || {
                IssueError::REASONS
                    .iter()
                    .zip(&stats.requests_refused_by)
                    .map(|(reason, n)| (vec![reason.to_string()], MintStats::get(n)))
                    .collect()
            }
        },
    )?
    .counter(
        "hashpool_mint_ehash_issued_total",
        "ehash in the quotes created (unit hash).",
        read(|s| &s.ehash_issued),
    )?
    .gauge(
        "hashpool_mint_sqlite_memory_bytes",
        "Bytes SQLite has allocated in the mint process (page caches of the database \
         connections, schemas, statements); kept near `mint.sqlite_memory_limit_mib`.",
        || crate::sqlite_memory::used() as f64,
    )?
    .gauge(
        "hashpool_mint_pool_link_up",
        "1 while the link to the pool is up.",
        {
            let r = read(|s| &s.pool_link_up);
            move || r() as f64
        },
    )?
    .counter_vec(
        "hashpool_mint_quote_lookups_total",
        "Signed quote lookups (POST /v1/hashpool/quotes) by outcome: answered, refused.",
        &["outcome"],
        {
            let stats = stats.clone();
            move || {
                let get = MintStats::get;
                [
                    ("answered", get(&stats.lookups_answered)),
                    ("refused", get(&stats.lookups_refused)),
                ]
                .into_iter()
                .map(|(outcome, n)| (vec![outcome.to_string()], n))
                .collect()
            }
        },
    )?
    .counter_vec(
        "hashpool_mint_quote_lookups_refused_total",
        "Refused quote lookups by reason: replay (a nonce used before), other (malformed, bad \
         signature, another mint, clock skew, nonce store full, failure).",
        &["reason"],
        {
            let stats = stats.clone();
            move || {
                let replayed = MintStats::get(&stats.lookups_replayed);
                let other = MintStats::get(&stats.lookups_refused).saturating_sub(replayed);
                vec![
                    (vec!["replay".to_string()], replayed),
                    (vec!["other".to_string()], other),
                ]
            }
        },
    )?;
    Ok(e)
}

/// Serves `/metrics` and `/api/v1/health` on `listener` (the monitoring address, apart from the public Cashu API)
/// until `shutdown`.
pub fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<MintStats>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, hashpool_metrics::Error> {
    let router = exporter(stats)?
        .router()
        .merge(hashpool_metrics::health_router("mint"));
    Ok(tokio::spawn(async move {
        let server =
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!("monitoring server: {e}");
        }
    }))
}
