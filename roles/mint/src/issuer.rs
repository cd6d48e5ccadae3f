//! Turns a pool's quote request into a paid quote locked to the miner's key, at most once per
//! request id.
//!
//! The request id is the quote's lookup id, which the database keeps unique, so the quote row
//! itself is the request id -> quote record. Every step (create, pay, index) is idempotent, and
//! the pool repeats a request until it is answered, so a crash between steps is finished by the
//! next attempt instead of paying twice or losing the batch.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use cdk::{
    mint::{Mint, MintQuote, MintQuoteRequest, MintQuoteResponse},
    nuts::{nut04::MintQuoteCustomRequest, CurrencyUnit, PaymentMethod, PublicKey},
    Amount,
};
use cdk_common::payment::WaitPaymentResponse;
use ext_mint_quote::{error_code, MintQuoteRequestOwned};
use hashpool_sv2_io::text;

use crate::epochs::EpochSignatory;
use crate::processor::{lookup_id, EhashQuoteExtra, EHASH_METHOD};
use crate::quote_index;

pub use crate::db::MintDb;

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the locking key is not a valid compressed public key")]
    InvalidLockingKey,
    #[error("amount {0} is out of range")]
    AmountOutOfRange(u64),
    #[error("unit `{0}` is not this mint's ehash unit")]
    UnitMismatch(String),
    #[error("request id already used for a different quote ({0})")]
    Conflict(String),
    #[error("{0}")]
    Temporary(String),
}

impl IssueError {
    /// Every refusal reason, as metrics label them.
    pub const REASONS: [&'static str; 5] = [
        "invalid_locking_key",
        "amount_out_of_range",
        "unit_mismatch",
        "conflict",
        "temporary",
    ];

    /// The index of this refusal's reason in [`Self::REASONS`].
    pub fn reason_index(&self) -> usize {
        match self {
            IssueError::InvalidLockingKey => 0,
            IssueError::AmountOutOfRange(_) => 1,
            IssueError::UnitMismatch(_) => 2,
            IssueError::Conflict(_) => 3,
            IssueError::Temporary(_) => 4,
        }
    }

    /// The extension's error code; only temporary failures are worth repeating.
    pub fn code(&self) -> &'static str {
        match self {
            IssueError::InvalidLockingKey => error_code::INVALID_LOCKING_KEY,
            IssueError::AmountOutOfRange(_) | IssueError::Conflict(_) => {
                error_code::AMOUNT_OUT_OF_RANGE
            }
            IssueError::UnitMismatch(_) => error_code::UNIT_MISMATCH,
            IssueError::Temporary(_) => error_code::TEMPORARY_FAILURE,
        }
    }
}

