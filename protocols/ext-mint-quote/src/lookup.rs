//! The mint's quote lookup (HTTP, beside the Cashu API): a wallet that missed announcements
//! lists every quote locked to its key. The request is signed by that key so nobody else can
//! enumerate a miner's quotes; the timestamp bounds how long a captured request stays usable.

use serde::{Deserialize, Serialize};

/// Route on the mint's HTTP server (`POST`, JSON).
pub const QUOTE_LOOKUP_PATH: &str = "/v1/hashpool/quotes";

/// Requests signed further than this from the mint's clock are refused.
pub const QUOTE_LOOKUP_MAX_SKEW_SECS: u64 = 300;

/// The bytes a wallet signs (BIP340 over their SHA-256, as NUT-20 does): a domain tag, the
/// locking key in lowercase hex and the Unix time in seconds.
pub fn quote_lookup_message(locking_key_hex: &str, unix_time: u64) -> Vec<u8> {
    format!("hashpool/quote-lookup/v1:{locking_key_hex}:{unix_time}").into_bytes()
}

/// Body of a lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteLookupRequest {
    /// The locking key, 66 hex characters.
    pub pubkey: String,
    /// Unix seconds the request was signed at.
    pub time: u64,
    /// BIP340 signature (hex) by `pubkey` of SHA-256([`quote_lookup_message`]).
    pub signature: String,
    /// Only quotes after this cursor (a quote's `cursor` from an earlier answer).
    #[serde(default)]
    pub after: Option<String>,
}

/// One quote locked to the key, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookedUpQuote {
    pub quote: String,
    /// Paid amount of the quote (ehash).
    pub amount: u64,
    /// Already minted by a wallet.
    pub amount_issued: u64,
    pub created_time: u64,
    /// Position in the key's list: pass it as `after` to continue from here.
    pub cursor: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteLookupResponse {
    pub quotes: Vec<LookedUpQuote>,
    /// More quotes follow: ask again with this as `after`.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_key_and_time() {
        let a = quote_lookup_message("02ab", 10);
        assert_ne!(a, quote_lookup_message("02ab", 11));
        assert_ne!(a, quote_lookup_message("03ab", 10));
        assert_eq!(a, b"hashpool/quote-lookup/v1:02ab:10");
    }
}
