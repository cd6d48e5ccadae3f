//! The ehash wallet the SV2 miner and the translator embed: a CDK wallet on SQLite whose seed
//! comes from a mnemonic, whose locking key derives from that seed, which mints every quote
//! announced to it at once and finds the quotes it missed through the mint's signed lookup.

#![recursion_limit = "256"]

#[cfg(feature = "api")]
pub mod api;
mod epochs;
mod lookup;
mod minter;

use std::{path::PathBuf, str::FromStr, sync::Arc};

use cdk::{
    amount::SplitTarget,
    mint_url::MintUrl,
    nuts::{nut20, CurrencyUnit, Id, PaymentMethod, Proofs, PublicKey, SecretKey, Token},
    wallet::{HttpClient, ReceiveOptions, SendOptions, Wallet, WalletBuilder},
    Amount,
};
use cdk_common::wallet::KeysetLoadPolicy;
use cdk_sqlite::WalletSqliteDatabase;
use epochs::EpochConnector;
use ext_mint_quote::EpochsResponse;

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
    #[error("epochs: {0}")]
    Epochs(String),
    #[error("insufficient ehash in one epoch: {0}")]
    InsufficientInOneEpoch(String),
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
    /// proofs restored without the quote's transaction record). Each also focuses `connector`
    /// on the keyset it works in.
    minting: tokio::sync::Mutex<()>,
    /// The wallet's connection to the mint; says which `hash` keyset is active (epochs.rs).
    connector: Arc<EpochConnector>,
    /// The mint's epochs and their keysets, as last read.
    epochs: tokio::sync::Mutex<Option<EpochsResponse>>,
    /// The same seed's wallet of unit `sat`, where redemptions are minted.
    sat: Wallet,
}

/// How long a redemption waits for the mint to settle its melt.
pub const REDEEM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One redemption: ehash of a final epoch melted, sats minted into the wallet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Redeemed {
    pub epoch: u32,
    pub ehash: u64,
    pub sats: u64,
    pub melt_quote: String,
    pub sat_quote: String,
}

/// One epoch's ehash in a wallet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EpochHolding {
    /// `None`: ehash from before the pool's first epoch.
    pub epoch: Option<u32>,
    pub ehash: u64,
    /// What it redeems for once the epoch is final; `None` while it is not (or the mint does
    /// not redeem).
    pub sats: Option<u64>,
}

