//! The settlement section of the operator's page, from the pool's `/api/v1/settlement`:
//! the fee and the carry, the epochs (newest first: state, ehash, reward, pending reward, rate)
//! and the found blocks (newest first: height, standing, value, what they paid).

use hashpool_web::units;
use serde_json::{json, Value};

/// Epochs and blocks the page lists at most.
const ROWS: usize = 20;

/// `0.0153 sat/hash`; a dash without a rate.
fn rate_text(rate: &Value) -> String {
    match (rate[0].as_u64(), rate[1].as_u64()) {
        (Some(reward), Some(ehash)) if ehash > 0 => {
            format!("{:.4} sat/hash", reward as f64 / ehash as f64)
        }
        _ => "–".into(),
    }
}

fn sats_text(v: &Value) -> String {
    v.as_i64().map_or("–".into(), units::sats_as_btc)
}

/// What is still owed: the final epochs' rewards less the sats redemptions issued (an upper
/// bound: each redemption leaves its rounding with the mint), the sat ecash not withdrawn,
/// and the withdrawals the pool's coinbases have not paid yet. `mint` is the mint's report of
/// the newest final epoch (its sat figures are the mint's whole), `payouts` the pool's
/// payout summary; either may be `null` (a dash).
fn liabilities(epochs: &[Value], payouts: &Value, mint: &Value) -> Value {
    let final_rewards: u64 = epochs
        .iter()
        .filter(|e| e["state"] == "final")
        .filter_map(|e| e["reward_sats"].as_u64())
        .fold(0, u64::saturating_add);
    let m = &mint["body"];
    let issued = m["mint_sats_issued"].as_u64();
    let withdrawn = m["sats_withdrawn"].as_u64();
    // No final epoch: nothing is redeemable yet, whatever the mint says.
    let unredeemed = if final_rewards == 0 {
        Some(0)
    } else {
        issued.map(|i| final_rewards.saturating_sub(i))
    };
    let ecash = issued.zip(withdrawn).map(|(i, w)| i.saturating_sub(w));
    let text = |v: Option<u64>| v.map_or("–".into(), |s| units::sats_as_btc(s as i64));
    let count = |state: &str| payouts["by_state"][state]["count"].as_u64().unwrap_or(0);
    json!({
        "unredeemed_text": text(unredeemed),
        "sat_ecash_text": text(ecash),
        "owed_text": text(payouts["owed_sats"].as_u64()),
        "owed_count": count("queued") + count("offered"),
    })
}

