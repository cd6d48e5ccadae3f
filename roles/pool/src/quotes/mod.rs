//! Ehash quotes: the [`mint_link`] to the mint (authenticated, its answers recorded in the
//! ledger and announced to the miners of the key) and the [`batcher`] that turns accrued work
//! into quote requests and resends the unanswered ones.

pub mod batcher;
pub mod mint_link;

pub use mint_link::{MintLink, MintLinkHandles};

#[cfg(test)]
mod tests;
