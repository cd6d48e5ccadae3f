//! The ehash wallet the SV2 miner and the translator embed: a CDK wallet on SQLite whose seed
//! comes from a mnemonic, whose locking key derives from that seed, which mints every quote
//! announced to it at once and finds the quotes it missed through the mint's signed lookup.

#![recursion_limit = "256"]

#[cfg(feature = "api")]
pub mod api;
mod lookup;
mod minter;

use std::{path::PathBuf, str::FromStr, sync::Arc};

use cdk::{
    amount::SplitTarget,
    mint_url::MintUrl,
    nuts::{nut20, CurrencyUnit, PaymentMethod, PublicKey, SecretKey},
    wallet::{ReceiveOptions, SendOptions, Wallet, WalletBuilder},
    Amount,
};
use cdk_sqlite::WalletSqliteDatabase;

pub use lookup::{LookupQuote, LookupResponse};
pub use minter::{announced_quote, Minter, MinterStats};

/// The wallet's minting counters on a role's `/metrics` (`hashpool_wallet_*`, docs/metrics.md).
pub fn register_metrics(
    exporter: &mut hashpool_metrics::Exporter,
    minter: Minter,
) -> Result<(), hashpool_metrics::Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let m = move |pick: fn(&MinterStats) -> &AtomicU64| {
        let minter = minter.clone();
        move || pick(minter.stats()).load(Ordering::Relaxed)
    };
    exporter
        .counter(
            "hashpool_wallet_quotes_minted_total",
            "ehash quotes minted into the wallet.",
            m(|s| &s.quotes_minted),
        )?
        .counter(
            "hashpool_wallet_ehash_minted_total",
            "ehash minted into the wallet (unit hash).",
            m(|s| &s.ehash_minted),
        )?
        .counter(
            "hashpool_wallet_mint_failures_total",
            "Mint attempts that failed (retried with back-off).",
            m(|s| &s.mint_failures),
        )?
        .counter(
            "hashpool_wallet_recoveries_total",
            "Quote lookups at the mint that found missed quotes.",
            m(|s| &s.recoveries),
        )?;
    Ok(())
}

pub use ext_mint_quote::EHASH_METHOD;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("mnemonic: {0}")]
    Mnemonic(String),
    #[error(transparent)]
    SecretFile(#[from] hashpool_config::secret_file::SecretFileError),
    #[error("mint url `{0}`: {1}")]
    MintUrl(String, String),
    #[error("wallet database {0}: {1}")]
    Database(PathBuf, String),
    #[error("cashu: {0}")]
    Cashu(#[from] cdk::Error),
    #[error("quote lookup: {0}")]
    Lookup(String),
    #[error("quote {0} is locked to another key")]
    ForeignQuote(String),
    #[error("wallet API token {path}: {reason}", path = .0.display(), reason = .1)]
    ApiToken(PathBuf, String),
}

/// A token sent from the wallet or received into it (mints are [`Issuance`]s).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transfer {
    /// `sent` or `received`.
    pub direction: &'static str,
    pub amount: u64,
    /// Unix seconds.
    pub time: u64,
}

/// One quote minted into the wallet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issuance {
    pub quote: String,
    pub amount: u64,
    /// Unix seconds.
    pub time: u64,
}

#[derive(Debug, Clone)]
pub struct WalletConfig {
    /// Cashu mint URL, e.g. `http://127.0.0.1:3338`.
    pub mint_url: String,
    /// ehash unit (`hash`).
    pub unit: String,
    /// CDK wallet database (SQLite, created if missing).
    pub database_path: PathBuf,
    /// Mnemonic given by the operator; without it, the one in `mnemonic_path` (created with
    /// mode 0600 on first run).
    pub mnemonic: Option<String>,
    pub mnemonic_path: PathBuf,
}

pub struct EhashWallet {
    wallet: Wallet,
    locking_key: SecretKey,
    mint_url: String,
    /// The mint's URL as lookups sign it (normalized: the mint compares it with its own).
    signed_mint_url: String,
    http: reqwest::Client,
    /// Wallet operations (mint, send, receive) and recovery one at a time: CDK's recovery of
    /// incomplete operations would take one in progress for an interrupted one (a mint's
    /// proofs restored without the quote's transaction record).
    minting: tokio::sync::Mutex<()>,
}

