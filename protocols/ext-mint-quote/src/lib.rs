//! The mint-quote extension of Stratum V2 (see `SPEC.md` beside this crate).
//!
//! Pool and mint exchange quote requests, responses and errors; the pool announces quotes on a
//! miner's connection; a miner names its locking key in a TLV on the channel-open message.
//! This crate holds the messages and their strict decoding only: it knows nothing about roles.

mod epochs;
mod locking_key;
mod lookup;
mod messages;
mod mint_link;
mod withdraw;

pub use epochs::{EpochKeyset, EpochRate, EpochsResponse, EPOCHS_PATH};
pub use locking_key::{locking_key_from_tlvs, locking_key_tlv, LockingKey, LOCKING_KEY_LEN};
pub use lookup::{
    quote_lookup_message, valid_lookup_nonce, LookedUpQuote, QuoteLookupRequest,
    QuoteLookupResponse, QUOTE_LOOKUP_MAX_SKEW_SECS, QUOTE_LOOKUP_NONCE_MAX_LEN,
    QUOTE_LOOKUP_NONCE_MIN_LEN, QUOTE_LOOKUP_PATH,
};
pub use messages::{
    decode_announcement, AnnouncedQuote, MintLinkAuth, MintLinkAuthOwned, MintLinkChallenge,
    MintLinkChallengeOwned, MintQuoteError, MintQuoteErrorOwned, MintQuoteMessage,
    MintQuoteRequest, MintQuoteRequestOwned, MintQuoteResponse, MintQuoteResponseOwned,
    QuoteAnnouncement, QuoteAnnouncementOwned,
};
pub use mint_link::{
    mint_link_auth_digest, new_challenge, sign_challenge, verify_challenge, MintLinkAuthError,
};
pub use withdraw::{
    parse_withdraw_request, withdraw_request, WithdrawRequest, WITHDRAWALS_PATH, WITHDRAW_METHOD,
};

/// The Cashu payment method of ehash quotes (NUT-04 `method`), as the mint serves it and
/// wallets mint it.
pub const EHASH_METHOD: &str = "ehash";

/// The Cashu payment method of redemption (docs/settlement.md, "Redemption"): a melt of a
/// final epoch's ehash (unit `hash`) pays a mint quote of unit `sat` locked to the holder's
/// key, by the same method.
pub const REDEEM_METHOD: &str = "hashpool-redeem";

/// A redemption melt quote's `request`: `redeem:<epoch>:<ehash>:<locking key hex>`, the key
/// the sat quote it pays is locked to (NUT-20).
pub fn redeem_request(epoch: u32, amount: u64, locking_key_hex: &str) -> String {
    format!("redeem:{epoch}:{amount}:{locking_key_hex}")
}

/// What a redemption melt quote's `request` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemRequest {
    pub epoch: u32,
    pub amount: u64,
    /// The key's compressed encoding, hex (checked to be a key by the mint).
    pub locking_key_hex: String,
}

