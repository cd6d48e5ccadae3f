//! What the pool knows of one locking key, as the miner API answers it: the ledger's numbers
//! (shares, work, ehash accrued, quoted and pending, hashrate windows, blocks, quotes) and the
//! key's open channels (workers) from the registry.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use bitcoin::hashes::Hash;
use ext_mint_quote::LockingKey;
use hashpool_ehash::{UnitWork, Work};
use serde::Serialize;

use crate::{
    ledger::{KeyReport, WindowWork},
    miners::{
        channel_set::{ChannelKind, ChannelSet},
        Registry,
    },
};

/// The hashrate windows every answer has (label, seconds).
pub const WINDOWS: [(&str, u64); 3] = [("10m", 600), ("1h", 3_600), ("24h", 86_400)];

/// Channels listed per key at most (the total is given).
pub const MAX_WORKERS: usize = 100;

#[derive(Debug, Serialize)]
pub struct MinerView {
    /// The key, as 66 lowercase hex characters.
    pub key: String,
    pub unit: String,
    /// When this answer was made (unix milliseconds): the windows end here.
    pub now_ms: i64,
    /// False while no share was ever credited to the key.
    pub known: bool,
    /// Shares credited to the key, all time (the ledger).
    pub shares_accepted: u64,
    pub last_share_ms: Option<i64>,
    pub work: WorkView,
    pub ehash: EhashView,
    pub hashrate: Vec<HashrateView>,
    /// Channels open now with this key.
    pub workers_total: usize,
    /// At most [`MAX_WORKERS`] of them.
    pub workers: Vec<WorkerView>,
    /// Shares the listed channels had refused since they opened, in all and by reason.
    pub shares_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub blocks_found: u64,
    pub blocks: Vec<BlockView>,
    pub quotes: Vec<QuoteView>,
    /// The key's quoted ehash in each of the newest epochs, newest first (what each is worth:
    /// the epoch's rate, `/api/v1/settlement`).
    pub epochs: Vec<EpochEhashView>,
}

#[derive(Debug, Serialize)]
pub struct EpochEhashView {
    pub epoch: u32,
    pub ehash: u64,
}

/// Exact work in hashes (decimal strings: they exceed 64 bits).
#[derive(Debug, Serialize)]
pub struct WorkView {
    pub total: String,
    pub pending: String,
    /// Hashes per unit of ehash.
    pub unit_work: String,
}

/// Ehash of the key. `accrued` = `quoted` + `requested` + `pending` exactly (in work).
#[derive(Debug, Serialize)]
pub struct EhashView {
    /// Ehash of all work accepted, to three decimals (rounded down).
    pub accrued: String,
    /// In quotes the mint issued (whole units).
    pub quoted: u64,
    /// In quote requests the mint has not answered yet (whole units).
    pub requested: u64,
    /// Work not in any request yet (below one unit after each batch), to three decimals
    /// (rounded down).
    pub pending: String,
    /// Not quoted yet: `requested` + `pending`, to three decimals (rounded down).
    pub unquoted: String,
}

