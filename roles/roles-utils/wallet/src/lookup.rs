//! The wallet's side of the mint's signed quote lookup, and where it remembers how far a
//! previous recovery got (so a long-lived key does not page through its whole history).

use cdk::wallet::Wallet;
use ext_mint_quote::QUOTE_LOOKUP_PATH;

pub use ext_mint_quote::{LookedUpQuote as LookupQuote, QuoteLookupResponse as LookupResponse};

use crate::{EhashWallet, WalletError};

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
