//! A share the pool accepted: what the ledger records and everything after it is derived from.
//! A leaf type, so the ledger and the miners' share path both depend on it and not on each
//! other.

use ext_mint_quote::LockingKey;
use hashpool_ehash::Work;

/// A share that passed validation.
#[derive(Debug, Clone, Copy)]
pub struct AcceptedShare {
    pub channel_id: u32,
    /// Whose ehash this share earns.
    pub locking_key: LockingKey,
    /// Header hash of the share (its identity: duplicates are refused before this point).
    pub share_hash: [u8; 32],
    /// Exact work of the share: from the target of the job it was mined on.
    pub work: Work,
    /// The share also met the network target.
    pub block_found: bool,
    /// What settlement records of the block (set with `block_found`, unless its coinbase did
    /// not parse).
    pub block: Option<BlockFacts>,
    /// The chain tip its job was on (`ledger::tip_id`): duplicates are looked for per tip.
    pub tip: i64,
}

/// A found block as settlement needs it: the reward its window shares and the network's work
/// per block, which sizes the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockFacts {
    pub height: u32,
    /// What the coinbase pays in all: subsidy and fees (satoshis).
    pub value_sats: u64,
    /// Expected hashes per block at the block's nBits.
    pub network_work: Work,
}