/// One withdrawal: sats melted for a coinbase output of the pool's (docs/settlement.md,
/// "Withdrawals in the coinbase").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Withdrawn {
    /// The melt quote's id: the pool's payout is found by it.
    pub quote_id: String,
    pub sats: u64,
    pub address: String,
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
        let db = Arc::new(
            WalletSqliteDatabase::new(config.database_path.clone())
                .await
                .map_err(|e| WalletError::Database(config.database_path.clone(), e.to_string()))?,
        );
        let sat = WalletBuilder::new()
            .mint_url(mint_url.clone())
            .unit(CurrencyUnit::Sat)
            .localstore(db.clone())
            .seed(seed)
            .without_rate_limiting()
            .build()?;
        let unit = CurrencyUnit::custom(&config.unit);
        let connector = EpochConnector::new(HttpClient::new(mint_url.clone(), None), unit.clone());
        let wallet = WalletBuilder::new()
            .mint_url(mint_url)
            .unit(unit)
            .shared_client(connector.clone())
            .localstore(db)
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
            connector,
            epochs: tokio::sync::Mutex::new(None),
            sat,
        })
    }

    /// The mint's URL, as configured (no trailing `/`).
    pub fn mint_url(&self) -> &str {
        &self.mint_url
    }

    /// Sats in the wallet (from redemptions).
    pub async fn sat_balance(&self) -> Result<u64, WalletError> {
        Ok(self.sat.total_balance().await?.into())
    }

    /// The wallet of unit `sat` on the same seed and database.
    pub fn sat_wallet(&self) -> &Wallet {
        &self.sat
    }

    /// Redeems all of this wallet's ehash of final `epoch` (docs/settlement.md,
    /// "Redemption"): a melt (method `hashpool-redeem`) of exactly those proofs, which pays a
    /// sat quote locked to this wallet's key, minted at once. The mint refuses an epoch whose
    /// rate is not final, and proofs of another epoch.
    pub async fn redeem(&self, epoch: u32) -> Result<Redeemed, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        // A redemption a crash (or the mint going away) cut short after its melt.
        self.finish_redemptions_locked().await?;
        let keyset = self.keyset_of_epoch(Some(epoch)).await?;
        let proofs: Proofs = self
            .wallet
            .get_unspent_proofs()
            .await?
            .into_iter()
            .filter(|p| p.keyset_id == keyset)
            .collect();
        let ehash: u64 = proofs.iter().map(|p| u64::from(p.amount)).sum();
        if ehash == 0 {
            return Err(WalletError::Epochs(format!(
                "no ehash of epoch {epoch} in this wallet"
            )));
        }
        let request = ext_mint_quote::redeem_request(epoch, ehash, &self.locking_key().to_hex());
        let quote = self
            .wallet
            .melt_quote(
                PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into()),
                request,
                None,
                None,
            )
            .await?;
        self.focus(keyset).await?;
        let prepared = self
            .wallet
            .prepare_melt_proofs(&quote.id, proofs, Default::default())
            .await?;
        // CDK waits for a melt whose answer was lost until the mint answers again; past this
        // the melt is left for the next redemption to settle (`finish_redemptions`).
        let melted = tokio::time::timeout(REDEEM_WAIT, prepared.confirm())
            .await
            .map_err(|_| {
                WalletError::Epochs(format!(
                    "the mint did not settle redemption {} within {}s: redeem again to finish it",
                    quote.id,
                    REDEEM_WAIT.as_secs()
                ))
            })??;
        let sat_quote = melted
            .payment_proof()
            .ok_or_else(|| WalletError::Epochs("the redemption named no sat quote".into()))?
            .to_string();
        let sats = self.mint_sat_quote(&sat_quote).await?;
        tracing::info!(epoch, ehash, sats, %sat_quote, "ehash redeemed");
        Ok(Redeemed {
            epoch,
            ehash,
            sats,
            melt_quote: quote.id,
            sat_quote,
        })
    }

    /// Withdraws `sats` to `address` on chain (method `hashpool-coinbase`): the mint records
    /// the withdrawal and the pool pays it in a coinbase output of one of its next blocks. The
    /// mint refuses an address of another chain and an amount out of its range.
    pub async fn withdraw(&self, sats: u64, address: &str) -> Result<Withdrawn, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        // A withdrawal (or a redemption's sat mint) a crash cut short.
        let report = self.sat.recover_incomplete_sagas().await?;
        tracing::debug!(?report, "incomplete sat wallet operations recovered");
        let request = ext_mint_quote::withdraw_request(sats, address);
        let quote = self
            .sat
            .melt_quote(
                PaymentMethod::Custom(ext_mint_quote::WITHDRAW_METHOD.into()),
                request,
                None,
                None,
            )
            .await?;
        let prepared = self.sat.prepare_melt(&quote.id, Default::default()).await?;
        tokio::time::timeout(REDEEM_WAIT, prepared.confirm())
            .await
            .map_err(|_| {
                WalletError::Epochs(format!(
                    "the mint did not settle withdrawal {} within {}s: `withdrawals` shows it \
                     once it has",
                    quote.id,
                    REDEEM_WAIT.as_secs()
                ))
            })??;
        tracing::info!(sats, address, quote = %quote.id, "withdrawal recorded by the mint");
        Ok(Withdrawn {
            quote_id: quote.id,
            sats,
            address: address.to_string(),
        })
    }

    /// Settles with the mint the withdrawals (and sat mints) whose answer was lost: each is
    /// recorded (its sats spent) or not (its sats back in the wallet).
    pub async fn settle_withdrawals(&self) -> Result<(), WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        let report = self.sat.recover_incomplete_sagas().await?;
        tracing::debug!(?report, "incomplete sat wallet operations recovered");
        Ok(())
    }

    /// This wallet's withdrawals the mint has recorded, oldest first (one whose answer was
    /// lost shows once [`settle_withdrawals`](Self::settle_withdrawals) has settled it).
    pub async fn withdrawals(&self) -> Result<Vec<Withdrawn>, WalletError> {
        let mut out = Vec::new();
        for quote in self
            .sat
            .localstore
            .get_melt_quotes()
            .await
            .map_err(cdk::Error::from)?
        {
            let ours = quote.payment_method
                == PaymentMethod::Custom(ext_mint_quote::WITHDRAW_METHOD.into())
                && quote.state == cdk::nuts::MeltQuoteState::Paid;
            if !ours {
                continue;
            }
            if let Ok(r) = ext_mint_quote::parse_withdraw_request(&quote.request) {
                out.push((
                    quote.expiry,
                    Withdrawn {
                        quote_id: quote.id,
                        sats: r.sats,
                        address: r.address,
                    },
                ));
            }
        }
        out.sort_by(|a, b| (a.0, &a.1.quote_id).cmp(&(b.0, &b.1.quote_id)));
        Ok(out.into_iter().map(|(_, w)| w).collect())
    }

    /// Mints the sat quotes of redemptions whose melt was paid but whose sats are not in the
    /// wallet yet (the wallet stopped between the two steps). Returns the sats minted.
    pub async fn finish_redemptions(&self) -> Result<u64, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        self.finish_redemptions_locked().await
    }

    async fn finish_redemptions_locked(&self) -> Result<u64, WalletError> {
        // A melt the mint may or may not have executed (its answer lost): CDK asks the mint
        // and settles it (spent and paid, or the proofs back to unspent).
        let report = self.wallet.recover_incomplete_sagas().await?;
        tracing::debug!(?report, "incomplete wallet operations recovered");
        // A sat mint a crash cut short holds its quote until it is finished (or undone).
        let report = self.sat.recover_incomplete_sagas().await?;
        tracing::debug!(?report, "incomplete sat wallet operations recovered");
        let mut minted = 0;
        for quote in self
            .wallet
            .localstore
            .get_melt_quotes()
            .await
            .map_err(cdk::Error::from)?
        {
            let ours = quote.payment_method
                == PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into())
                && quote.state == cdk::nuts::MeltQuoteState::Paid;
            let Some(sat_quote) = quote.payment_proof.as_deref().filter(|_| ours) else {
                continue;
            };
            let issued = self
                .sat
                .localstore
                .get_mint_quote(sat_quote)
                .await
                .map_err(cdk::Error::from)?
                .is_some_and(|q| q.state == cdk::nuts::MintQuoteState::Issued);
            if !issued {
                minted += self.mint_sat_quote(sat_quote).await?;
            }
        }
        Ok(minted)
    }

    /// Mints what is left of a redemption's sat quote (NUT-20, this wallet's key).
    pub async fn mint_sat_quote(&self, quote_id: &str) -> Result<u64, WalletError> {
        let quote = self
            .sat
            .fetch_mint_quote_with_key_search(
                quote_id,
                Some(PaymentMethod::Custom(ext_mint_quote::REDEEM_METHOD.into())),
                1,
            )
            .await?;
        if quote.secret_key.is_none() {
            return Err(WalletError::ForeignQuote(quote_id.to_string()));
        }
        if quote.amount_mintable() == Amount::ZERO {
            return Ok(0);
        }
        let proofs = self
            .sat
            .mint(quote_id, SplitTarget::Value(quote.amount_mintable()), None)
            .await?;
        Ok(proofs.iter().map(|p| u64::from(p.amount)).sum())
    }

    /// The mint's epochs and their `hash` keysets (`GET /v1/hashpool/epochs`).
    pub async fn mint_epochs(&self) -> Result<EpochsResponse, WalletError> {
        let url = format!("{}{}", self.mint_url, ext_mint_quote::EPOCHS_PATH);
        let answer: EpochsResponse = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| WalletError::Epochs(format!("{url}: {e}")))?
            .json()
            .await
            .map_err(|e| WalletError::Epochs(format!("{url}: {e}")))?;
        *self.epochs.lock().await = Some(answer.clone());
        Ok(answer)
    }

    /// The keyset ehash of `epoch` (`None`: of no epoch) is in.
    async fn keyset_of_epoch(&self, epoch: Option<u32>) -> Result<Id, WalletError> {
        let known = self
            .epochs
            .lock()
            .await
            .as_ref()
            .and_then(|e| e.keyset_of(epoch).map(str::to_string));
        let keyset = match known {
            Some(k) => k,
            // An epoch newer than the list read last: read it again.
            None => self
                .mint_epochs()
                .await?
                .keyset_of(epoch)
                .map(str::to_string)
                .ok_or_else(|| {
                    WalletError::Epochs(format!("the mint lists no keyset for epoch {epoch:?}"))
                })?,
        };
        Id::from_str(&keyset).map_err(|e| WalletError::Epochs(format!("keyset `{keyset}`: {e}")))
    }

    /// Makes `keyset` the `hash` keyset CDK builds outputs in (its keyset cache read again
    /// through the connector when the focus moves).
    async fn focus(&self, keyset: Id) -> Result<(), WalletError> {
        if self.connector.focused() != Some(keyset) {
            self.connector.focus(keyset);
            self.wallet.keysets(KeysetLoadPolicy::Refresh).await?;
        }
        Ok(())
    }

    /// Unspent ehash per keyset.
    pub async fn balance_by_keyset(&self) -> Result<Vec<(Id, u64)>, WalletError> {
        let mut by: std::collections::BTreeMap<Id, u64> = Default::default();
        for p in self.wallet.get_unspent_proofs().await? {
            *by.entry(p.keyset_id).or_default() += u64::from(p.amount);
        }
        Ok(by.into_iter().collect())
    }

    /// Unspent ehash per epoch (`None`: from before epochs), oldest first; keysets the mint
    /// does not list as an epoch's are left out.
    pub async fn balance_by_epoch(&self) -> Result<Vec<(Option<u32>, u64)>, WalletError> {
        let by_keyset = self.balance_by_keyset().await?;
        let epochs = self.mint_epochs().await?;
        let epoch_of = |id: &Id| {
            let id = id.to_string();
            if epochs.pre_epoch.as_deref() == Some(id.as_str()) {
                return Some(None);
            }
            epochs
                .epochs
                .iter()
                .find(|k| k.keyset == id)
                .map(|k| Some(k.epoch))
        };
        let mut out: Vec<(Option<u32>, u64)> = by_keyset
            .iter()
            .filter_map(|(id, amount)| epoch_of(id).map(|e| (e, *amount)))
            .collect();
        out.sort();
        Ok(out)
    }

    /// This wallet's ehash by epoch with each final epoch's value in sats at the rate the
    /// mint redeems it at (`floor(x * R / H)`); `None` while the epoch is not final.
    pub async fn holdings_by_epoch(&self) -> Result<Vec<EpochHolding>, WalletError> {
        let by_epoch = self.balance_by_epoch().await?;
        let epochs = self.epochs.lock().await.clone().unwrap_or(EpochsResponse {
            pre_epoch: None,
            epochs: Vec::new(),
        });
        Ok(by_epoch
            .into_iter()
            .map(|(epoch, ehash)| {
                let rate = epoch.and_then(|e| {
                    epochs
                        .epochs
                        .iter()
                        .find(|k| k.epoch == e)
                        .and_then(|k| k.rate)
                });
                EpochHolding {
                    epoch,
                    ehash,
                    sats: rate.and_then(|r| {
                        let sats = u128::from(ehash) * u128::from(r.reward_sats)
                            / u128::from(r.ehash.max(1));
                        u64::try_from(sats).ok()
                    }),
                }
            })
            .collect())
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
        // Minted in the keyset of the quote's epoch: the only one the mint signs it in.
        let epoch = ext_mint_quote::epoch_of_quote_request(&quote.request)
            .map_err(|e| WalletError::Epochs(format!("quote {quote_id}: {e}")))?;
        let keyset = self.keyset_of_epoch(epoch).await?;
        self.focus(keyset).await?;
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

    /// Creates a token (`cashuB...`) of `amount` from this wallet's proofs, all of one epoch
    /// (the mint swaps ehash only within its epoch's keyset): the newest epoch that holds
    /// enough.
    pub async fn send(&self, amount: u64) -> Result<String, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        let unspent = self.wallet.get_unspent_proofs().await?;
        let mut by_keyset: std::collections::HashMap<Id, Proofs> = Default::default();
        for p in unspent {
            by_keyset.entry(p.keyset_id).or_default().push(p);
        }
        let epochs = self.mint_epochs().await?;
        // Newest first: the epochs' keysets from the last, then the pre-epoch one.
        let order: Vec<Id> = epochs
            .epochs
            .iter()
            .rev()
            .map(|k| k.keyset.as_str())
            .chain(epochs.pre_epoch.as_deref())
            .filter_map(|k| Id::from_str(k).ok())
            .collect();
        let total = |proofs: &Proofs| proofs.iter().map(|p| u64::from(p.amount)).sum::<u64>();
        let Some(keyset) = order
            .into_iter()
            .find(|k| by_keyset.get(k).is_some_and(|p| total(p) >= amount))
        else {
            let held: Vec<String> = by_keyset
                .iter()
                .map(|(k, p)| format!("{} in {k}", total(p)))
                .collect();
            return Err(WalletError::InsufficientInOneEpoch(format!(
                "{amount} asked; held: {}",
                held.join(", ")
            )));
        };
        self.focus(keyset).await?;
        let mut proofs = by_keyset.remove(&keyset).unwrap_or_default();
        if by_keyset.values().all(|p| p.is_empty()) {
            // Everything the wallet holds is in this keyset: CDK's send, which keeps the
            // transfer in the wallet's history.
            let prepared = self
                .wallet
                .prepare_send(Amount::from(amount), SendOptions::default())
                .await?;
            return Ok(prepared.confirm(None).await?.to_string());
        }
        // Otherwise a swap of this keyset's proofs only: the part sent is kept reserved in the
        // wallet (CDK's swap), the change unspent.
        proofs.sort_by_key(|p| std::cmp::Reverse(p.amount));
        let mut inputs = Proofs::new();
        let mut sum = 0u64;
        for p in proofs {
            if sum >= amount {
                break;
            }
            sum += u64::from(p.amount);
            inputs.push(p);
        }
        let sent = self
            .wallet
            .swap(
                Some(Amount::from(amount)),
                SplitTarget::None,
                inputs,
                None,
                false,
                false,
            )
            .await?
            .ok_or_else(|| WalletError::Epochs("the swap returned nothing to send".into()))?;
        let token = Token::new(
            self.wallet.mint_url.clone(),
            sent,
            None,
            self.wallet.unit.clone(),
        );
        Ok(token.to_string())
    }

    /// Receives a token into this wallet (a swap at the mint, in the keyset its proofs are
    /// in); returns the amount received.
    pub async fn receive(&self, token: &str) -> Result<u64, WalletError> {
        let _one_at_a_time = self.minting.lock().await;
        let parsed =
            Token::from_str(token).map_err(|e| WalletError::Epochs(format!("token: {e}")))?;
        let keysets = self.connector.all_keysets().await?;
        let ids: std::collections::BTreeSet<Id> = parsed
            .proofs(&keysets)
            .map_err(|e| WalletError::Epochs(format!("token: {e}")))?
            .iter()
            .map(|p| p.keyset_id)
            .collect();
        let mut ids = ids.into_iter();
        match (ids.next(), ids.next()) {
            (None, _) => {}
            (Some(keyset), None) => self.focus(keyset).await?,
            (Some(_), Some(_)) => {
                return Err(WalletError::Epochs(
                    "the token holds ehash of several epochs: the mint swaps each epoch's                      ehash on its own, so receive each epoch's token separately"
                        .into(),
                ))
            }
        }
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
