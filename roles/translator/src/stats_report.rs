//! What the translator tells its stats service (`stats-proxy`): a snapshot every few seconds
//! (each SV1 miner's accepted work since the last one, the wallet balance, whether a pool is
//! connected) and the quotes minted into its wallet. Reporting never slows the translator:
//! reports go through [`hashpool_stats::StatsReporter`]'s bounded buffer.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use hashpool_stats::{
    Issuance, Report, ReporterConfig, ServiceHealth, Snapshot, StatsReporter, Subject,
};
use hashpool_wallet::EhashWallet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::TranslatorStats;

/// `[stats_reporter]` in the translator's file: reporting is on when the section is there.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StatsReporterSettings {
    /// stats-proxy's ingest address as the translator dials it (`host:port`, a name resolved
    /// at each connect), when it is not the shared config's `stats.ingest_address`.
    #[serde(default)]
    pub address: Option<hashpool_config::HostPort>,
    /// A snapshot this often.
    pub interval_secs: u64,
    /// Reports kept while stats-proxy is away (the oldest dropped beyond).
    pub buffer: usize,
    /// The key the translator proves to stats-proxy (its public half is listed in the shared
    /// config's `stats.reporter_public_keys`).
    pub secret_key: stratum_apps::key_utils::Secp256k1SecretKey,
}

/// Where and how often the translator reports.
#[derive(Debug, Clone)]
pub struct StatsReporting {
    pub reporter: ReporterConfig,
    pub interval: Duration,
    /// Shown as the pool's health detail.
    pub upstream: String,
}

/// Issuances looked at per snapshot (newest first); older ones were reported before.
const HISTORY_PER_SNAPSHOT: usize = 100;

/// Reports until `shutdown`. Returns the reporter (its counters are the role's metrics).
pub fn spawn(
    stats: Arc<TranslatorStats>,
    wallet: Option<Arc<EhashWallet>>,
    reporting: StatsReporting,
    shutdown: CancellationToken,
) -> StatsReporter {
    let reporter = StatsReporter::spawn(reporting.reporter.clone(), shutdown.clone());
    let out = reporter.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(reporting.interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Totals::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let balance = match &wallet {
                Some(w) => match w.balance().await {
                    Ok(b) => Some(b),
                    Err(e) => {
                        debug!("wallet balance for stats: {e}");
                        None
                    }
                },
                None => None,
            };
            stats.stats_reports_dropped.store(
                reporter.stats().dropped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            reporter.report(Report::Snapshot(snapshot(
                &stats,
                &mut last,
                balance,
                &reporting.upstream,
            )));
            if let Some(w) = &wallet {
                if let Ok(history) = w.history(HISTORY_PER_SNAPSHOT).await {
                    for i in history {
                        if last.issued.insert(i.quote.clone()) {
                            reporter.report(Report::Issuance(Issuance {
                                at: i.time,
                                quote_id: i.quote,
                                amount: i.amount,
                                locking_key: w.locking_key().to_hex(),
                            }));
                        }
                    }
                }
            }
        }
    });
    out
}

/// What was reported last, to send differences.
#[derive(Default)]
struct Totals {
    shares: u64,
    work: f64,
    refused: u64,
    /// Per miner index: shares and work so far.
    miners: HashMap<u32, (u64, f64)>,
    /// Quotes already reported.
    issued: HashSet<String>,
}

fn snapshot(
    stats: &TranslatorStats,
    last: &mut Totals,
    wallet_balance: Option<u64>,
    upstream: &str,
) -> Snapshot {
    let mut subjects = Vec::new();
    let mut miners = HashMap::new();
    for m in stats.miners() {
        let now = (m.shares.load(Ordering::Relaxed), m.work.get());
        let before = last.miners.get(&m.index).copied().unwrap_or((0, 0.0));
        miners.insert(m.index, now);
        subjects.push(Subject {
            id: format!("miner:{}", m.index),
            kind: "miner".into(),
            label: m.worker.clone(),
            parent: None,
            shares: now.0.saturating_sub(before.0),
            work: (now.1 - before.1).max(0.0),
            shares_total: now.0,
            nominal_hashrate: Some(m.hashrate_now()),
        });
    }
    last.miners = miners;
    let shares = TranslatorStats::get(&stats.shares_accepted);
    let work = stats.work_accepted.get();
    let refused = TranslatorStats::get(&stats.shares_refused_here)
        + TranslatorStats::get(&stats.shares_refused_upstream);
    let pool_up = TranslatorStats::get(&stats.pool_connected) == 1;
    let snapshot = Snapshot {
        at: hashpool_role::unix_now(),
        shares: shares.saturating_sub(last.shares),
        work: (work - last.work).max(0.0),
        shares_rejected: refused.saturating_sub(last.refused),
        subjects,
        services: vec![ServiceHealth {
            name: "pool".into(),
            up: pool_up,
            detail: if pool_up {
                format!("connected to {upstream}")
            } else {
                format!("no pool connected (first choice {upstream})")
            },
        }],
        wallet_balance,
        network: None,
    };
    last.shares = shares;
    last.work = work;
    last.refused = refused;
    snapshot
}
