//! A wallet's audit of the pool's settlement (docs/settlement.md, "Proof of liabilities"):
//! from what the pool publishes (its report, its signed rate sheet, the signed commitments of
//! the epochs the wallet's quotes are in, and each quote's inclusion proof) it checks that
//! - the sheet and each commitment are signed by the pool's key;
//! - each of the wallet's quotes is a leaf of its epoch's commitment, with its key and amount;
//! - each final rate's ehash is the committed total of its epoch's quotes;
//! - each final rate's reward follows, by the rules, from the blocks and epochs the pool
//!   publishes, and the epoch is final by them;
//!
//! and values the wallet's ehash per epoch at the final rates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    merkle_sum::{verify, Leaf, Proof},
    rates::{EpochCommitment, RateSheet, EPOCH_TAG, RATES_TAG},
    redemption_sats,
    settle::{settle, FoundBlock, Standing},
    Block, Epochs, Params,
};

/// The pool's answer for one quote (`/api/v1/settlement/quotes/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteAnswer {
    pub epoch: u32,
    pub leaf: Leaf,
    pub proof: Proof,
}

/// One of the wallet's quotes; `answer` is `None` while it is in no closed epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletQuote {
    pub id: String,
    pub amount: u64,
    pub answer: Option<QuoteAnswer>,
}

