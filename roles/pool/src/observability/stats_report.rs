//! What the pool tells its stats service (`stats-pool`): a snapshot every few seconds (work
//! accepted since the last one, per channel and in all; connections; health of the template
//! provider and the mint), and blocks and issued quotes as they happen. Reporting never slows
//! the pool: reports go through [`hashpool_stats::StatsReporter`]'s bounded buffer.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hashpool_stats::{
    Block, Issuance, Network, Report, ServiceHealth, Snapshot, StatsReporter, Subject,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::StatsReporting, counters::PoolStats, events::PoolEvent, miners::Registry,
    quotes::MintLink,
};

/// What the snapshots are made of.
pub struct StatsReportHandles {
    pub stats: Arc<PoolStats>,
    pub miners: Arc<Registry>,
    pub mint: Arc<MintLink>,
    /// The chain being mined, for the snapshots' network state.
    pub jobs: Arc<crate::jobs::JobSource>,
    /// Named in the template provider's health.
    pub provider_address: hashpool_sv2_io::HostPort,
}

/// Reports until `shutdown`: the reporter's connection task, a snapshot every interval, and
/// each of `events` as it comes.
pub async fn run(
    handles: StatsReportHandles,
    reporting: StatsReporting,
    mut events: mpsc::Receiver<PoolEvent>,
    shutdown: CancellationToken,
) {
    let reporter = StatsReporter::spawn(reporting.reporter, shutdown.clone());
    let mut tick = tokio::time::interval(reporting.interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Totals::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(event) = events.recv() => {
                reporter.report(report_of(event));
                continue;
            }
            _ = shutdown.cancelled() => return,
        }
        let mint_up = handles.mint.is_up().await;
        reporter.report(Report::Snapshot(snapshot(&handles, &mut last, mint_up)));
    }
}

fn report_of(event: PoolEvent) -> Report {
    match event {
        PoolEvent::BlockFound {
            at,
            hash,
            channel_id,
            template_id,
            height,
            reward_sats,
            difficulty,
        } => Report::Block(Block {
            at,
            hash,
            subject: Some(format!("channel:{channel_id}")),
            template_id,
            height,
            reward_sats,
            difficulty,
        }),
        PoolEvent::QuoteIssued {
            at,
            quote_id,
            amount,
            locking_key,
        } => Report::Issuance(Issuance {
            at,
            quote_id,
            amount,
            locking_key,
        }),
    }
}

/// What was reported last, to send differences.
#[derive(Default)]
struct Totals {
    shares: u64,
    work: f64,
    rejected: u64,
    /// Per channel: shares accepted and work (difficulty-1 shares) so far.
    channels: HashMap<u32, (u64, f64)>,
}

fn snapshot(handles: &StatsReportHandles, last: &mut Totals, mint_up: bool) -> Snapshot {
    let pool = handles.stats.snapshot();
    let mut subjects = Vec::new();
    let mut channels = HashMap::new();
    for set in handles.miners.connections() {
        let set = set.lock().unwrap_or_else(|p| p.into_inner());
        let downstream = format!("downstream:{}", set.client_id);
        subjects.push(Subject {
            id: downstream.clone(),
            kind: "downstream".into(),
            label: set.vendor.clone(),
            shares_total: set
                .channels()
                .values()
                .map(|e| e.channel().share_accounting().get_shares_accepted() as u64)
                .sum(),
            ..Default::default()
        });
        for (id, entry) in set.channels() {
            let c = entry.channel();
            let accounting = c.share_accounting();
            let now = (
                accounting.get_shares_accepted() as u64,
                accounting.get_share_work_sum(),
            );
            let before = last.channels.get(id).copied().unwrap_or((0, 0.0));
            channels.insert(*id, now);
            subjects.push(Subject {
                id: format!("channel:{id}"),
                kind: "channel".into(),
                label: c.user_identity().to_string(),
                parent: Some(downstream.clone()),
                shares: now.0.saturating_sub(before.0),
                work: (now.1 - before.1).max(0.0),
                shares_total: now.0,
                nominal_hashrate: Some(c.nominal_hashrate() as f64),
            });
        }
    }
    last.channels = channels;
    let snapshot = Snapshot {
        at: hashpool_role::unix_now(),
        shares: pool.shares_accepted.saturating_sub(last.shares),
        work: (pool.work_accepted - last.work).max(0.0),
        shares_rejected: pool.shares_rejected.saturating_sub(last.rejected),
        subjects,
        services: vec![
            ServiceHealth {
                name: "template-provider".into(),
                up: pool.provider_connected,
                detail: handles.provider_address.to_string(),
            },
            ServiceHealth {
                name: "mint".into(),
                up: mint_up,
                detail: if mint_up {
                    "mint link authenticated".into()
                } else {
                    "no mint connected".into()
                },
            },
        ],
        wallet_balance: None,
        network: handles.jobs.chain().map(|c| Network {
            height: c.height,
            difficulty: c.difficulty,
            tip_seen_at: c.tip_seen_at,
        }),
    };
    last.shares = pool.shares_accepted;
    last.work = pool.work_accepted;
    last.rejected = pool.shares_rejected;
    snapshot
}
