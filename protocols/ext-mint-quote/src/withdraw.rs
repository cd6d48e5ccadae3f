//! Withdrawal in the coinbase (docs/settlement.md, "Withdrawals in the coinbase"): a melt of
//! sats (unit `sat`) whose quote `request` names the amount and the address; the mint records
//! it and the pool pays it in a coinbase output of one of its next blocks.

use crate::ExtError;

/// The Cashu payment method of withdrawals (NUT-05 `method`, unit `sat`).
pub const WITHDRAW_METHOD: &str = "hashpool-coinbase";

/// The mint's signed list of withdrawals, which the pool reads to pay them.
pub const WITHDRAWALS_PATH: &str = "/v1/hashpool/withdrawals";

/// Longest address accepted (bech32m of a 40-byte program is 74 characters on mainnet).
const MAX_ADDRESS_LEN: usize = 90;

/// A withdrawal melt quote's `request`: `coinbase:<sats>:<address>`.
pub fn withdraw_request(sats: u64, address: &str) -> String {
    format!("coinbase:{sats}:{address}")
}

/// What a withdrawal melt quote's `request` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawRequest {
    pub sats: u64,
    /// As written; the mint checks it is an address of its chain.
    pub address: String,
}

/// Parses [`withdraw_request`]'s format strictly: a decimal amount without sign, an address
/// of letters and digits only, nothing else.
pub fn parse_withdraw_request(request: &str) -> Result<WithdrawRequest, ExtError> {
    let malformed = || {
        ExtError::Malformed(format!(
            "a withdrawal request is coinbase:<sats>:<address>, not {request:.120}"
        ))
    };
    let fields: Vec<&str> = request.split(':').collect();
    let ["coinbase", sats, address] = fields.as_slice() else {
        return Err(malformed());
    };
    let sats = (!sats.is_empty() && sats.bytes().all(|b| b.is_ascii_digit()))
        .then(|| sats.parse::<u64>().ok())
        .flatten()
        .ok_or_else(malformed)?;
    let address_ok = !address.is_empty()
        && address.len() <= MAX_ADDRESS_LEN
        && address.bytes().all(|b| b.is_ascii_alphanumeric());
    if !address_ok {
        return Err(malformed());
    }
    Ok(WithdrawRequest {
        sats,
        address: address.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawal_request_reads_back_and_nothing_else_parses() {
        let address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
        let r = withdraw_request(25_000, address);
        assert_eq!(
            parse_withdraw_request(&r).unwrap(),
            WithdrawRequest {
                sats: 25_000,
                address: address.into()
            }
        );
        for bad in [
            "coinbase:25000".to_string(),
            format!("coinbase:25000:{address}:x"),
            format!("coinbase:-25000:{address}"),
            format!("coinbase:+25000:{address}"),
            format!("coinbase::{address}"),
            format!("coinbase:18446744073709551616:{address}"),
            format!("coinbase:25000:{address} "),
            "coinbase:25000:".to_string(),
            format!("coinbase:25000:{}", "a".repeat(91)),
            format!("redeem:25000:{address}"),
        ] {
            assert!(parse_withdraw_request(&bad).is_err(), "{bad} parsed");
        }
    }
}
