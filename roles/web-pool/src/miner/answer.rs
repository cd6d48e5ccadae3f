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
