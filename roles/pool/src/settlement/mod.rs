//! Settlement (docs/settlement.md): turning the pool's found blocks into what ehash is worth.
//! So far: following each found block in the node's chain to maturity, or off the best chain;
//! what each epoch has earned and its rate once final (`GET /api/v1/settlement` and the signed
//! publications); the mint's withdrawals paid in the pool's coinbases (`payouts`). The ledger
//! hears the network's work per block from the template receiver.

pub mod api;
pub mod follower;
pub mod payouts;
pub mod rates;
pub mod standing;

/// Confirmations after which a coinbase may be spent (consensus; testnet4 and regtest alike):
/// a found block's reward counts once it has this many.
pub const COINBASE_MATURITY: u32 = 100;
