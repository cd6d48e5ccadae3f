//! A fixed-bucket histogram a role's code fills with atomics (no lock, no allocation per
//! observation) and an [`Exporter`](crate::Exporter) reads at scrape time.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

/// Observations counted into fixed buckets, with their sum.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; the `+Inf` bucket is implicit.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), the last one past every bound.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// Latency buckets for durations from a millisecond to ten seconds.
    pub const LATENCY_SECONDS: &'static [f64] = &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// A histogram with `bounds` (ascending upper bounds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // Relaxed is enough: a scrape may see the count before the sum, never a torn value.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Counts a duration, in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

/// The registry's view of a [`Histogram`].
pub(crate) struct HistogramCollector {
    desc: Desc,
    source: Arc<Histogram>,
}

impl HistogramCollector {
    pub(crate) fn new(
        name: &str,
        help: &str,
        source: Arc<Histogram>,
    ) -> Result<Self, prometheus::Error> {
        let desc = Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())?;
        Ok(Self { desc, source })
    }
}

impl Collector for HistogramCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.source.bounds.len());
        for (bound, count) in self.source.bounds.iter().zip(self.source.counts.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        let total = cumulative
            + self
                .source
                .counts
                .last()
                .map_or(0, |c| c.load(Ordering::Relaxed));
        let mut h = proto::Histogram::default();
        h.set_sample_count(total);
        h.set_sample_sum(self.source.sum());
        h.set_bucket(buckets.into());
        let mut m = proto::Metric::default();
        m.set_histogram(h);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(vec![m].into());
        vec![family]
    }
}
