//! Prometheus exposition for Hashpool roles. A role keeps its counters where its code counts
//! them (atomics in its stats structs); an [`Exporter`] reads them when `/metrics` is scraped,
//! so nothing is counted twice and nothing is paid on the hot path.

use std::sync::Arc;

use axum::{http::header, response::IntoResponse, routing::get, Router};
use prometheus::{
    Encoder, GaugeVec, IntCounter, IntCounterVec, Opts, PullingGauge, Registry, TextEncoder,
};

pub use prometheus::Error;

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
    pub fn new() -> Self {
        Self::default()
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
    fn a_name_used_twice_is_refused() {
        let mut e = Exporter::new();
        e.gauge("dup", "One.", || 0.0).unwrap();
        assert!(e.gauge("dup", "Two.", || 0.0).is_err());
    }
}
