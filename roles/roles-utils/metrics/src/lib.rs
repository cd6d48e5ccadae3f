//! Prometheus exposition for Hashpool roles. A role keeps its counters where its code counts
//! them (atomics in its stats structs); an [`Exporter`] reads them when `/metrics` is scraped,
//! so nothing is counted twice and nothing is paid on the hot path.
//!
//! [`Exporter::for_role`] adds what every role exports: `hashpool_build_info` and the
//! standard `process_*` metrics. [`health_router`] is every role's `GET /api/v1/health`.

mod histogram;
mod process;

use std::sync::Arc;

use axum::{http::header, response::IntoResponse, routing::get, Json, Router};
use prometheus::{
    Encoder, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, PullingGauge, Registry,
    TextEncoder,
};

pub use histogram::Histogram;
pub use prometheus::Error;

/// Hashpool's version (every role is built from the same workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit the build came from, when the build set `HASHPOOL_GIT_COMMIT`.
pub const COMMIT: &str = match option_env!("HASHPOOL_GIT_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

type Refresh = Box<dyn Fn() + Send + Sync>;

/// A role's metrics: names, help texts and where each value is read from.
#[derive(Default)]
pub struct Exporter {
    registry: Registry,
    refresh: Vec<Refresh>,
    /// One scrape at a time: two concurrent counter refreshes would both add the same delta.
    scrape: std::sync::Mutex<()>,
}

impl Exporter {
    /// An exporter with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// A role's exporter: `hashpool_build_info{role, version, commit}` (always 1) and the
    /// process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`,
    /// `process_start_time_seconds`; Linux).
    pub fn for_role(role: &str) -> Result<Self, Error> {
        let e = Self::new();
        let info = IntGaugeVec::new(
            Opts::new(
                "hashpool_build_info",
                "Always 1: the role, version and commit of the running build.",
            ),
            &["role", "version", "commit"],
        )?;
        info.get_metric_with_label_values(&[role, VERSION, COMMIT])?
            .set(1);
        e.registry.register(Box::new(info))?;
        e.registry
            .register(Box::new(process::ProcessCollector::new()?))?;
        Ok(e)
    }

    /// A histogram the role fills ([`Histogram::observe`]), read at scrape time.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        source: Arc<Histogram>,
    ) -> Result<&mut Self, Error> {
        self.registry
            .register(Box::new(histogram::HistogramCollector::new(
                name, help, source,
            )?))?;
        Ok(self)
    }

    /// A monotonic counter (`name` should end in `_total`), read from `read`.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<&mut Self, Error> {
        let counter = IntCounter::new(name, help)?;
        self.registry.register(Box::new(counter.clone()))?;
        self.refresh.push(Box::new(move || {
            // Counters only go up: add what the source counted since the last scrape.
            let (now, seen) = (read(), counter.get());
            if now > seen {
                counter.inc_by(now - seen);
            }
        }));
        Ok(self)
    }

    /// Counters with labels from a bounded set (`read` gives every series, label values in
    /// `labels` order, with its running total).
    pub fn counter_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        read: impl Fn() -> Vec<(Vec<String>, u64)> + Send + Sync + 'static,
    ) -> Result<&mut Self, Error> {
        let counters = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(counters.clone()))?;
        self.refresh.push(Box::new(move || {
            for (values, now) in read() {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                if let Ok(c) = counters.get_metric_with_label_values(&values) {
                    let seen = c.get();
                    if now > seen {
                        c.inc_by(now - seen);
                    }
                }
            }
        }));
        Ok(self)
    }

    /// A gauge, read at every scrape.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Result<&mut Self, Error> {
        let gauge = PullingGauge::new(name, help, Box::new(read))?;
        self.registry.register(Box::new(gauge))?;
        Ok(self)
    }

    /// A gauge with labels: `read` gives every series (label values in `labels` order) anew.
    pub fn gauge_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        read: impl Fn() -> Vec<(Vec<String>, f64)> + Send + Sync + 'static,
    ) -> Result<&mut Self, Error> {
        let gauges = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(gauges.clone()))?;
        self.refresh.push(Box::new(move || {
            gauges.reset();
            for (values, value) in read() {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                if let Ok(g) = gauges.get_metric_with_label_values(&values) {
                    g.set(value);
                }
            }
        }));
        Ok(self)
    }

    /// The text exposition of every metric, read now.
    pub fn render(&self) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        for refresh in &self.refresh {
            refresh();
        }
        let mut out = Vec::new();
        // Encoding metrics the registry itself validated cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// `GET /metrics`, to merge into a role's HTTP router.
    pub fn router(self) -> Router {
        let exporter = Arc::new(self);
        Router::new().route(
            "/metrics",
            get(move || {
                let exporter = exporter.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                        exporter.render(),
                    )
                        .into_response()
                }
            }),
        )
    }
}

