//! What the pool tells its stats service (`stats-pool`): a snapshot every few seconds (work
//! accepted since the last one, per channel and in all; connections; health of the template
//! provider and the mint), and blocks and issued quotes as they happen. Reporting never slows
//! the pool: reports go through [`hashpool_stats::StatsReporter`]'s bounded buffer.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hashpool_stats::{
    Block, Issuance, Report, ReporterConfig, ServiceHealth, Snapshot, StatsReporter, Subject,
};
use tokio_util::sync::CancellationToken;

use crate::{context::PoolContext, mint_link::MintLink};

/// `[stats_reporter]` in the pool's file: reporting is on when the section is there.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StatsReporterSettings {
    /// A snapshot this often.
    pub interval_secs: u64,
    /// Reports kept while stats-pool is away (the oldest dropped beyond).
    pub buffer: usize,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reports `report` if the pool reports stats at all.
pub fn report(ctx: &PoolContext, report: Report) {
    if let Some(reporter) = ctx.stats_reporter.get() {
        reporter.report(report);
    }
}

pub fn block_found(ctx: &PoolContext, hash: String, channel_id: u32, template_id: Option<u64>) {
    report(
        ctx,
        Report::Block(Block {
            at: unix_now(),
            hash,
            subject: Some(format!("channel:{channel_id}")),
            template_id,
        }),
    );
}

pub fn quote_issued(ctx: &PoolContext, quote_id: &str, amount: u64, locking_key: String) {
    report(
        ctx,
        Report::Issuance(Issuance {
            at: unix_now(),
            quote_id: quote_id.to_string(),
            amount,
            locking_key,
        }),
    );
}

/// Where and how often the pool reports.
#[derive(Debug, Clone)]
pub struct StatsReporting {
    pub reporter: ReporterConfig,
    pub interval: Duration,
}

/// Reports until `shutdown`: the reporter's connection task and a snapshot every interval.
pub async fn run(
    ctx: Arc<PoolContext>,
    reporting: StatsReporting,
    mint: Arc<MintLink>,
    shutdown: CancellationToken,
) {
    let reporter = StatsReporter::spawn(reporting.reporter, shutdown.clone());
    let _ = ctx.stats_reporter.set(reporter.clone());
    let mut tick = tokio::time::interval(reporting.interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Totals::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let mint_up = mint.is_up().await;
        reporter.report(Report::Snapshot(snapshot(&ctx, &mut last, mint_up)));
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

fn snapshot(ctx: &PoolContext, last: &mut Totals, mint_up: bool) -> Snapshot {
    let pool = ctx.stats.snapshot();
    let mut subjects = Vec::new();
    let mut channels = HashMap::new();
    for set in ctx.registry.connections() {
        let set = set.lock().unwrap_or_else(|p| p.into_inner());
        let downstream = format!("downstream:{}", set.client_id);
        subjects.push(Subject {
            id: downstream.clone(),
            kind: "downstream".into(),
            label: set.vendor.clone(),
            shares_total: set
                .channels
                .values()
                .map(|e| e.channel().share_accounting().get_shares_accepted() as u64)
                .sum(),
            ..Default::default()
        });
        for (id, entry) in &set.channels {
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
        at: unix_now(),
        shares: pool.shares_accepted.saturating_sub(last.shares),
        work: (pool.work_accepted - last.work).max(0.0),
        shares_rejected: pool.shares_rejected.saturating_sub(last.rejected),
        subjects,
        services: vec![
            ServiceHealth {
                name: "template-provider".into(),
                up: pool.provider_connected,
                detail: ctx.config.template_provider.address.to_string(),
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
    };
    last.shares = pool.shares_accepted;
    last.work = pool.work_accepted;
    last.rejected = pool.shares_rejected;
    snapshot
}
