//! Mints announced quotes as they arrive, in announcement order, on one task per wallet. A
//! quote that cannot be minted now (the mint is down) is tried again with back-off, and a
//! periodic recovery through the mint's lookup catches anything an announcement never reached.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{EhashWallet, WalletError};

/// What the minter needs of a wallet: the [`EhashWallet`] (a stand-in in tests, so the
/// minter's order, retries and counting are tested without a mint).
pub(crate) trait QuoteMinting: Send + Sync + 'static {
    /// Mints what is left of `quote_id`; the amount minted now (0 if minted before).
    fn mint_quote(&self, quote_id: &str) -> impl Future<Output = Result<u64, WalletError>> + Send;
    /// Mints every quote of the wallet's key not fully minted yet; the amount minted.
    fn recover(&self) -> impl Future<Output = Result<u64, WalletError>> + Send;
}

impl QuoteMinting for EhashWallet {
    fn mint_quote(&self, quote_id: &str) -> impl Future<Output = Result<u64, WalletError>> + Send {
        EhashWallet::mint_quote(self, quote_id)
    }

    fn recover(&self) -> impl Future<Output = Result<u64, WalletError>> + Send {
        EhashWallet::recover(self)
    }
}

#[derive(Debug, Default)]
pub struct MinterStats {
    pub quotes_minted: AtomicU64,
    pub ehash_minted: AtomicU64,
    pub mint_failures: AtomicU64,
    pub recoveries: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct Minter {
    tx: mpsc::UnboundedSender<String>,
    stats: Arc<MinterStats>,
}

const RETRY_INITIAL: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

impl Minter {
    /// Starts minting for `wallet`: a recovery first, then announced quotes, and a recovery
    /// every `recovery_interval`.
    pub fn spawn(
        wallet: Arc<EhashWallet>,
        recovery_interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start(wallet, recovery_interval, shutdown)
    }

    fn start<W: QuoteMinting>(
        wallet: Arc<W>,
        recovery_interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MinterStats::default());
        tokio::spawn(run(wallet, rx, stats.clone(), recovery_interval, shutdown));
        Self { tx, stats }
    }

    /// Queues an announced quote.
    pub fn announce(&self, quote_id: String) {
        let _ = self.tx.send(quote_id);
    }

    pub fn stats(&self) -> &MinterStats {
        &self.stats
    }
}

async fn run<W: QuoteMinting>(
    wallet: Arc<W>,
    mut rx: mpsc::UnboundedReceiver<String>,
    stats: Arc<MinterStats>,
    recovery_interval: Duration,
    shutdown: CancellationToken,
) {
    let mut pending: VecDeque<String> = VecDeque::new();
    let mut delay = RETRY_INITIAL;
    let mut recover_delay = RETRY_INITIAL;
    let mut recover_due = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= recover_due {
            match wallet.recover().await {
                Ok(amount) => {
                    stats.recoveries.fetch_add(1, Ordering::Relaxed);
                    if amount > 0 {
                        info!(amount, "recovered ehash from quotes minted while away");
                        stats.ehash_minted.fetch_add(amount, Ordering::Relaxed);
                    }
                    recover_due = tokio::time::Instant::now() + recovery_interval;
                    recover_delay = RETRY_INITIAL;
                }
                Err(e) => {
                    warn!(delay = ?recover_delay, "quote recovery failed, will retry: {e}");
                    recover_due = tokio::time::Instant::now() + recover_delay;
                    recover_delay = (recover_delay * 2).min(RETRY_MAX);
                }
            }
        }
        while let Ok(id) = rx.try_recv() {
            pending.push_back(id);
        }
        while let Some(id) = pending.front() {
            match wallet.mint_quote(id).await {
                Ok(amount) => {
                    debug!(quote = %id, amount, "minted");
                    if amount > 0 {
                        stats.quotes_minted.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.ehash_minted.fetch_add(amount, Ordering::Relaxed);
                    pending.pop_front();
                    delay = RETRY_INITIAL;
                }
                Err(WalletError::ForeignQuote(_)) => {
                    warn!(quote = %id, "announced quote is not locked to this wallet; skipped");
                    pending.pop_front();
                }
                Err(e) => {
                    stats.mint_failures.fetch_add(1, Ordering::Relaxed);
                    warn!(quote = %id, ?delay, "cannot mint yet: {e}");
                    break;
                }
            }
        }
        let wait = if pending.is_empty() {
            recover_due.saturating_duration_since(tokio::time::Instant::now())
        } else {
            let d = delay;
            delay = (delay * 2).min(RETRY_MAX);
            d
        };
        tokio::select! {
            id = rx.recv(), if pending.is_empty() => match id {
                Some(id) => pending.push_back(id),
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The quote a frame of the mint-quote extension announces, as `(quote id, ehash amount)`.
/// Frames of other extensions, and other or undecodable mint-quote messages, are logged and
/// give `None`: every role that mints announced quotes reads them the same way.
pub fn announced_quote(
    extension_type: u16,
    message_type: u8,
    payload: &[u8],
) -> Option<(String, u64)> {
    if extension_type != ext_mint_quote::EXTENSION_TYPE {
        debug!(
            extension = extension_type,
            "ignoring a frame of an unknown extension"
        );
        return None;
    }
    match ext_mint_quote::decode_announcement(message_type, payload) {
        Ok(a) => {
            debug!(quote = %a.quote_id, amount = a.amount, "ehash quote announced");
            Some((a.quote_id, a.amount))
        }
        Err(e) => {
            warn!("unusable mint-quote message from the pool: {e}");
            None
        }
    }
}

#[cfg(test)]
#[path = "minter_tests.rs"]
mod tests;
