//! Settlement (docs/settlement.md): turning the pool's found blocks into what ehash is worth.
//! So far: following each found block in the node's chain to maturity, or off the best chain.

pub mod follower;

/// Confirmations after which a coinbase may be spent (consensus; testnet4 and regtest alike):
/// a found block's reward counts once it has this many.
pub const COINBASE_MATURITY: u32 = 100;
