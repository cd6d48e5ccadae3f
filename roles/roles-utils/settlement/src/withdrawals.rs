//! Withdrawals in the coinbase (docs/settlement.md, "Withdrawals in the coinbase"): the mint
//! records each withdrawal melt and publishes the list signed with its authority key; the pool
//! reads the list and pays each entry once in a coinbase output, following it to maturity.

use serde::{Deserialize, Serialize};

use crate::rates::Signed;

/// The tag of the mint's withdrawal list signature.
pub const WITHDRAWALS_TAG: &[u8] = b"hashpool/mint-withdrawals/v1";

/// One withdrawal the mint recorded when it executed the melt: the sats left the mint's sat
/// ecash and are owed on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// The melt quote's id: a withdrawal is paid once per id.
    pub quote_id: String,
    pub sats: u64,
    pub address: String,
    /// The address's output script, hex.
    pub script: String,
    /// Unix seconds when the mint recorded it.
    pub recorded_at: u64,
}

/// Every withdrawal the mint recorded, oldest first. (In [`Signed`], `pool_key` is the
/// signer's key: here the mint's.)
pub type WithdrawalList = Signed<Vec<Withdrawal>>;

/// Where a withdrawal stands in the pool's coinbases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutState {
    /// Waiting for a coinbase.
    Queued,
    /// In the coinbase of the pool's templates at `height`; settled once the chain has a block
    /// there (paid in it, or queued again).
    Offered,
    /// Paid by a coinbase output of the block `block_hash`, under maturity.
    InBlock,
    /// Paid, the block buried by 100 confirmations.
    Matured,
}

impl PayoutState {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutState::Queued => "queued",
            PayoutState::Offered => "offered",
            PayoutState::InBlock => "in_block",
            PayoutState::Matured => "matured",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => PayoutState::Queued,
            "offered" => PayoutState::Offered,
            "in_block" => PayoutState::InBlock,
            "matured" => PayoutState::Matured,
            _ => return None,
        })
    }
}

/// A withdrawal as the pool pays it (`GET /api/v1/settlement/payouts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub quote_id: String,
    pub sats: u64,
    pub address: String,
    pub state: PayoutState,
    /// Offered: the height of the templates; in a block: the block's height.
    pub height: Option<u32>,
    pub block_hash: Option<String>,
    /// The coinbase transaction that pays it.
    pub txid: Option<String>,
    /// Which output of that transaction.
    pub vout: Option<u32>,
}

/// The tag of the jd-server's signature on a [`PayoutOfferRequest`].
pub const PAYOUT_OFFER_TAG: &[u8] = b"hashpool/payout-offer/v1";

/// How far a payout offer request's time may be from the pool's clock.
pub const PAYOUT_OFFER_MAX_SKEW_SECS: u64 = 120;

/// The jd-server asks the pool which payouts a coinbase at `height` leaving `value_sats` must
/// pay (`POST /api/v1/settlement/payouts/offer`, signed with the jd-server's key): the pool
/// offers them at that height, as for its own templates, so whichever block the chain holds
/// there decides whether they were paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOfferRequest {
    pub height: u32,
    pub value_sats: u64,
    /// Unix seconds when the jd-server signed it.
    pub at: u64,
}

pub type SignedPayoutOffer = Signed<PayoutOfferRequest>;

/// One payout a coinbase at the offered height must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedPayout {
    pub quote_id: String,
    pub sats: u64,
    /// The output script, hex.
    pub script: String,
}