/// `GET /api/v1/health`, the same on every role: 200 with `{"status": "ok", "role", "version"}`
/// while the process serves. It says the role is up, not that its upstreams are: each role's
/// `/api/v1/status` (or its metrics) has those.
pub fn health_router(role: &'static str) -> Router {
    Router::new().route(
        "/api/v1/health",
        get(move || async move { Json(health(role)) }),
    )
}

/// The body of `GET /api/v1/health`.
pub fn health(role: &str) -> serde_json::Value {
    serde_json::json!({ "status": "ok", "role": role, "version": VERSION })
}

/// Serves a role's monitoring router (`/metrics` and what it merged in) on `address` until
/// `shutdown`; returns the bound address (port 0 picks one).
pub async fn serve(
    address: std::net::SocketAddr,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(%bound, "monitoring endpoint: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use super::*;

    #[test]
    fn counters_follow_their_source_and_gauges_are_read_at_scrape_time() {
        let shares = Arc::new(AtomicU64::new(3));
        let mut e = Exporter::new();
        let s = shares.clone();
        e.counter("test_shares_total", "Shares.", move || {
            s.load(Ordering::Relaxed)
        })
        .unwrap()
        .gauge("test_up", "Up.", || 1.0)
        .unwrap()
        .gauge_vec("test_rate", "Rate.", &["miner"], || {
            vec![(vec!["a".into()], 2.5), (vec!["b".into()], 4.0)]
        })
        .unwrap();
        let text = e.render();
        assert!(text.contains("# TYPE test_shares_total counter"), "{text}");
        assert!(text.contains("test_shares_total 3"), "{text}");
        assert!(text.contains("test_up 1"), "{text}");
        assert!(text.contains("test_rate{miner=\"b\"} 4"), "{text}");
        shares.store(10, Ordering::Relaxed);
        assert!(e.render().contains("test_shares_total 10"));
    }

    #[test]
    fn labelled_counters_follow_each_series() {
        let hits = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let mut e = Exporter::new();
        let read = hits.clone();
        e.counter_vec("test_hits_total", "Hits.", &["limit"], move || {
            vec![
                (vec!["a".into()], read[0].load(Ordering::Relaxed)),
                (vec!["b".into()], read[1].load(Ordering::Relaxed)),
            ]
        })
        .unwrap();
        hits[1].store(2, Ordering::Relaxed);
        let text = e.render();
        assert!(text.contains("test_hits_total{limit=\"a\"} 0"), "{text}");
        assert!(text.contains("test_hits_total{limit=\"b\"} 2"), "{text}");
        hits[0].store(5, Ordering::Relaxed);
        assert!(e.render().contains("test_hits_total{limit=\"a\"} 5"));
    }

    #[test]
    fn roles_export_build_info_process_metrics_and_histograms() {
        let mut e = Exporter::for_role("pool").unwrap();
        let latency = Arc::new(Histogram::new(&[0.01, 0.1]));
        e.histogram("test_duration_seconds", "Latency.", latency.clone())
            .unwrap();
        latency.observe(0.005);
        latency.observe(0.05);
        latency.observe(3.0);
        let text = e.render();
        assert!(
            text.contains(&format!(
                "hashpool_build_info{{commit=\"{COMMIT}\",role=\"pool\",version=\"{VERSION}\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains("# TYPE test_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("test_duration_seconds_bucket{le=\"0.01\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("test_duration_seconds_bucket{le=\"0.1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("test_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(text.contains("test_duration_seconds_count 3"), "{text}");
        assert!(text.contains("test_duration_seconds_sum 3.055"), "{text}");
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("\n{name} ")), "{name}: {text}");
            }
        }
        assert_eq!(health("pool")["status"], "ok");
    }

    #[test]
    fn a_name_used_twice_is_refused() {
        let mut e = Exporter::new();
        e.gauge("dup", "One.", || 0.0).unwrap();
        assert!(e.gauge("dup", "Two.", || 0.0).is_err());
    }
}