#[derive(Debug, Serialize)]
pub struct HashrateView {
    pub window: &'static str,
    pub secs: u64,
    /// Hashes per second: the window's work over its length (over the part covered when not
    /// `complete`).
    pub hashrate: f64,
    pub work: String,
    pub shares: u64,
    /// False when the window held more shares than one request reads: the figures cover the
    /// newest shares, from `covered_from_ms` on.
    pub complete: bool,
    pub covered_from_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// The miner connection (a proxy or a device) and its vendor string.
    pub client_id: usize,
    pub vendor: String,
    pub channel_id: u32,
    pub kind: &'static str,
    pub user_identity: String,
    /// Difficulty of the channel's current target.
    pub difficulty: f64,
    /// Best share difficulty since the channel opened.
    pub best_difficulty: f64,
    pub nominal_hashrate: f64,
    pub shares_accepted: u64,
    /// When the channel's newest share was accepted (Unix ms); none yet: null.
    pub last_share_ms: Option<i64>,
    pub shares_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct BlockView {
    /// Block hash as explorers show it.
    pub hash: String,
    pub channel_id: u32,
    pub at_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct QuoteView {
    pub quote_id: String,
    pub amount: u64,
    pub at_ms: i64,
}

/// `hashes / per_unit` with three decimals, rounded down (`0.000` for a zero unit).
pub fn units_text(hashes: u128, per_unit: u128) -> String {
    if per_unit == 0 {
        return "0.000".into();
    }
    let whole = hashes / per_unit;
    // (hashes % per_unit) < per_unit, so the product overflows only for a unit beyond 2^118.
    let rest = hashes % per_unit;
    let thousandths = rest
        .checked_mul(1000)
        .map(|r| r / per_unit)
        .unwrap_or_else(|| rest / (per_unit / 1000).max(1));
    format!("{whole}.{thousandths:03}")
}

fn hashrate(w: &WindowWork, now_ms: i64) -> f64 {
    let span_secs = if w.complete {
        w.secs as f64
    } else {
        (now_ms.saturating_sub(w.covered_from_ms) as f64 / 1000.0).max(1.0)
    };
    if span_secs > 0.0 {
        w.work.hashes() as f64 / span_secs
    } else {
        0.0
    }
}

/// The view of `key` from the ledger's `report` and the key's open channels.
pub fn build(
    key: &LockingKey,
    unit: &str,
    unit_work: UnitWork,
    report: KeyReport,
    registry: &Registry,
    now_ms: i64,
) -> MinerView {
    let per_unit = unit_work.work().hashes();
    let (total, pending, shares) = report
        .accrual
        .map(|a| (a.total, a.pending, a.shares))
        .unwrap_or((Work::ZERO, Work::ZERO, 0));
    let requested_work = u128::from(report.requested).saturating_mul(per_unit);
    let hashrate = report
        .windows
        .iter()
        .zip(WINDOWS)
        .map(|(w, (label, _))| HashrateView {
            window: label,
            secs: w.secs,
            hashrate: hashrate(w, now_ms),
            work: w.work.hashes().to_string(),
            shares: w.shares,
            complete: w.complete,
            covered_from_ms: w.covered_from_ms,
        })
        .collect();
    let (workers, workers_total) = workers(registry, key);
    let mut rejected_by_reason = BTreeMap::new();
    for w in &workers {
        for (reason, n) in &w.rejected_by_reason {
            *rejected_by_reason.entry(reason.clone()).or_insert(0) += n;
        }
    }
    MinerView {
        key: key.to_hex(),
        unit: unit.to_string(),
        now_ms,
        known: report.accrual.is_some(),
        shares_accepted: shares,
        last_share_ms: report.last_share_ms,
        work: WorkView {
            total: total.hashes().to_string(),
            pending: pending.hashes().to_string(),
            unit_work: per_unit.to_string(),
        },
        ehash: EhashView {
            accrued: units_text(total.hashes(), per_unit),
            quoted: report.quoted,
            requested: report.requested,
            pending: units_text(pending.hashes(), per_unit),
            unquoted: units_text(pending.hashes().saturating_add(requested_work), per_unit),
        },
        hashrate,
        workers_total,
        shares_rejected: workers.iter().map(|w| w.shares_rejected).sum(),
        rejected_by_reason,
        workers,
        blocks_found: report.blocks_found,
        blocks: report
            .blocks
            .iter()
            .map(|b| BlockView {
                hash: bitcoin::BlockHash::from_byte_array(b.hash).to_string(),
                channel_id: b.channel_id,
                at_ms: b.at_ms,
            })
            .collect(),
        quotes: report
            .quotes
            .into_iter()
            .map(|q| QuoteView {
                quote_id: q.quote_id,
                amount: q.amount,
                at_ms: q.at_ms,
            })
            .collect(),
        epochs: report
            .ehash_by_epoch
            .into_iter()
            .map(|(epoch, ehash)| EpochEhashView { epoch, ehash })
            .collect(),
    }
}

/// The key's open channels (at most [`MAX_WORKERS`]), and how many it has.
fn workers(registry: &Registry, key: &LockingKey) -> (Vec<WorkerView>, usize) {
    let (connections, total) = registry.channels_of(key, MAX_WORKERS);
    let mut out = Vec::new();
    for (set, ids) in connections {
        read_channels(&set, &ids, &mut out);
    }
    out.sort_by_key(|w| (w.client_id, w.channel_id));
    (out, total)
}

fn read_channels(set: &Arc<Mutex<ChannelSet>>, ids: &[u32], out: &mut Vec<WorkerView>) {
    let set = set.lock().unwrap_or_else(|p| p.into_inner());
    for id in ids {
        let Some(entry) = set.channels().get(id) else {
            continue;
        };
        let c = entry.channel();
        let a = c.share_accounting();
        out.push(WorkerView {
            client_id: set.client_id,
            vendor: set.vendor.clone(),
            channel_id: *id,
            kind: match entry.kind {
                ChannelKind::Standard(_) => "standard",
                ChannelKind::Extended(_) => "extended",
            },
            user_identity: c.user_identity().to_string(),
            difficulty: c.target().difficulty_float(),
            best_difficulty: entry.best_difficulty,
            nominal_hashrate: f64::from(c.nominal_hashrate()),
            shares_accepted: u64::from(a.get_shares_accepted()),
            last_share_ms: entry.last_share_ms,
            shares_rejected: u64::from(a.get_rejected_shares_count()),
            rejected_by_reason: a
                .get_rejected_shares()
                .map(|(reason, n)| (reason.to_string(), u64::from(n)))
                .collect(),
        });
    }
}
