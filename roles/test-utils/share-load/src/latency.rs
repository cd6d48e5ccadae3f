//! Latency percentiles.

use std::time::Duration;

use serde::Serialize;

/// The nearest-rank percentile `p` (0 < p <= 1) of `sorted` (ascending): the smallest value
/// with at least `p` of all values at or below it. `None` for no values.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 1.0);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// A summary of ack latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Sorts `latencies` and summarises them.
    pub fn of(latencies: &mut [Duration]) -> Self {
        latencies.sort_unstable();
        let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        Self {
            count: latencies.len(),
            p50_ms: ms(percentile(latencies, 0.50)),
            p99_ms: ms(percentile(latencies, 0.99)),
            max_ms: ms(latencies.last().copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&values, 0.5), Some(ms(50)));
        assert_eq!(percentile(&values, 0.99), Some(ms(99)));
        assert_eq!(percentile(&values, 1.0), Some(ms(100)));
        assert_eq!(percentile(&values, 0.001), Some(ms(1)));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
        // Small sets: the p99 of 10 values is the largest.
        let ten: Vec<Duration> = (1..=10).map(ms).collect();
        assert_eq!(percentile(&ten, 0.99), Some(ms(10)));
        assert_eq!(percentile(&ten, 0.5), Some(ms(5)));
    }

    #[test]
    fn summary_sorts_first() {
        let mut values = vec![ms(30), ms(10), ms(20)];
        let s = LatencySummary::of(&mut values);
        assert_eq!(s.count, 3);
        assert_eq!(s.p50_ms, 20.0);
        assert_eq!(s.p99_ms, 30.0);
        assert_eq!(s.max_ms, 30.0);
        assert_eq!(LatencySummary::of(&mut []), LatencySummary::default());
    }
}
