//! Redemption (docs/settlement.md, "Redemption: ehash to sats, no custody gap"): a melt of a
//! final epoch's ehash, method `hashpool-redeem`, pays a mint quote of unit `sat` locked to
//! the key the melt names, for `floor(x * R_e / H_e)` sats at the rate the pool published,
//! signed, for the epoch.
//!
//! - [`MeltSide`] is the payment processor of unit `hash`: it prices the melt quote from the
//!   pool's signed rate sheet and, when CDK executes the melt (the proofs already verified and
//!   held pending, CDK's spent set making each unit redeemable once), creates and pays the sat
//!   quote. It is keyed by the melt quote's id, so a repeated or resumed execution (after a
//!   crash CDK asks `check_outgoing_payment`) finds the same sat quote instead of paying twice.
//! - [`SatSide`] is the payment processor of unit `sat`: it creates sat quotes only for the
//!   in-process redemption (the same authorization as ehash quotes), never for a wallet.
//!
//! That the proofs are the epoch's own is checked before CDK sees the melt
//! (`epoch_http::keep_epochs`: every input in the keyset of the quote's epoch).

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use async_trait::async_trait;
use cdk::{
    mint::{Mint, MintQuoteRequest, MintQuoteResponse},
    nuts::{nut04::MintQuoteCustomRequest, CurrencyUnit, MeltQuoteState, PaymentMethod, PublicKey},
    Amount,
};
use cdk_common::payment::{
    CreateIncomingPaymentResponse, Error as PaymentError, Event, IncomingPaymentOptions,
    MakePaymentResponse, MintPayment, OutgoingPaymentOptions, PaymentIdentifier,
    PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
};
use ext_mint_quote::{parse_redeem_request, RedeemRequest, REDEEM_METHOD};
use futures::Stream;
use hashpool_settlement::rates::{FinalRate, RateSheet, RATES_TAG};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::issuer::MintDb;

/// Where the pool's signed rates are read (the mint's `[settlement]`, docs/mint.md).
#[derive(Debug, Clone)]
pub struct RedeemConfig {
    /// `GET` answers the pool's `Signed<Vec<FinalRate>>` (`/api/v1/settlement/rates`).
    pub rates_url: String,
    /// The pool's authority key, x-only: the sheet must be signed with it.
    pub pool_key: [u8; 32],
}

/// The pool's sheet is read again at most this often for epochs it did not list: melt quotes
/// are anyone's to ask for, and each must not cost the pool a request.
pub const RATES_REREAD: Duration = Duration::from_secs(5);

/// The pool's final rates, read when an epoch not known final yet is asked for.
pub struct Rates {
    config: RedeemConfig,
    http: reqwest::Client,
    known: RwLock<HashMap<u32, FinalRate>>,
    /// When the sheet was last read; held while it is read (one read at a time).
    last_read: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl Rates {
    pub fn new(config: RedeemConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            known: RwLock::default(),
            last_read: tokio::sync::Mutex::new(None),
        }
    }

    /// The final rate of `epoch`, `None` while the pool's sheet does not list it.
    pub async fn final_rate(&self, epoch: u32) -> Result<Option<FinalRate>, String> {
        if let Some(r) = self.known.read().await.get(&epoch) {
            return Ok(Some(r.clone()));
        }
        let mut last_read = self.last_read.lock().await;
        if last_read.is_some_and(|t| t.elapsed() < RATES_REREAD) {
            // Read moments ago (perhaps by the request this one waited for).
            return Ok(self.known.read().await.get(&epoch).cloned());
        }
        *last_read = Some(std::time::Instant::now());
        let url = &self.config.rates_url;
        let sheet: RateSheet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("the pool's rates ({url}): {e}"))?
            .json()
            .await
            .map_err(|e| format!("the pool's rates ({url}): {e}"))?;
        sheet
            .verify(RATES_TAG, &self.config.pool_key)
            .map_err(|e| format!("the pool's rate sheet is not the pool's: {e}"))?;
        let mut known = self.known.write().await;
        for rate in sheet.body {
            // A final rate never changes: the first one read stays.
            known.entry(rate.epoch).or_insert(rate);
        }
        Ok(known.get(&epoch).cloned())
    }
}