/// Parses [`redeem_request`]'s format strictly: decimal numbers without signs, a 66-character
/// lowercase hex key, nothing else.
pub fn parse_redeem_request(request: &str) -> Result<RedeemRequest, ExtError> {
    let malformed = || {
        ExtError::Malformed(format!(
            "a redemption request is redeem:<epoch>:<ehash>:<key hex>, not {request:.120}"
        ))
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let fields: Vec<&str> = request.split(':').collect();
    let ["redeem", epoch, amount, key] = fields.as_slice() else {
        return Err(malformed());
    };
    let epoch = number(epoch)
        .and_then(|e| u32::try_from(e).ok())
        .filter(|e| *e != NO_EPOCH)
        .ok_or_else(malformed)?;
    let amount = number(amount).ok_or_else(malformed)?;
    let key_ok = key.len() == 66
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !key_ok {
        return Err(malformed());
    }
    Ok(RedeemRequest {
        epoch,
        amount,
        locking_key_hex: key.to_string(),
    })
}

/// `MintQuoteRequest::epoch` of work from before the pool's first settlement epoch (a ledger
/// older than epochs): its ehash is in the mint's first `hash` keyset, of no epoch.
pub const NO_EPOCH: u32 = u32::MAX;

/// The epoch a request's `epoch` field names, if any.
pub fn epoch_of(field: u32) -> Option<u32> {
    (field != NO_EPOCH).then_some(field)
}

/// The `request` an ehash quote shows wallets (NUT-04's payment request): `ehash:` then the
/// pool's request id (hex), the batch's share count and share commitment (hex), and the epoch
/// (`-` for none), `:`-separated. A wallet reads the epoch here to mint the quote in that
/// epoch's keyset.
pub fn ehash_quote_request(
    request_id_hex: &str,
    share_count: u32,
    share_commitment_hex: &str,
    epoch: Option<u32>,
) -> String {
    let epoch = epoch.map_or_else(|| "-".to_string(), |e| e.to_string());
    format!("ehash:{request_id_hex}:{share_count}:{share_commitment_hex}:{epoch}")
}

/// The epoch an ehash quote's `request` names: `Ok(None)` for a quote of no epoch (also every
/// quote of a mint older than epochs, whose request has four fields), `Err` for a string that
/// is not an ehash quote's request.
pub fn epoch_of_quote_request(request: &str) -> Result<Option<u32>, ExtError> {
    let malformed = || ExtError::Malformed(format!("not an ehash quote request: {request:.80}"));
    let fields: Vec<&str> = request.split(':').collect();
    match fields.as_slice() {
        ["ehash", _, _, _] | ["ehash", _, _, _, "-"] => Ok(None),
        ["ehash", _, _, _, epoch] => epoch
            .parse::<u32>()
            .ok()
            .filter(|e| *e != NO_EPOCH && !epoch.starts_with('+'))
            .map(Some)
            .ok_or_else(malformed),
        _ => Err(malformed()),
    }
}

/// Extension type, in the experimental range 0x4000..=0x7fff.
pub const EXTENSION_TYPE: u16 = 0x4861;

/// Pool -> mint: create a paid, locked quote.
pub const MESSAGE_TYPE_MINT_QUOTE_REQUEST: u8 = 0x01;
/// Mint -> pool: the quote for a request.
pub const MESSAGE_TYPE_MINT_QUOTE_RESPONSE: u8 = 0x02;
/// Mint -> pool: a request that will not be honoured as sent.
pub const MESSAGE_TYPE_MINT_QUOTE_ERROR: u8 = 0x03;
/// Pool -> miner (channel message): a quote for the channel's locking key is ready to mint.
pub const MESSAGE_TYPE_QUOTE_ANNOUNCEMENT: u8 = 0x04;

/// Pool -> mint: prove you hold the mint key (sent right after negotiation).
pub const MESSAGE_TYPE_MINT_LINK_CHALLENGE: u8 = 0x05;
/// Mint -> pool: BIP340 signature of the challenge with the mint key.
pub const MESSAGE_TYPE_MINT_LINK_AUTH: u8 = 0x06;

/// TLV field type of the locking key on OpenStandardMiningChannel / OpenExtendedMiningChannel.
pub const TLV_FIELD_LOCKING_KEY: u8 = 0x01;

/// No message of this extension is larger than this (the largest, an error, is under 600 bytes).
pub const MAX_MESSAGE_SIZE: usize = 1024;

/// Error codes of MintQuote.Error.
pub mod error_code {
    /// The locking key is not a valid compressed secp256k1 public key.
    pub const INVALID_LOCKING_KEY: &str = "invalid-locking-key";
    /// The amount is zero or beyond what the mint issues in one quote.
    pub const AMOUNT_OUT_OF_RANGE: &str = "amount-out-of-range";
    /// The unit is not the mint's ehash unit.
    pub const UNIT_MISMATCH: &str = "unit-mismatch";
    /// The mint could not store the quote; the pool retries with the same request id.
    pub const TEMPORARY_FAILURE: &str = "temporary-failure";
}

/// Why bytes could not be read as a message of this extension.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtError {
    #[error("unknown mint-quote message type {0:#04x}")]
    UnknownMessageType(u8),
    #[error("message of {0} bytes exceeds the extension's limit")]
    Oversized(usize),
    #[error("message does not decode: {0}")]
    Malformed(String),
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
    #[error("locking key must be {LOCKING_KEY_LEN} bytes, got {0}")]
    BadKeyLength(usize),
    #[error("locking key is not a valid compressed secp256k1 point")]
    InvalidKey,
    #[error("field `{0}` is empty")]
    EmptyField(&'static str),
    #[error("message {0:#04x} is not sent to miners")]
    NotForMiners(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_request_carries_its_epoch_and_older_ones_have_none() {
        let with = ehash_quote_request("ab", 3, "cd", Some(7));
        assert_eq!(with, "ehash:ab:3:cd:7");
        assert_eq!(epoch_of_quote_request(&with).unwrap(), Some(7));
        let without = ehash_quote_request("ab", 3, "cd", None);
        assert_eq!(epoch_of_quote_request(&without).unwrap(), None);
        // A mint older than epochs wrote four fields.
        assert_eq!(epoch_of_quote_request("ehash:ab:3:cd").unwrap(), None);
        for bad in [
            "",
            "lnbc1",
            "ehash:ab:3",
            "ehash:ab:3:cd:x",
            "ehash:ab:3:cd:+7",
            "ehash:ab:3:cd:-1",
            "ehash:ab:3:cd:4294967295",
            "ehash:ab:3:cd:4294967296",
            "ehash:ab:3:cd:7:8",
        ] {
            assert!(epoch_of_quote_request(bad).is_err(), "{bad}");
        }
        assert_eq!(epoch_of(NO_EPOCH), None);
        let key = "02".to_string() + &"ab".repeat(32);
        let r = redeem_request(3, 500, &key);
        assert_eq!(
            parse_redeem_request(&r).unwrap(),
            RedeemRequest {
                epoch: 3,
                amount: 500,
                locking_key_hex: key.clone()
            }
        );
        for bad in [
            String::new(),
            "redeem:3:500".into(),
            format!("redeem:3:500:{key}:x"),
            format!("redeem:-3:500:{key}"),
            format!("redeem:+3:500:{key}"),
            format!("redeem:3:+500:{key}"),
            format!("redeem:4294967295:500:{key}"),
            format!("redeem:4294967296:500:{key}"),
            format!("redeem:3:18446744073709551616:{key}"),
            format!("redeem:3:500:{}", key.to_uppercase()),
            format!("redeem:3:500:{}", &key[..64]),
            format!("melt:3:500:{key}"),
        ] {
            assert!(parse_redeem_request(&bad).is_err(), "{bad}");
        }
        assert_eq!(epoch_of(0), Some(0));
    }
}