/// What the page shows of the pool's settlement report (`Value::Null`: none: the pool has no
/// `[settlement]`, or its API is off or unreachable), its payouts and the mint's report.
pub(crate) fn view(report: &Value, payouts: &Value, mint: &Value) -> Value {
    let Some(epochs) = report["epochs"].as_array() else {
        return json!({ "on": false, "epochs": [], "blocks": [] });
    };
    let epoch_rows: Vec<Value> = epochs
        .iter()
        .rev()
        .take(ROWS)
        .map(|e| {
            json!({
                "index": e["index"],
                "state": e["state"],
                "ehash": e["ehash_quoted"],
                "reward_text": sats_text(&e["reward_sats"]),
                "pending_text": sats_text(&e["pending_sats"]),
                "rate_text": rate_text(&e["rate"]),
            })
        })
        .collect();
    let block_rows: Vec<Value> = report["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .rev()
                .take(ROWS)
                .map(|b| {
                    let paid: i64 = b["paid"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .filter_map(|e| e[1].as_i64())
                                .fold(0i64, i64::saturating_add)
                        })
                        .unwrap_or(0);
                    json!({
                        "height_text": b["height"].as_i64().map_or("–".into(), |h| h.to_string()),
                        "status": b["status"],
                        "value_text": sats_text(&b["value_sats"]),
                        "paid_text": units::sats_as_btc(paid),
                        "epochs": b["paid"].as_array().map_or(0, Vec::len),
                        "hash": b["hash"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let fee_ppm = report["fee_ppm"].as_u64().unwrap_or(0);
    json!({
        "on": true,
        "fee_text": format!("{:.2} %", fee_ppm as f64 / 10_000.0),
        "window_text": format!("{} blocks of work", report["window_multiplier"].as_u64().unwrap_or(0)),
        "fees_text": sats_text(&report["fees_sats"]),
        "carry_text": sats_text(&report["carry_sats"]),
        "final_epochs": epochs.iter().filter(|e| e["state"] == "final").count(),
        "liabilities": liabilities(epochs, payouts, mint),
        "epochs": epoch_rows,
        "blocks": block_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settlement_view_reads_the_pools_report() {
        let report = json!({
            "fee_ppm": 20_000, "window_multiplier": 8, "pool_work": "5000",
            "fees_sats": 100_000_000i64, "carry_sats": 7,
            "epochs": [
                {"index": 0, "state": "final", "ehash_quoted": 1_000, "reward_sats": 15_300,
                 "pending_sats": 0, "rate": [15_300, 1_000], "start_work": "0", "end_work": "10",
                 "planned_length": "10", "blocks": 2},
                {"index": 1, "state": "open", "ehash_quoted": 0, "reward_sats": 0,
                 "pending_sats": 5, "rate": null, "start_work": "10", "end_work": null,
                 "planned_length": "10", "blocks": 1},
            ],
            "blocks": [
                {"hash": "aa", "height": 7, "status": "matured", "value_sats": 5_000_000_000i64,
                 "fee_sats": 100_000_000, "paid": [[0, 4_000_000_000i64], [1, 900_000_000]],
                 "carry_in": 0, "carry_out": 7, "window": ["0", "10", "16"]},
                {"hash": "bb", "height": 8, "status": "orphaned", "value_sats": 5_000_000_000i64,
                 "fee_sats": 0, "paid": [], "carry_in": 7, "carry_out": 7, "window": null},
            ],
        });
        let payouts = json!({ "owed_sats": 65_000, "by_state": {
            "queued": {"count": 1, "sats": 25_000}, "offered": {"count": 1, "sats": 40_000},
            "matured": {"count": 3, "sats": 90_000} } });
        let mint = json!({ "body": { "mint_sats_issued": 10_000, "sats_withdrawn": 4_000 } });
        let v = view(&report, &payouts, &mint);
        // 15,300 of final epochs' reward, 10,000 of it redeemed; 6,000 sats not withdrawn.
        assert_eq!(v["liabilities"]["unredeemed_text"], "0.00005300 BTC");
        assert_eq!(v["liabilities"]["sat_ecash_text"], "0.00006000 BTC");
        assert_eq!(v["liabilities"]["owed_text"], "0.00065000 BTC");
        assert_eq!(v["liabilities"]["owed_count"], 2);
        let unknown = view(&report, &Value::Null, &Value::Null);
        assert_eq!(unknown["liabilities"]["sat_ecash_text"], "–");
        assert_eq!(v["on"], true);
        assert_eq!(v["fee_text"], "2.00 %");
        assert_eq!(v["final_epochs"], 1);
        assert_eq!(v["carry_text"], "0.00000007 BTC");
        // Newest first.
        assert_eq!(v["epochs"][0]["index"], 1);
        assert_eq!(v["epochs"][0]["rate_text"], "–");
        assert_eq!(v["epochs"][1]["rate_text"], "15.3000 sat/hash");
        assert_eq!(v["epochs"][1]["reward_text"], "0.00015300 BTC");
        assert_eq!(v["blocks"][0]["status"], "orphaned");
        assert_eq!(v["blocks"][1]["paid_text"], "49.00000000 BTC");
        assert_eq!(v["blocks"][1]["epochs"], 2);
    }

    #[test]
    fn no_report_is_settlement_off() {
        let v = view(&Value::Null, &Value::Null, &Value::Null);
        assert_eq!(v["on"], false);
        assert_eq!(v["epochs"].as_array().map(Vec::len), Some(0));
    }
}