/// What the melt side passes to the sat side in the sat quote's extra fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct SatQuoteExtra {
    /// Secret known only inside this process.
    pub authorization: String,
    /// The redemption melt quote this sat quote is paid by.
    pub melt_quote: String,
}

/// The lookup id of the sat quote a melt quote pays (one per melt quote, unique in the
/// database).
pub fn sat_lookup_id(melt_quote: &str) -> PaymentIdentifier {
    PaymentIdentifier::CustomId(format!("redeem-{melt_quote}"))
}

/// State both sides share.
pub struct Redemption {
    rates: Rates,
    db: MintDb,
    mint: OnceLock<Arc<Mint>>,
    hash_unit: CurrencyUnit,
    authorization: String,
}

impl Redemption {
    pub fn new(
        config: RedeemConfig,
        db: MintDb,
        hash_unit: CurrencyUnit,
        authorization: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            rates: Rates::new(config),
            db,
            mint: OnceLock::new(),
            hash_unit,
            authorization,
        })
    }

    /// The final rate of `epoch`, `None` while the pool's sheet does not list it.
    pub async fn final_rate(&self, epoch: u32) -> Result<Option<FinalRate>, String> {
        self.rates.final_rate(epoch).await
    }

    /// The mint, once built (the processors are built before it).
    pub fn set_mint(&self, mint: Arc<Mint>) {
        let _ = self.mint.set(mint);
    }

    fn refuse(reason: impl Into<String>) -> PaymentError {
        PaymentError::Custom(reason.into())
    }

    /// The request's sats, at the epoch's final rate.
    pub async fn price(&self, request: &str) -> Result<(RedeemRequest, u64), PaymentError> {
        let r = parse_redeem_request(request).map_err(|e| Self::refuse(e.to_string()))?;
        PublicKey::from_hex(&r.locking_key_hex)
            .map_err(|_| Self::refuse("the redemption's key is not a public key"))?;
        let rate = self
            .rates
            .final_rate(r.epoch)
            .await
            .map_err(Self::refuse)?
            .ok_or_else(|| {
                Self::refuse(format!(
                    "epoch {} is not final yet: its rate is not published",
                    r.epoch
                ))
            })?;
        let sats = hashpool_settlement::redemption_sats(r.amount, rate.reward_sats, rate.ehash)
            .map_err(|e| Self::refuse(e.to_string()))?;
        if sats == 0 {
            return Err(Self::refuse(format!(
                "{} ehash of epoch {} is worth less than a sat",
                r.amount, r.epoch
            )));
        }
        Ok((r, sats))
    }

    async fn existing_sat_quote(
        &self,
        melt_quote: &str,
    ) -> Result<Option<cdk::mint::MintQuote>, PaymentError> {
        self.db
            .get_mint_quote_by_request_lookup_id(&sat_lookup_id(melt_quote))
            .await
            .map_err(|e| Self::refuse(e.to_string()))
    }

    /// Creates (or finds) the sat quote `melt_quote` pays, and pays it. Returns its id.
    async fn pay_sat_quote(
        &self,
        melt_quote: &str,
        key: PublicKey,
        sats: u64,
    ) -> Result<String, PaymentError> {
        let mint = self
            .mint
            .get()
            .ok_or_else(|| Self::refuse("the mint is starting"))?;
        let quote = match self.existing_sat_quote(melt_quote).await? {
            Some(q) => q,
            None => {
                let extra = SatQuoteExtra {
                    authorization: self.authorization.clone(),
                    melt_quote: melt_quote.to_string(),
                };
                let created = mint
                    .get_mint_quote(MintQuoteRequest::Custom {
                        method: PaymentMethod::Custom(REDEEM_METHOD.into()),
                        request: MintQuoteCustomRequest {
                            amount: Some(Amount::from(sats)),
                            unit: CurrencyUnit::Sat,
                            description: None,
                            pubkey: Some(key),
                            extra: serde_json::to_value(&extra)
                                .map_err(|e| Self::refuse(e.to_string()))?,
                        },
                    })
                    .await;
                match created {
                    Ok(MintQuoteResponse::Custom { .. }) => {}
                    Ok(_) => return Err(Self::refuse("the mint made a non-custom sat quote")),
                    // The same melt executed concurrently won the unique lookup id.
                    Err(e) => tracing::debug!("creating the sat quote of {melt_quote}: {e}"),
                }
                self.existing_sat_quote(melt_quote)
                    .await?
                    .ok_or_else(|| Self::refuse("the sat quote was not stored"))?
            }
        };
        if quote.pubkey != Some(key) || quote.amount.as_ref().map(|a| a.value()) != Some(sats) {
            return Err(Self::refuse(format!(
                "the sat quote of melt {melt_quote} differs from this redemption"
            )));
        }
        if quote.amount_paid().value() < sats {
            mint.pay_mint_quote_for_request_id(WaitPaymentResponse {
                payment_identifier: sat_lookup_id(melt_quote),
                payment_amount: Amount::new(sats, CurrencyUnit::Sat),
                payment_id: melt_quote.to_string(),
            })
            .await
            .map_err(|e| Self::refuse(e.to_string()))?;
        }
        Ok(quote.id.to_string())
    }
}

