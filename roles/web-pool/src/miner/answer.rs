//! The pool's answer for one key (`GET /api/v1/miners/{key}` on `pool.api_address`; the pool's
//! `observability::miner_view` writes it). Missing fields read as empty: a page from an older
//! pool shows less, never fails.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MinerAnswer {
    pub key: String,
    pub unit: String,
    pub now_ms: i64,
    pub known: bool,
    pub shares_accepted: u64,
    pub last_share_ms: Option<i64>,
    pub ehash: Ehash,
    pub hashrate: Vec<Window>,
    pub workers_total: usize,
    pub workers: Vec<Worker>,
    pub shares_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub blocks_found: u64,
    pub blocks: Vec<Block>,
    pub quotes: Vec<Quote>,
    /// The key's quoted ehash in each of the newest epochs, newest first.
    pub epochs: Vec<EpochEhash>,
    /// Those epochs as the pool's settlement report values them (filled by web-pool).
    #[serde(skip)]
    pub epoch_values: Vec<EpochValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EpochEhash {
    pub epoch: u32,
    pub ehash: u64,
}

/// One epoch of the key's ehash with its state and, once final, its value in sats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EpochValue {
    pub epoch: u32,
    pub ehash: u64,
    /// `open`, `closed`, `final`; `unknown` without the pool's report.
    pub state: String,
    /// `floor(ehash x reward / epoch's ehash)` once final.
    pub sats: Option<u64>,
}

impl MinerAnswer {
    /// Values the key's epochs with the pool's settlement report (`Value::Null`: none).
    pub fn value_epochs(&mut self, report: &serde_json::Value) {
        let epochs = report["epochs"].as_array();
        self.epoch_values = self
            .epochs
            .iter()
            .map(|e| {
                let reported = epochs.and_then(|all| all.iter().find(|r| r["index"] == e.epoch));
                let state = reported
                    .and_then(|r| r["state"].as_str())
                    .unwrap_or("unknown")
                    .to_string();
                let sats = reported.and_then(|r| {
                    let reward = r["rate"][0].as_u64()?;
                    let issued = r["rate"][1].as_u64().filter(|&i| i > 0)?;
                    // The epoch's whole ehash is `issued`: the key's share of it cannot pass
                    // it, and the product fits in 128 bits.
                    let sats =
                        u128::from(e.ehash.min(issued)) * u128::from(reward) / u128::from(issued);
                    u64::try_from(sats).ok()
                });
                EpochValue {
                    epoch: e.epoch,
                    ehash: e.ehash,
                    state,
                    sats,
                }
            })
            .collect();
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Ehash {
    pub accrued: String,
    pub quoted: u64,
    pub requested: u64,
    pub pending: String,
    pub unquoted: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Window {
    pub window: String,
    pub secs: u64,
    pub hashrate: f64,
    pub shares: u64,
    pub complete: bool,
    pub covered_from_ms: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Worker {
    pub vendor: String,
    pub channel_id: u32,
    pub kind: String,
    pub user_identity: String,
    pub difficulty: f64,
    pub best_difficulty: f64,
    pub nominal_hashrate: f64,
    pub shares_accepted: u64,
    pub shares_rejected: u64,
    pub last_share_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Block {
    pub hash: String,
    pub channel_id: u32,
    pub at_ms: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Quote {
    pub quote_id: String,
    pub amount: u64,
    pub at_ms: i64,
}
