//! The jd-server's Prometheus metrics and health (`jd_server.metrics_address`): connections,
//! tokens, declarations by result and blocks submitted, counted as the sessions go. Names in
//! docs/metrics.md.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use hashpool_metrics::Exporter;

/// What the sessions did. Result labels are `&'static str` from a fixed set (the protocol's
/// refusal codes and the outcomes below), so the label space stays bounded whatever a client
/// sends.
#[derive(Default)]
pub struct JdStats {
    connections: AtomicUsize,
    tokens: AtomicU64,
    declarations: Mutex<BTreeMap<&'static str, u64>>,
    blocks: Mutex<BTreeMap<&'static str, u64>>,
}

/// A declared job that got its job token.
pub const DECLARED: &str = "accepted";
/// A pushed solution's block, as the node took it.
pub const BLOCK_ACCEPTED: &str = "accepted";
pub const BLOCK_REFUSED: &str = "refused";
/// The block could not be submitted (the node unreachable, a transaction missing).
pub const BLOCK_NOT_SUBMITTED: &str = "not-submitted";
/// The solution matched no job the connection declared.
pub const BLOCK_NO_JOB: &str = "no-job";

/// Counts a connection open while it lives.
pub struct OpenConnection(Arc<JdStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl JdStats {
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub fn token_allocated(&self) {
        self.tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// A declaration answered: [`DECLARED`] or the refusal's error code.
    pub fn declaration(&self, result: &'static str) {
        bump(&self.declarations, result);
    }

    /// A pushed solution handled: one of the `BLOCK_*` results.
    pub fn block(&self, result: &'static str) {
        bump(&self.blocks, result);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    pub fn declarations(&self) -> BTreeMap<&'static str, u64> {
        read(&self.declarations)
    }

    pub fn blocks(&self) -> BTreeMap<&'static str, u64> {
        read(&self.blocks)
    }
}

fn bump(counts: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    *counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
}

fn read(counts: &Mutex<BTreeMap<&'static str, u64>>) -> BTreeMap<&'static str, u64> {
    counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn labelled(counts: BTreeMap<&'static str, u64>) -> Vec<(Vec<String>, u64)> {
    counts
        .into_iter()
        .map(|(result, n)| (vec![result.to_string()], n))
        .collect()
}

/// Every metric of the jd-server's endpoint.
pub fn exporter(stats: Arc<JdStats>) -> Result<Exporter, hashpool_metrics::Error> {
    let mut e = Exporter::for_role("jd-server")?;
    e.gauge(
        "hashpool_jd_server_connections",
        "Job declarator clients connected.",
        {
            let stats = stats.clone();
            move || stats.connections() as f64
        },
    )?;
    e.counter(
        "hashpool_jd_server_tokens_allocated_total",
        "Mining job tokens allocated to clients.",
        {
            let stats = stats.clone();
            move || stats.tokens()
        },
    )?;
    e.counter_vec(
        "hashpool_jd_server_declarations_total",
        "Declared jobs answered, by result: accepted, or the refusal's error code.",
        &["result"],
        {
            let stats = stats.clone();
            move || labelled(stats.declarations())
        },
    )?;
    e.counter_vec(
        "hashpool_jd_server_blocks_total",
        "Pushed solutions, by result: accepted or refused by the node, not-submitted, no-job.",
        &["result"],
        move || labelled(stats.blocks()),
    )?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_count_while_open_and_results_add_up() {
        let stats = Arc::new(JdStats::default());
        let a = stats.connection_opened();
        let b = stats.connection_opened();
        assert_eq!(stats.connections(), 2);
        drop(a);
        assert_eq!(stats.connections(), 1);
        drop(b);
        assert_eq!(stats.connections(), 0);
        stats.declaration(DECLARED);
        stats.declaration(DECLARED);
        stats.declaration("invalid-mining-job-token");
        assert_eq!(
            stats.declarations().into_iter().collect::<Vec<_>>(),
            vec![(DECLARED, 2), ("invalid-mining-job-token", 1)]
        );
        stats.block(BLOCK_NO_JOB);
        assert_eq!(stats.blocks().get(BLOCK_NO_JOB), Some(&1));
    }
}