/// The `hash` side: melts of final epochs' ehash.
pub struct MeltSide(pub Arc<Redemption>);

/// The `sat` side: sat quotes made by redemptions only.
pub struct SatSide {
    redemption: Arc<Redemption>,
    events_active: AtomicBool,
}

impl SatSide {
    pub fn new(redemption: Arc<Redemption>) -> Self {
        Self {
            redemption,
            events_active: AtomicBool::new(false),
        }
    }
}

fn settings(unit: &CurrencyUnit) -> SettingsResponse {
    SettingsResponse {
        unit: unit.to_string(),
        bolt11: None,
        bolt12: None,
        onchain: None,
        custom: HashMap::from([(
            REDEEM_METHOD.to_string(),
            r#"{"rates":"the pool's signed final rates","locked":"nut20"}"#.to_string(),
        )]),
    }
}

fn pending_stream() -> Pin<Box<dyn Stream<Item = Event> + Send>> {
    Box::pin(futures::stream::pending())
}

#[async_trait]
impl MintPayment for MeltSide {
    type Err = PaymentError;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(settings(&self.0.hash_unit))
    }

    async fn create_incoming_payment_request(
        &self,
        _options: IncomingPaymentOptions,
    ) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        Err(Redemption::refuse(
            "ehash is issued for accepted work, not bought",
        ))
    }

    async fn get_payment_quote(
        &self,
        unit: &CurrencyUnit,
        options: OutgoingPaymentOptions,
    ) -> Result<PaymentQuoteResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        if unit != &self.0.hash_unit {
            return Err(Redemption::refuse("only ehash is redeemed"));
        }
        let (request, _sats) = self.0.price(&options.request).await?;
        Ok(PaymentQuoteResponse {
            request_lookup_id: Some(PaymentIdentifier::CustomId(options.quote_id.to_string())),
            amount: Amount::new(request.amount, unit.clone()),
            fee: Amount::new(0, unit.clone()),
            state: MeltQuoteState::Unpaid,
            extra_json: None,
            estimated_blocks: None,
            fee_options: None,
        })
    }

    async fn make_payment(
        &self,
        unit: &CurrencyUnit,
        options: OutgoingPaymentOptions,
    ) -> Result<MakePaymentResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        let (request, sats) = self.0.price(&options.request).await?;
        let key = PublicKey::from_hex(&request.locking_key_hex)
            .map_err(|_| Redemption::refuse("the redemption's key is not a public key"))?;
        let melt_quote = options.quote_id.to_string();
        let sat_quote = self.0.pay_sat_quote(&melt_quote, key, sats).await?;
        tracing::info!(
            melt_quote,
            sat_quote,
            epoch = request.epoch,
            ehash = request.amount,
            sats,
            "ehash redeemed"
        );
        Ok(MakePaymentResponse {
            payment_lookup_id: PaymentIdentifier::CustomId(melt_quote),
            payment_proof: Some(sat_quote),
            status: MeltQuoteState::Paid,
            total_spent: Amount::new(request.amount, unit.clone()),
        })
    }

    async fn wait_payment_event(
        &self,
    ) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        Ok(pending_stream())
    }

    fn is_payment_event_stream_active(&self) -> bool {
        false
    }

    fn cancel_payment_event_stream(&self) {}

    async fn check_incoming_payment_status(
        &self,
        _payment_identifier: &PaymentIdentifier,
    ) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        Ok(Vec::new())
    }

    /// After a crash mid-melt CDK asks here: paid when the melt's sat quote is paid (the
    /// proofs are then spent by CDK), else unpaid (CDK returns the proofs to the wallet).
    async fn check_outgoing_payment(
        &self,
        payment_identifier: &PaymentIdentifier,
    ) -> Result<MakePaymentResponse, Self::Err> {
        let melt_quote = match payment_identifier {
            PaymentIdentifier::CustomId(id) => id.clone(),
            other => other.to_string(),
        };
        let paid = self
            .0
            .existing_sat_quote(&melt_quote)
            .await?
            .filter(|q| q.amount_paid().value() > 0);
        let (status, proof, spent) = match &paid {
            Some(q) => (MeltQuoteState::Paid, Some(q.id.to_string()), None),
            None => (MeltQuoteState::Unpaid, None, Some(0)),
        };
        // The ehash spent is the melt quote's amount: CDK reads it from the quote when paid.
        let total = match spent {
            Some(z) => z,
            None => self
                .0
                .db
                .get_melt_quote(
                    &melt_quote
                        .parse()
                        .map_err(|_| Redemption::refuse("not a melt quote id"))?,
                )
                .await
                .map_err(|e| Redemption::refuse(e.to_string()))?
                .map(|q| q.amount().value())
                .unwrap_or_default(),
        };
        Ok(MakePaymentResponse {
            payment_lookup_id: PaymentIdentifier::CustomId(melt_quote),
            payment_proof: proof,
            status,
            total_spent: Amount::new(total, self.0.hash_unit.clone()),
        })
    }
}

