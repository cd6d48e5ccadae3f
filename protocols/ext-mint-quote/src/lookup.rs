//! The mint's quote lookup (HTTP, beside the Cashu API): a wallet that missed announcements
//! lists every quote locked to its key. The request is signed by that key so nobody else can
//! enumerate a miner's quotes. The signed message names the mint (a request captured at one
//! mint is worthless at another) and a nonce the mint accepts once (a captured request cannot be
//! replayed at the same mint); the timestamp bounds how long the mint must remember nonces.

use serde::{Deserialize, Serialize};

/// Route on the mint's HTTP server (`POST`, JSON).
pub const QUOTE_LOOKUP_PATH: &str = "/v1/hashpool/quotes";

/// Requests signed further than this from the mint's clock are refused.
pub const QUOTE_LOOKUP_MAX_SKEW_SECS: u64 = 300;

/// Shortest nonce the mint accepts (hex characters: 64 bits, so honest nonces never collide).
pub const QUOTE_LOOKUP_NONCE_MIN_LEN: usize = 16;
/// Longest nonce the mint accepts (hex characters).
pub const QUOTE_LOOKUP_NONCE_MAX_LEN: usize = 64;

/// The bytes a wallet signs (BIP340 over their SHA-256, as NUT-20 does): a domain tag, the
/// locking key in lowercase hex, the Unix time in seconds, the nonce and the mint's URL as the
/// wallet reaches it. The URL comes last: it may contain `:`, the fields before it cannot.
pub fn quote_lookup_message(
    locking_key_hex: &str,
    unix_time: u64,
    nonce: &str,
    mint_url: &str,
) -> Vec<u8> {
    format!("hashpool/quote-lookup/v2:{locking_key_hex}:{unix_time}:{nonce}:{mint_url}")
        .into_bytes()
}

/// Whether `nonce` has the shape the mint accepts: lowercase hex, 16 to 64 characters.
pub fn valid_lookup_nonce(nonce: &str) -> bool {
    (QUOTE_LOOKUP_NONCE_MIN_LEN..=QUOTE_LOOKUP_NONCE_MAX_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Body of a lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuoteLookupRequest {
    /// The locking key, 66 hex characters.
    pub pubkey: String,
    /// Unix seconds the request was signed at.
    pub time: u64,
    /// Fresh random lowercase hex (16 to 64 characters), used once.
    #[serde(default)]
    pub nonce: String,
    /// The mint's URL as the wallet reaches it (one of the URLs the mint is configured with).
    #[serde(default)]
    pub mint: String,
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
    fn message_binds_key_time_nonce_and_mint() {
        let a = quote_lookup_message("02ab", 10, "00ff", "http://m:3338");
        assert_ne!(a, quote_lookup_message("02ab", 11, "00ff", "http://m:3338"));
        assert_ne!(a, quote_lookup_message("03ab", 10, "00ff", "http://m:3338"));
        assert_ne!(a, quote_lookup_message("02ab", 10, "00fe", "http://m:3338"));
        assert_ne!(a, quote_lookup_message("02ab", 10, "00ff", "http://n:3338"));
        assert_eq!(a, b"hashpool/quote-lookup/v2:02ab:10:00ff:http://m:3338");
    }

    #[test]
    fn nonces_are_short_lowercase_hex() {
        assert!(valid_lookup_nonce(&"a1".repeat(8)));
        assert!(valid_lookup_nonce(&"0".repeat(64)));
        assert!(!valid_lookup_nonce(&"a".repeat(15)), "too short");
        assert!(!valid_lookup_nonce(&"a".repeat(65)), "too long");
        assert!(!valid_lookup_nonce(&"A".repeat(16)), "uppercase");
        assert!(!valid_lookup_nonce("00ff00ff00ff00f:"), "not hex");
    }
}
