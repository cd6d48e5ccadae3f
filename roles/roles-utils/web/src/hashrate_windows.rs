//! The hashrate cards both dashboards show: the work accepted over the last minute, hour and
//! day, each card labelled with its window and saying how much of it the stats service has
//! seen (a service started ten minutes ago has no day of work to average).

use serde_json::{json, Value};

use crate::{html, units};

/// The windows shown: the stats API's name (`?windows=`) and the label.
pub const WINDOWS: [(&str, &str); 3] = [("1m", "1 min"), ("1h", "1 h"), ("1d", "24 h")];

/// `windows=1m,1h,1d`, for the stats service's `/api/v1/hashrate`.
pub fn query() -> String {
    format!("windows={}", WINDOWS.map(|(name, _)| name).join(","))
}

/// A row of cards headed `what` (`Pool hashrate`) and the window: each value is
/// `#hashrate-{window}`, its note `#hashrate-{window}-note`, filled by `hp.windows`.
pub fn cards(what: &str) -> String {
    let cards: String = WINDOWS
        .iter()
        .map(|(name, label)| {
            format!(
                r#"<div class="card"><div class="label">{what}, last {label}</div><div class="value" id="hashrate-{name}">–</div><div class="note" id="hashrate-{name}-note"></div></div>"#,
                what = html::escape(what)
            )
        })
        .collect();
    format!(r#"<div class="cards" id="hashrate-windows">{cards}</div>"#)
}

/// The windows of a stats hashrate answer as the cards show them (`window`, `hashrate`,
/// `hashrate_text`, `note`), one per [`WINDOWS`] whatever the answer held.
pub fn from_answer(answer: &Value) -> Vec<Value> {
    let answered = answer["windows"].as_array();
    WINDOWS
        .iter()
        .map(|(name, _)| {
            let Some(w) = answered.and_then(|ws| ws.iter().find(|w| w["window"] == *name)) else {
                return json!({
                    "window": name,
                    "hashrate": Value::Null,
                    "hashrate_text": "–",
                    "note": "no answer from the stats service",
                });
            };
            let hashrate = w["hashrate"].as_f64().unwrap_or(0.0);
            let shares = w["shares"].as_i64().unwrap_or(0);
            let covered = w["covered_secs"].as_i64().unwrap_or(0);
            let note = if covered <= 0 {
                "no work reported yet".to_string()
            } else if w["complete"] == true {
                format!("{shares} shares")
            } else {
                format!(
                    "{shares} shares in the {} seen so far",
                    units::span(covered)
                )
            };
            json!({
                "window": name,
                "hashrate": hashrate,
                "hashrate_text": units::hashrate(hashrate),
                "note": note,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_is_labelled_and_says_what_it_covers() {
        assert_eq!(query(), "windows=1m,1h,1d");
        let answer = json!({"windows": [
            {"window": "1d", "secs": 86400, "hashrate": 2.5e12, "shares": 7, "covered_secs": 600, "complete": false},
            {"window": "1m", "secs": 60, "hashrate": 1500.0, "shares": 12, "covered_secs": 60, "complete": true},
            {"window": "1h", "secs": 3600, "hashrate": 0.0, "shares": 0, "covered_secs": 0, "complete": false},
        ]});
        let shown = from_answer(&answer);
        let rows: Vec<(&str, &str, &str)> = shown
            .iter()
            .map(|w| {
                (
                    w["window"].as_str().unwrap(),
                    w["hashrate_text"].as_str().unwrap(),
                    w["note"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("1m", "1.50 kH/s", "12 shares"),
                ("1h", "0.00 H/s", "no work reported yet"),
                ("1d", "2.50 TH/s", "7 shares in the 10 min seen so far"),
            ]
        );
        // The stats service down: every card says so instead of keeping an old figure.
        for w in from_answer(&Value::Null) {
            assert_eq!(w["hashrate_text"], "–");
            assert_eq!(w["note"], "no answer from the stats service");
        }
        let html = cards("Pool <hashrate>");
        for id in ["hashrate-1m", "hashrate-1h-note", "hashrate-1d"] {
            assert!(html.contains(&format!(r#"id="{id}""#)), "{id}");
        }
        assert!(html.contains("Pool &lt;hashrate&gt;, last 24 h"));
    }
}