/// A role's wallet that mints what its pool channel earns (the translator's, the
/// jd-client's): opened, its key and balance logged, its minter running until `shutdown`.
pub async fn open_minting(
    config: &WalletConfig,
    recovery_interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(Arc<EhashWallet>, Minter), WalletError> {
    let wallet = EhashWallet::open(config).await?;
    tracing::info!(
        locking_key = %wallet.locking_key().to_hex(),
        balance = wallet.balance().await.unwrap_or(0),
        "wallet open"
    );
    let wallet = Arc::new(wallet);
    let minter = Minter::spawn(
        wallet.clone(),
        recovery_interval.max(std::time::Duration::from_secs(1)),
        shutdown,
    );
    Ok((wallet, minter))
}

impl EhashWallet {
    pub async fn open(config: &WalletConfig) -> Result<Self, WalletError> {
        let words = match &config.mnemonic {
            Some(words) => words.clone(),
            None => hashpool_config::secret_file::load_or_create(&config.mnemonic_path, || {
                bip39::Mnemonic::generate(12)
                    .expect("12 words is a valid length")
                    .to_string()
            })?,
        };
        let mnemonic =
            bip39::Mnemonic::parse(&words).map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let seed = mnemonic.to_seed_normalized("");
        let mint_url = MintUrl::from_str(&config.mint_url)
            .map_err(|e| WalletError::MintUrl(config.mint_url.clone(), e.to_string()))?;
        let signed_mint_url = mint_url.to_string();
        if let Some(dir) = config
            .database_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| WalletError::Database(config.database_path.clone(), e.to_string()))?;
        }
        let db = WalletSqliteDatabase::new(config.database_path.clone())
            .await
            .map_err(|e| WalletError::Database(config.database_path.clone(), e.to_string()))?;
        let wallet = WalletBuilder::new()
            .mint_url(mint_url)
            .unit(CurrencyUnit::custom(&config.unit))
            .localstore(Arc::new(db))
            .seed(seed)
            .without_rate_limiting()
            .build()?;
        // Counter 0 of the NUT-20 derivation: the wallet finds the key for its quotes itself.
        let locking_key = nut20::derive_quote_locking_key(&seed, 0)
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        Ok(Self {
            wallet,
            locking_key,
            mint_url: config.mint_url.trim_end_matches('/').to_string(),
            signed_mint_url,
            http: reqwest::Client::new(),
            minting: tokio::sync::Mutex::new(()),
        })
    }

    /// The key a mnemonic's quotes are locked to (NUT-20, counter 0 of its seed), without
    /// opening a wallet.
    pub fn locking_key_of(words: &str) -> Result<PublicKey, WalletError> {
        let mnemonic =
            bip39::Mnemonic::parse(words).map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let seed = mnemonic.to_seed_normalized("");
        Ok(nut20::derive_quote_locking_key(&seed, 0)
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?
            .public_key())
    }

    /// The key the miner's quotes are locked to (33-byte compressed).
    pub fn locking_key(&self) -> PublicKey {
        self.locking_key.public_key()
    }

    /// The same key as the mint-quote extension carries it.
    pub fn sv2_locking_key(&self) -> ext_mint_quote::LockingKey {
        ext_mint_quote::LockingKey::from_slice(&self.locking_key().to_bytes())
            .expect("a public key is a valid locking key")
    }

    pub fn cdk(&self) -> &Wallet {
        &self.wallet
    }

    /// Mints what is left of `quote_id` into this wallet; returns the amount minted now (0 if
    /// it was minted before).
    pub async fn mint_quote(&self, quote_id: &str) -> Result<u64, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        self.mint_quote_locked(quote_id).await
    }

    async fn mint_quote_locked(&self, quote_id: &str) -> Result<u64, WalletError> {
        let quote = self
            .wallet
            .fetch_mint_quote_with_key_search(
                quote_id,
                Some(PaymentMethod::Custom(EHASH_METHOD.into())),
                1,
            )
            .await?;
        if quote.secret_key.is_none() {
            return Err(WalletError::ForeignQuote(quote_id.to_string()));
        }
        if quote.amount_mintable() == Amount::ZERO {
            return Ok(0);
        }
        // Split into the fewest proofs for this amount. `SplitTarget::None` makes CDK read and
        // parse every unspent proof the wallet holds to pick denominations, so each mint
        // cost grew with the wallet (a soak's wallets fell behind: docs/benchmarks.md).
        let split = SplitTarget::Value(quote.amount_mintable());
        let proofs = self.wallet.mint(quote_id, split, None).await?;
        Ok(proofs.iter().map(|p| u64::from(p.amount)).sum())
    }

    /// Mints every quote locked to this wallet's key that is not fully minted yet (quotes
    /// announced while the wallet was away). Returns the amount minted.
    pub async fn recover(&self) -> Result<u64, WalletError> {
        self.recover_with_progress(|_, _| {}).await
    }

    /// [`Self::recover`], telling `progress` of each quote minted (its id and the amount minted
    /// now). Idempotent and resumable: a quote already minted mints nothing, and a mint a crash
    /// interrupted is finished first.
    pub async fn recover_with_progress(
        &self,
        mut progress: impl FnMut(&str, u64),
    ) -> Result<u64, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        // A mint interrupted by a crash: its outputs are signed at the mint but may be missing
        // here; CDK restores them from the seed (NUT-09/13).
        let report = self.wallet.recover_incomplete_sagas().await?;
        tracing::debug!(?report, "incomplete wallet operations recovered");
        let stored = lookup::load_cursor(&self.wallet).await;
        let mut cursor = lookup::Cursor::new(stored.clone(), unix_now());
        // Where this recovery's next page starts (the stored cursor lags behind it).
        let mut after = stored;
        let mut minted = 0;
        loop {
            let page = lookup::lookup(self, after.as_deref()).await?;
            let mut stalled = false;
            for quote in &page.quotes {
                if quote.amount_issued < quote.amount {
                    match self.mint_quote_locked(&quote.quote).await {
                        Ok(amount) => {
                            minted += amount;
                            progress(&quote.quote, amount);
                        }
                        Err(e) => {
                            tracing::warn!(quote = %quote.quote, "cannot mint a recovered quote yet: {e}");
                            stalled = true;
                            break;
                        }
                    }
                }
                // Everything up to here is minted.
                cursor.passed(quote);
                after = Some(quote.cursor.clone());
            }
            // Kept page by page, so a long recovery that is cut short resumes near its end.
            if let Some(settled) = cursor.to_store() {
                lookup::store_cursor(&self.wallet, settled).await;
            }
            if stalled || page.next.is_none() {
                break;
            }
        }
        Ok(minted)
    }

    /// One page of the quotes locked to this wallet's key, from the mint's signed lookup.
    pub async fn quotes(&self, after: Option<&str>) -> Result<LookupResponse, WalletError> {
        lookup::lookup(self, after).await
    }

    /// The latest `limit` issuances (quotes minted into this wallet), newest first.
    pub async fn history(&self, limit: usize) -> Result<Vec<Issuance>, WalletError> {
        let mut minted: Vec<Issuance> = self
            .wallet
            .list_transactions(Some(cdk::wallet::types::TransactionDirection::Incoming))
            .await?
            .into_iter()
            .filter_map(|t| {
                t.quote_id.map(|quote| Issuance {
                    quote,
                    amount: t.amount.into(),
                    time: t.timestamp,
                })
            })
            .collect();
        minted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.quote.cmp(&a.quote)));
        minted.truncate(limit);
        Ok(minted)
    }

    /// The latest `limit` tokens sent and received, newest first (quotes minted are not here:
    /// [`Self::history`]).
    pub async fn transfers(&self, limit: usize) -> Result<Vec<Transfer>, WalletError> {
        use cdk::wallet::types::TransactionDirection;
        let mut transfers: Vec<Transfer> = self
            .wallet
            .list_transactions(None)
            .await?
            .into_iter()
            .filter(|t| t.quote_id.is_none())
            .map(|t| Transfer {
                direction: match t.direction {
                    TransactionDirection::Incoming => "received",
                    TransactionDirection::Outgoing => "sent",
                },
                amount: t.amount.into(),
                time: t.timestamp,
            })
            .collect();
        transfers.sort_by_key(|t| std::cmp::Reverse(t.time));
        transfers.truncate(limit);
        Ok(transfers)
    }

    pub async fn balance(&self) -> Result<u64, WalletError> {
        Ok(self.wallet.total_balance().await?.into())
    }

    /// Creates a token (`cashuB...`) of `amount` from this wallet's proofs.
    pub async fn send(&self, amount: u64) -> Result<String, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        let prepared = self
            .wallet
            .prepare_send(Amount::from(amount), SendOptions::default())
            .await?;
        Ok(prepared.confirm(None).await?.to_string())
    }

    /// Receives a token into this wallet (a swap at the mint); returns the amount received.
    pub async fn receive(&self, token: &str) -> Result<u64, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        Ok(self
            .wallet
            .receive(token, ReceiveOptions::default())
            .await?
            .into())
    }

    /// A signed lookup request for this wallet's key at its mint, with a fresh nonce (the mint
    /// accepts each nonce once).
    fn signed_lookup(
        &self,
        time: u64,
        after: Option<&str>,
    ) -> Result<ext_mint_quote::QuoteLookupRequest, WalletError> {
        let pubkey = self.locking_key().to_hex();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let message =
            ext_mint_quote::quote_lookup_message(&pubkey, time, &nonce, &self.signed_mint_url);
        let signature = self
            .locking_key
            .sign(&message)
            .map_err(|e| WalletError::Lookup(e.to_string()))?
            .to_string();
        Ok(ext_mint_quote::QuoteLookupRequest {
            pubkey,
            time,
            nonce,
            mint: self.signed_mint_url.clone(),
            signature,
            after: after.map(str::to_string),
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