/// What the pool publishes.
#[derive(Debug, Clone)]
pub struct Published {
    pub report: Value,
    pub sheet: RateSheet,
    pub commitments: BTreeMap<u32, EpochCommitment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochAudit {
    pub epoch: u32,
    /// The wallet's ehash in it.
    pub ehash: u64,
    /// `final` when the signed sheet has its rate; else as the report says.
    pub state: String,
    /// Its value at the final rate.
    pub sats: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    pub epochs: Vec<EpochAudit>,
    /// The wallet's ehash in no closed epoch yet.
    pub unplaced: u64,
    /// What did not check out; empty when everything did.
    pub problems: Vec<String>,
}

fn work(v: &Value) -> Option<u128> {
    v.as_str()?.parse().ok()
}

/// Each epoch's matured reward and whether it is final, by the rules, from the report's epochs
/// and blocks; `Err` names what the report lacks.
fn recompute(report: &Value) -> Result<(Vec<u64>, Vec<bool>), String> {
    let fee = report["fee_ppm"].as_u64().ok_or("no fee_ppm")?;
    let k = report["window_multiplier"]
        .as_u64()
        .ok_or("no window_multiplier")?;
    let params = Params::new(
        u32::try_from(fee).map_err(|_| "fee_ppm out of range")?,
        u32::try_from(k).map_err(|_| "window_multiplier out of range")?,
    )
    .map_err(|e| e.to_string())?;
    let mut epochs = Epochs::new();
    for e in report["epochs"].as_array().ok_or("no epochs")? {
        let (Some(start), Some(length), Some(network_work)) = (
            work(&e["start_work"]),
            work(&e["planned_length"]),
            work(&e["network_work"]),
        ) else {
            return Err(format!("epoch {} lacks its work figures", e["index"]));
        };
        epochs
            .open(start, length, network_work)
            .map_err(|err| format!("epoch {}: {err}", e["index"]))?;
        if let Some(end) = work(&e["end_work"]) {
            epochs
                .close(end)
                .map_err(|err| format!("epoch {}: {err}", e["index"]))?;
        }
    }
    let mut blocks = Vec::new();
    for b in report["blocks"].as_array().ok_or("no blocks")? {
        let standing = match b["status"].as_str() {
            Some("pending") => Standing::Pending,
            Some("matured") => Standing::Matured,
            Some("orphaned") => Standing::Orphaned,
            _ => return Err(format!("block {} has no standing", b["hash"])),
        };
        let facts = (
            work(&b["pool_work"]),
            work(&b["network_work"]),
            b["value_sats"].as_u64(),
        );
        blocks.push(match facts {
            (Some(pool_work), Some(network_work), Some(value_sats)) => FoundBlock {
                block: Block {
                    pool_work,
                    network_work,
                    value_sats,
                },
                standing,
            },
            _ => FoundBlock {
                block: Block {
                    pool_work: 0,
                    network_work: 0,
                    value_sats: 0,
                },
                standing: Standing::Unknown,
            },
        });
    }
    let settled = settle(&params, &epochs, &blocks).map_err(|e| e.to_string())?;
    let pool_work = work(&report["pool_work"]).ok_or("no pool_work")?;
    let finals = (0..epochs.len() as u32)
        .map(|i| settled.is_final(&params, &epochs, i, pool_work))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((settled.reward, finals))
}

/// Audits `quotes` of the key `key_hex` against what the pool whose x-only key is `pool_key`
/// published.
pub fn audit(
    pool_key: &[u8; 32],
    key_hex: &str,
    quotes: &[WalletQuote],
    published: &Published,
) -> AuditReport {
    let mut problems = Vec::new();
    if let Err(e) = published.sheet.verify(RATES_TAG, pool_key) {
        problems.push(format!("the rate sheet: {e}"));
    }
    let mut by_epoch: BTreeMap<u32, u64> = BTreeMap::new();
    let mut unplaced = 0u64;
    for q in quotes {
        let Some(answer) = &q.answer else {
            unplaced = unplaced.saturating_add(q.amount);
            continue;
        };
        let Some(commitment) = published.commitments.get(&answer.epoch) else {
            problems.push(format!(
                "quote {}: epoch {}'s commitment is missing",
                q.id, answer.epoch
            ));
            continue;
        };
        let leaf_ok =
            answer.leaf.id == q.id && answer.leaf.amount == q.amount && answer.leaf.key == key_hex;
        if !leaf_ok || !verify(&answer.leaf, &answer.proof, &commitment.body.root) {
            problems.push(format!(
                "quote {} ({} ehash) is not counted in epoch {}'s commitment",
                q.id, q.amount, answer.epoch
            ));
            continue;
        }
        let held = by_epoch.entry(answer.epoch).or_default();
        *held = held.saturating_add(q.amount);
    }
    for (epoch, commitment) in &published.commitments {
        if let Err(e) = commitment.verify(EPOCH_TAG, pool_key) {
            problems.push(format!("epoch {epoch}'s commitment: {e}"));
        }
        if commitment.body.epoch != *epoch {
            problems.push(format!("epoch {epoch}'s commitment is for another epoch"));
        }
    }
    let recomputed = recompute(&published.report);
    if let Err(e) = &recomputed {
        problems.push(format!("the report cannot be recomputed: {e}"));
    }
    let rates: BTreeMap<u32, (u64, u64)> = published
        .sheet
        .body
        .iter()
        .map(|r| (r.epoch, (r.reward_sats, r.ehash)))
        .collect();
    for (&epoch, &(reward, ehash)) in &rates {
        if let Ok((rewards, finals)) = &recomputed {
            let i = epoch as usize;
            if rewards.get(i) != Some(&reward) {
                problems.push(format!(
                    "epoch {epoch}: the signed reward {reward} sats is not what the published blocks give ({})",
                    rewards.get(i).map_or("no such epoch".into(), |r| format!("{r} sats"))
                ));
            }
            if finals.get(i) != Some(&true) {
                problems.push(format!(
                    "epoch {epoch} has a signed rate but is not final by the published blocks"
                ));
            }
        }
        if let Some(c) = published.commitments.get(&epoch) {
            if c.body.root.sum != ehash {
                problems.push(format!(
                    "epoch {epoch}: the signed rate divides by {ehash} ehash, its quotes commit to {}",
                    c.body.root.sum
                ));
            }
        }
    }
    let report_state = |epoch: u32| {
        published.report["epochs"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["index"] == epoch))
            .and_then(|e| e["state"].as_str())
            .unwrap_or("unknown")
            .to_string()
    };
    let epochs = by_epoch
        .into_iter()
        .map(|(epoch, ehash)| match rates.get(&epoch) {
            Some(&(reward, issued)) => EpochAudit {
                epoch,
                ehash,
                state: "final".into(),
                sats: redemption_sats(ehash, reward, issued).ok(),
            },
            None => EpochAudit {
                epoch,
                ehash,
                state: report_state(epoch),
                sats: None,
            },
        })
        .collect();
    AuditReport {
        epochs,
        unplaced,
        problems,
    }
}
