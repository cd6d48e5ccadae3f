//! A stats service (`stats-pool` or `stats-proxy`): the reporters' listener, the HTTP API with
//! `/metrics`, the hashrate sampler and the retention pass.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use hashpool_metrics::Exporter;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    ingest::{now_secs, IngestConfig, IngestStats},
    store::{Store, StoreError},
};

#[derive(Debug, Clone)]
pub struct StatsServiceConfig {
    /// `stats-pool` or `stats-proxy`: names the service in its API and metrics.
    pub service: &'static str,
    pub ingest_address: SocketAddr,
    pub http_address: SocketAddr,
    pub ingest: IngestConfig,
    /// A SQLite file path, or a `postgres://` URL.
    pub database: String,
    /// A hashrate sample of every subject this often.
    pub sample_interval: Duration,
    /// Hashrate is the work accepted over this window.
    pub hashrate_window: Duration,
    /// Samples and work rows older than this are deleted.
    pub retention: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] hashpool_metrics::Error),
}

pub struct RunningStats {
    pub ingest_address: SocketAddr,
    pub http_address: SocketAddr,
    pub store: Store,
    pub stats: Arc<IngestStats>,
    pub sampler: Arc<SamplerStats>,
    pub task: JoinHandle<()>,
}

#[derive(Debug, Default)]
pub struct SamplerStats {
    pub samples_written: std::sync::atomic::AtomicU64,
    pub rows_pruned: std::sync::atomic::AtomicU64,
}

pub async fn start(
    config: StatsServiceConfig,
    shutdown: CancellationToken,
) -> Result<RunningStats, StartError> {
    let store = Store::open(&config.database).await?;
    store.reset_connections().await?;
    let ingest_listener = TcpListener::bind(config.ingest_address)
        .await
        .map_err(|e| StartError::Bind(config.ingest_address, e))?;
    let http_listener = TcpListener::bind(config.http_address)
        .await
        .map_err(|e| StartError::Bind(config.http_address, e))?;
    let ingest_address = ingest_listener
        .local_addr()
        .map_err(|e| StartError::Bind(config.ingest_address, e))?;
    let http_address = http_listener
        .local_addr()
        .map_err(|e| StartError::Bind(config.http_address, e))?;
    let stats = Arc::new(IngestStats::default());
    let sampler = Arc::new(SamplerStats::default());
    let app = crate::http::router(
        config.service,
        store.clone(),
        stats.clone(),
        config.hashrate_window.as_secs(),
    )
    .merge(metrics(config.service, &stats, &sampler)?.router());

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::ingest::serve(
        ingest_listener,
        Arc::new(config.ingest.clone()),
        store.clone(),
        stats.clone(),
        shutdown.clone(),
    ));
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let server =
            axum::serve(http_listener, app).with_graceful_shutdown(http_shutdown.cancelled_owned());
        if let Err(e) = server.await {
            warn!("stats HTTP server stopped: {e}");
        }
    });
    tasks.spawn(sample_and_prune(
        store.clone(),
        config.clone(),
        sampler.clone(),
        shutdown.clone(),
    ));
    info!(service = config.service, ingest = %ingest_address, http = %http_address, database = %redact(&config.database), "stats service up");
    let closing = store.clone();
    let task = tokio::spawn(async move {
        while tasks.join_next().await.is_some() {}
        closing.close().await;
    });
    Ok(RunningStats {
        ingest_address,
        http_address,
        store,
        stats,
        sampler,
        task,
    })
}

/// Samples on schedule; prunes at start and then every tenth of the retention (at most hourly).
async fn sample_and_prune(
    store: Store,
    config: StatsServiceConfig,
    stats: Arc<SamplerStats>,
    shutdown: CancellationToken,
) {
    let mut sample = tokio::time::interval(config.sample_interval.max(Duration::from_millis(100)));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prune_every =
        (config.retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut prune = tokio::time::interval(prune_every);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first sample waits a full interval: there is no work to measure yet.
    sample.tick().await;
    loop {
        tokio::select! {
            _ = sample.tick() => {
                let window = config.hashrate_window.as_secs().max(1) as i64;
                let min_span = config.sample_interval.as_secs().max(1) as i64;
                match store.sample(now_secs(), window, min_span).await {
                    Ok(n) => {
                        stats.samples_written.fetch_add(n as u64, Ordering::Relaxed);
                        debug!(samples = n, "hashrate sampled");
                    }
                    Err(e) => warn!("hashrate sampling failed: {e}"),
                }
            }
            _ = prune.tick() => {
                let cutoff = now_secs() - config.retention.as_secs() as i64;
                match store.prune(cutoff).await {
                    Ok(p) => {
                        stats.rows_pruned.fetch_add(p.total(), Ordering::Relaxed);
                        if p.total() > 0 {
                            info!(?p, "retention: old rows deleted");
                        }
                    }
                    Err(e) => warn!("retention pass failed: {e}"),
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

pub use hashpool_config::database_url::redact;

/// The service's metrics: the same names on stats-pool and stats-proxy (Prometheus' `job`
/// tells them apart; `hashpool_build_info{role}` too).
fn metrics(
    service: &'static str,
    ingest: &Arc<IngestStats>,
    sampler: &Arc<SamplerStats>,
) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::for_role(service)?;
    let i = ingest.clone();
    e.counter(
        "hashpool_stats_reports_total",
        "Reports received and stored.",
        move || i.reports.load(Ordering::Relaxed),
    )?;
    let i = ingest.clone();
    e.counter_vec(
        "hashpool_stats_reporters_refused_total",
        "Reporter connections refused, by reason (the code sent to the reporter; handshake: the \
         Noise handshake failed).",
        &["reason"],
        move || {
            i.refusals()
                .into_iter()
                .map(|(reason, n)| (vec![reason.to_string()], n))
                .collect()
        },
    )?;
    let i = ingest.clone();
    e.counter(
        "hashpool_stats_store_errors_total",
        "Reports the database could not take.",
        move || i.store_errors.load(Ordering::Relaxed),
    )?;
    let i = ingest.clone();
    e.gauge(
        "hashpool_stats_reporters_connected",
        "Reporters connected now.",
        move || i.reporters_connected.load(Ordering::Relaxed) as f64,
    )?;
    let s = sampler.clone();
    e.counter(
        "hashpool_stats_samples_written_total",
        "Hashrate samples written.",
        move || s.samples_written.load(Ordering::Relaxed),
    )?;
    let s = sampler.clone();
    e.counter(
        "hashpool_stats_rows_pruned_total",
        "Rows deleted by the retention policy.",
        move || s.rows_pruned.load(Ordering::Relaxed),
    )?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_stay_out_of_logs() {
        assert_eq!(
            super::redact("postgres://hashpool:secret@db:5432/stats"),
            "postgres://hashpool:***@db:5432/stats"
        );
        assert_eq!(super::redact("postgres://db/stats"), "postgres://db/stats");
        assert_eq!(super::redact("data/stats.sqlite"), "data/stats.sqlite");
    }
}
