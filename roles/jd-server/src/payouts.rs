//! The pool's withdrawal payouts a declared coinbase must carry (docs/job-declaration.md,
//! docs/settlement.md "Withdrawals in the coinbase"). At each token allocation the jd-server
//! asks the pool, signed with its key, which payouts a coinbase at the next height pays; the
//! pool offers them at that height as for its own templates, and the token carries them to
//! the declaration, where the coinbase must pay each.

use std::time::Duration;

use bitcoin::{Amount, ScriptBuf, TxOut};
use hashpool_settlement::withdrawals::{
    OfferedPayout, PayoutOfferRequest, SignedPayoutOffer, PAYOUT_OFFER_TAG,
};

/// Payouts one coinbase carries at most, whatever the pool answers.
pub const MAX_PAYOUTS: usize = 1_000;

/// The longest payout script: a standard output's (P2WSH, P2TR). The mint withdraws to nothing
/// longer, and with [`MAX_PAYOUTS`] the token's outputs always fit their message field.
pub const MAX_PAYOUT_SCRIPT: usize = 34;

pub struct PayoutClient {
    url: String,
    secret_key: [u8; 32],
    http: reqwest::Client,
}

impl PayoutClient {
    pub fn new(url: String, secret_key: [u8; 32]) -> Self {
        Self {
            url,
            secret_key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// The payouts a coinbase at `height` leaving `value` must carry, as outputs.
    pub async fn offered(&self, height: u32, value: Amount) -> Result<Vec<TxOut>, String> {
        let request = SignedPayoutOffer::sign(
            PAYOUT_OFFER_TAG,
            &self.secret_key,
            PayoutOfferRequest {
                height,
                value_sats: value.to_sat(),
                at: hashpool_role::unix_now(),
            },
        )
        .map_err(|e| e.to_string())?;
        let answer: Vec<OfferedPayout> = self
            .http
            .post(&self.url)
            .json(&request)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("{}: {e}", self.url))?
            .json()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        outputs(&answer, value)
    }
}

/// The pool's answer as coinbase outputs, checked: scripts in hex, at most [`MAX_PAYOUTS`],
/// together within `value`.
pub fn outputs(answer: &[OfferedPayout], value: Amount) -> Result<Vec<TxOut>, String> {
    if answer.len() > MAX_PAYOUTS {
        return Err(format!("the pool asks for {} payouts", answer.len()));
    }
    let mut total = Amount::ZERO;
    let mut out = Vec::with_capacity(answer.len());
    for p in answer {
        let script = ScriptBuf::from_hex(&p.script)
            .map_err(|_| format!("payout {}: the script is not hex", p.quote_id))?;
        if script.is_empty() || script.len() > MAX_PAYOUT_SCRIPT {
            return Err(format!(
                "payout {}: a {}-byte script (1 to {MAX_PAYOUT_SCRIPT})",
                p.quote_id,
                script.len()
            ));
        }
        let sats = Amount::from_sat(p.sats);
        total = total
            .checked_add(sats)
            .filter(|t| *t <= value)
            .ok_or_else(|| format!("the pool's payouts exceed the {value} the block leaves"))?;
        out.push(TxOut {
            value: sats,
            script_pubkey: script,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(script: &str, sats: u64) -> OfferedPayout {
        OfferedPayout {
            quote_id: "q".into(),
            sats,
            script: script.into(),
        }
    }

    #[test]
    fn the_pools_answer_is_bounded_before_it_becomes_outputs() {
        let p2wpkh = "0014751e76e8199196d454941c45d1b3a323f1433bd6";
        let value = Amount::from_sat(50_000);
        let ok = outputs(&[offered(p2wpkh, 20_000), offered(p2wpkh, 30_000)], value).unwrap();
        assert_eq!(ok.len(), 2);
        for (what, answer) in [
            (
                "over the value",
                vec![offered(p2wpkh, 30_000), offered(p2wpkh, 30_000)],
            ),
            ("not hex", vec![offered("zz", 1)]),
            ("empty script", vec![offered("", 1)]),
            ("a 35-byte script", vec![offered(&"00".repeat(35), 1)]),
            ("too many", vec![offered(p2wpkh, 0); MAX_PAYOUTS + 1]),
        ] {
            assert!(outputs(&answer, value).is_err(), "{what}");
        }
    }
}
