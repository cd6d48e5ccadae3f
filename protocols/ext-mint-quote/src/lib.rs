//! The mint-quote extension of Stratum V2 (see `SPEC.md` beside this crate).
//!
//! Pool and mint exchange quote requests, responses and errors; the pool announces quotes on a
//! miner's connection; a miner names its locking key in a TLV on the channel-open message.
//! This crate holds the messages and their strict decoding only: it knows nothing about roles.

mod locking_key;
mod lookup;
mod messages;
mod mint_link;

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

/// The Cashu payment method of ehash quotes (NUT-04 `method`), as the mint serves it and
/// wallets mint it.
pub const EHASH_METHOD: &str = "ehash";

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