#[async_trait]
impl MintPayment for SatSide {
    type Err = PaymentError;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(settings(&CurrencyUnit::Sat))
    }

    async fn create_incoming_payment_request(
        &self,
        options: IncomingPaymentOptions,
    ) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        let IncomingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        let extra: SatQuoteExtra = options
            .extra_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| Redemption::refuse("sat quotes are made by redemptions only"))?;
        if !crate::processor::constant_time_eq(
            extra.authorization.as_bytes(),
            self.redemption.authorization.as_bytes(),
        ) {
            return Err(Redemption::refuse(
                "sat quotes are made by redemptions only",
            ));
        }
        Ok(CreateIncomingPaymentResponse {
            request_lookup_id: sat_lookup_id(&extra.melt_quote),
            request: format!("redeem:{}", extra.melt_quote),
            expiry: None,
            extra_json: None,
        })
    }

    async fn get_payment_quote(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<PaymentQuoteResponse, Self::Err> {
        Err(Redemption::refuse("sats are withdrawn by another method"))
    }

    async fn make_payment(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<MakePaymentResponse, Self::Err> {
        Err(Redemption::refuse("sats are withdrawn by another method"))
    }

    async fn wait_payment_event(
        &self,
    ) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        self.events_active.store(true, Ordering::SeqCst);
        Ok(pending_stream())
    }

    fn is_payment_event_stream_active(&self) -> bool {
        self.events_active.load(Ordering::SeqCst)
    }

    fn cancel_payment_event_stream(&self) {
        self.events_active.store(false, Ordering::SeqCst);
    }

    async fn check_incoming_payment_status(
        &self,
        _payment_identifier: &PaymentIdentifier,
    ) -> Result<Vec<WaitPaymentResponse>, Self::Err> {
        Ok(Vec::new())
    }

    async fn check_outgoing_payment(
        &self,
        _payment_identifier: &PaymentIdentifier,
    ) -> Result<MakePaymentResponse, Self::Err> {
        Err(Redemption::refuse("sats are withdrawn by another method"))
    }
}
