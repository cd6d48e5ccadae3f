//! The wallet's side of the mint's signed quote lookup, and where it remembers how far a
//! previous recovery got (so a long-lived key does not page through its whole history).

use cdk::wallet::Wallet;
use ext_mint_quote::QUOTE_LOOKUP_PATH;

pub use ext_mint_quote::{LookedUpQuote as LookupQuote, QuoteLookupResponse as LookupResponse};

use crate::{EhashWallet, WalletError};

/// The stored cursor stays this far behind the newest quotes: the mint creates quotes
/// concurrently, so a quote created (and indexed) before one the wallet has seen can be
/// committed, and appear in the lookup, a moment after it. A cursor moved past the newer one
/// would hide the older for good; quotes this young are listed again by the next recovery
/// (those already minted cost a look, not a mint).
pub(crate) const CURSOR_LAG_SECS: u64 = 60;

/// How far a recovery may move the stored cursor: past the quotes it has minted (or found
/// minted) in order, up to the first one younger than [`CURSOR_LAG_SECS`].
pub(crate) struct Cursor {
    stored: Option<String>,
    settled_before: u64,
    /// A young quote was passed: nothing after it may be stored.
    held: bool,
}

impl Cursor {
    pub(crate) fn new(stored: Option<String>, now_secs: u64) -> Self {
        Self {
            stored,
            settled_before: now_secs.saturating_sub(CURSOR_LAG_SECS),
            held: false,
        }
    }

    /// `quote` (the next one in the lookup's order) is minted.
    pub(crate) fn passed(&mut self, quote: &LookupQuote) {
        if self.held || quote.created_time >= self.settled_before {
            self.held = true;
        } else {
            self.stored = Some(quote.cursor.clone());
        }
    }

    /// The cursor to store, if there is one.
    pub(crate) fn to_store(&self) -> Option<&str> {
        self.stored.as_deref()
    }
}

const CURSOR_NAMESPACE: &str = "hashpool";
const CURSOR_SECONDARY: &str = "recovery";
const CURSOR_KEY: &str = "after";

pub(crate) async fn lookup(
    wallet: &EhashWallet,
    after: Option<&str>,
) -> Result<LookupResponse, WalletError> {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let body = wallet.signed_lookup(time, after)?;
    let response = wallet
        .http
        .post(format!("{}{}", wallet.mint_url, QUOTE_LOOKUP_PATH))
        .json(&body)
        .send()
        .await
        .map_err(|e| WalletError::Lookup(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(WalletError::Lookup(format!("{status}: {text}")));
    }
    response
        .json()
        .await
        .map_err(|e| WalletError::Lookup(format!("bad answer: {e}")))
}

pub(crate) async fn load_cursor(wallet: &Wallet) -> Option<String> {
    let bytes = wallet
        .localstore
        .kv_read(CURSOR_NAMESPACE, CURSOR_SECONDARY, CURSOR_KEY)
        .await
        .ok()??;
    String::from_utf8(bytes).ok()
}

pub(crate) async fn store_cursor(wallet: &Wallet, cursor: &str) {
    if let Err(e) = wallet
        .localstore
        .kv_write(
            CURSOR_NAMESPACE,
            CURSOR_SECONDARY,
            CURSOR_KEY,
            cursor.as_bytes(),
        )
        .await
    {
        // Only costs a longer lookup next time.
        tracing::warn!("cannot store the recovery cursor: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(created_time: u64) -> LookupQuote {
        LookupQuote {
            quote: format!("q{created_time}"),
            amount: 5,
            amount_issued: 5,
            created_time,
            cursor: format!("{created_time:012}-q"),
        }
    }

    #[test]
    fn the_stored_cursor_never_passes_a_quote_younger_than_the_lag() {
        let now = 10_000;
        let mut c = Cursor::new(Some("000000000100-q".into()), now);
        // Old quotes move it on.
        c.passed(&quote(200));
        c.passed(&quote(now - CURSOR_LAG_SECS - 1));
        assert_eq!(
            c.to_store(),
            Some(format!("{:012}-q", now - CURSOR_LAG_SECS - 1).as_str())
        );
        // A young one holds it, and so does everything after it, even an old-looking one
        // (the lookup's order is the index order).
        c.passed(&quote(now - 5));
        c.passed(&quote(now - CURSOR_LAG_SECS - 1));
        assert_eq!(
            c.to_store(),
            Some(format!("{:012}-q", now - CURSOR_LAG_SECS - 1).as_str())
        );
        // Nothing old passed: the stored cursor stays as it was.
        let mut c = Cursor::new(None, now);
        c.passed(&quote(now));
        assert_eq!(c.to_store(), None);
    }
}
