//! Ehash quotes: the [`mint_link`] to the mint (authenticated, its answers recorded in the
//! ledger and announced to the miners of the key) and the [`batcher`] that turns accrued work
//! into quote requests and resends the unanswered ones.

pub mod batcher;
pub mod mint_link;

pub use mint_link::{MintLink, MintLinkHandles};

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    ledger::Batch,
    miners::{Quote, Registry},
};

/// Announces the quotes other pool instances recorded to this instance's channels of their
/// keys (several instances on one PostgreSQL ledger).
pub async fn announce_others(
    mut others: mpsc::Receiver<Batch>,
    miners: Arc<Registry>,
    shutdown: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            batch = others.recv() => match batch {
                Some(b) => b,
                None => return,
            },
        };
        if let Some(id) = &batch.quote_id {
            miners.announce(
                &batch.locking_key,
                Quote {
                    id,
                    amount: batch.amount,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
