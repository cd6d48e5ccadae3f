//! The mint's Prometheus metrics, served at `/metrics` on the monitoring address
//! (`mint.monitoring_address`), never on the public Cashu port (names in docs/metrics.md).

use std::sync::{atomic::AtomicU64, Arc};

use hashpool_metrics::Exporter;

use crate::issuer::MintStats;

pub fn exporter(stats: Arc<MintStats>) -> Result<Exporter, hashpool_metrics::Error> {
    let read = |pick: fn(&MintStats) -> &AtomicU64| {
        let stats = stats.clone();
        move || MintStats::get(pick(&stats))
    };
    let mut e = Exporter::new();
    e.counter(
        "hashpool_mint_quotes_issued_total",
        "Paid, locked ehash quotes created for the pool's requests.",
        read(|s| &s.quotes_issued),
    )?
    .counter(
        "hashpool_mint_ehash_issued_total",
        "ehash in the quotes created (unit hash).",
        read(|s| &s.ehash_issued),
    )?
    .counter(
        "hashpool_mint_requests_repeated_total",
        "Quote requests for a quote already issued (the pool's retries).",
        read(|s| &s.requests_repeated),
    )?
    .counter(
        "hashpool_mint_requests_refused_total",
        "Quote requests refused.",
        read(|s| &s.requests_refused),
    )?
    .gauge(
        "hashpool_mint_pool_link_up",
        "1 while the link to the pool is up.",
        {
            let r = read(|s| &s.pool_link_up);
            move || r() as f64
        },
    )?
    .counter(
        "hashpool_mint_quote_lookups_answered_total",
        "Signed quote lookups answered.",
        read(|s| &s.lookups_answered),
    )?
    .counter(
        "hashpool_mint_quote_lookups_refused_total",
        "Quote lookups refused (malformed, bad signature, other mint, stale, replay, failure).",
        read(|s| &s.lookups_refused),
    )?
    .counter(
        "hashpool_mint_quote_lookups_replayed_total",
        "Quote lookups refused because their nonce was used before.",
        read(|s| &s.lookups_replayed),
    )?;
    Ok(e)
}

/// Serves `/metrics` on `listener` (the monitoring address, apart from the public Cashu API)
/// until `shutdown`.
pub fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<MintStats>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, hashpool_metrics::Error> {
    let router = exporter(stats)?.router();
    Ok(tokio::spawn(async move {
        let server =
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!("monitoring server: {e}");
        }
    }))
}