fn temporary(e: impl std::fmt::Display) -> IssueError {
    IssueError::Temporary(e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub quote_id: String,
    pub amount: u64,
}

/// What the mint has done for the pool, for `/metrics`.
#[derive(Debug, Default)]
pub struct MintStats {
    /// Quotes paid (issued) for the pool's requests, counted when paid.
    pub quotes_issued: AtomicU64,
    /// ehash in those quotes.
    pub ehash_issued: AtomicU64,
    /// Requests for a quote already issued (the pool's retries): answered, nothing new.
    pub requests_repeated: AtomicU64,
    /// Requests refused (bad unit, amount, key, conflicting reuse, temporary failures).
    pub requests_refused: AtomicU64,
    /// The same by reason, in [`IssueError::REASONS`] order.
    pub requests_refused_by: [AtomicU64; IssueError::REASONS.len()],
    /// 1 while the link to the pool is up.
    pub pool_link_up: AtomicU64,
    /// Quote lookups answered / refused on `POST /v1/hashpool/quotes`.
    pub lookups_answered: AtomicU64,
    pub lookups_refused: AtomicU64,
    /// Lookups refused because their nonce was used before (also counted as refused).
    pub lookups_replayed: AtomicU64,
}

impl MintStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct Issuer {
    mint: Arc<Mint>,
    db: MintDb,
    unit: CurrencyUnit,
    authorization: String,
    epochs: Arc<EpochSignatory>,
    stats: Arc<MintStats>,
}

impl Issuer {
    pub fn new(
        mint: Arc<Mint>,
        db: MintDb,
        unit: CurrencyUnit,
        authorization: String,
        epochs: Arc<EpochSignatory>,
    ) -> Self {
        Self {
            mint,
            db,
            unit,
            authorization,
            epochs,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Arc<MintStats> {
        &self.stats
    }

    /// Creates (or finds, for a repeated request id) the paid, locked quote of a request.
    pub async fn issue(&self, request: &MintQuoteRequestOwned) -> Result<Issued, IssueError> {
        let result = self.issue_once(request).await;
        let s = &self.stats;
        match &result {
            Ok((_, true)) => {}
            Ok((_, false)) => MintStats::add(&s.requests_repeated, 1),
            Err(e) => {
                MintStats::add(&s.requests_refused, 1);
                MintStats::add(&s.requests_refused_by[e.reason_index()], 1);
            }
        }
        result.map(|(issued, _)| issued)
    }

    /// The issued quote, and whether this call paid it (a quote created by a call that failed
    /// before paying is counted by the retry that pays it).
    async fn issue_once(
        &self,
        request: &MintQuoteRequestOwned,
    ) -> Result<(Issued, bool), IssueError> {
        let unit = text(&request.unit);
        if unit != self.unit.to_string() {
            return Err(IssueError::UnitMismatch(unit));
        }
        if request.amount == 0 {
            return Err(IssueError::AmountOutOfRange(0));
        }
        let pubkey = PublicKey::from_slice(request.locking_key.as_ref())
            .map_err(|_| IssueError::InvalidLockingKey)?;
        let request_id = hex::encode(request.request_id.to_array());
        let lookup = lookup_id(&request_id);
        let epoch = ext_mint_quote::epoch_of(request.epoch);
        // The epoch's keyset exists before any wallet can see the quote.
        if let Some(epoch) = epoch {
            self.epochs.ensure_epoch(epoch).await.map_err(temporary)?;
        }

        let quote = match self.existing(&lookup).await? {
            Some(quote) => quote,
            None => match self.create(request, &request_id, pubkey).await {
                Ok(quote) => quote,
                // The same request handled concurrently won the unique lookup id.
                Err(e) => self.existing(&lookup).await?.ok_or(e)?,
            },
        };
        if quote.pubkey != Some(pubkey)
            || quote.amount.as_ref().map(|a| a.value()) != Some(request.amount)
            || ext_mint_quote::epoch_of_quote_request(&quote.request).ok() != Some(epoch)
        {
            return Err(IssueError::Conflict(quote.id.to_string()));
        }
        let paid_now = quote.amount_paid().value() < request.amount;
        if paid_now {
            self.mint
                .pay_mint_quote_for_request_id(WaitPaymentResponse {
                    payment_identifier: lookup.clone(),
                    payment_amount: Amount::new(request.amount, self.unit.clone()),
                    payment_id: request_id.clone(),
                })
                .await
                .map_err(temporary)?;
            // The call succeeds for unknown lookup ids too: check that the quote is paid.
            let paid = self
                .existing(&lookup)
                .await?
                .map(|q| q.amount_paid().value());
            if paid != Some(request.amount) {
                return Err(temporary(format!(
                    "quote {} not paid after payment (paid {paid:?})",
                    quote.id
                )));
            }
            // Counted here, whatever happens next: the ehash is issued.
            MintStats::add(&self.stats.quotes_issued, 1);
            MintStats::add(&self.stats.ehash_issued, request.amount);
        }
        self.index(&quote).await?;
        Ok((
            Issued {
                quote_id: quote.id.to_string(),
                amount: request.amount,
            },
            paid_now,
        ))
    }

    async fn existing(
        &self,
        lookup: &cdk_common::payment::PaymentIdentifier,
    ) -> Result<Option<MintQuote>, IssueError> {
        self.db
            .get_mint_quote_by_request_lookup_id(lookup)
            .await
            .map_err(temporary)
    }

    async fn create(
        &self,
        request: &MintQuoteRequestOwned,
        request_id: &str,
        pubkey: PublicKey,
    ) -> Result<MintQuote, IssueError> {
        let extra = EhashQuoteExtra {
            authorization: self.authorization.clone(),
            request_id: request_id.to_string(),
            share_count: request.share_count,
            share_commitment: hex::encode(request.share_commitment.to_array()),
            epoch: ext_mint_quote::epoch_of(request.epoch),
        };
        let response = self
            .mint
            .get_mint_quote(MintQuoteRequest::Custom {
                method: PaymentMethod::Custom(EHASH_METHOD.into()),
                request: MintQuoteCustomRequest {
                    amount: Some(Amount::from(request.amount)),
                    unit: self.unit.clone(),
                    description: None,
                    pubkey: Some(pubkey),
                    extra: serde_json::to_value(&extra).map_err(temporary)?,
                },
            })
            .await
            .map_err(|e| match e {
                cdk::Error::AmountOutofLimitRange(..) => {
                    IssueError::AmountOutOfRange(request.amount)
                }
                other => temporary(other),
            })?;
        let MintQuoteResponse::Custom { response, .. } = response else {
            return Err(temporary("the mint answered with a non-ehash quote"));
        };
        self.db
            .get_mint_quote(&response.quote)
            .await
            .map_err(temporary)?
            .ok_or_else(|| temporary(format!("quote {} vanished", response.quote)))
    }

    /// Records the quote under its key for the wallet lookup (idempotent).
    async fn index(&self, quote: &MintQuote) -> Result<(), IssueError> {
        let Some(pubkey) = quote.pubkey else {
            return Ok(());
        };
        quote_index::record(&self.db, &pubkey, quote.created_time, &quote.id.to_string())
            .await
            .map_err(temporary)
    }
}
