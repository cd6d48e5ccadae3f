//! The `ehash` payment method. Its quotes are created by the mint itself when the pool asks
//! (see `issuer`), already paid and locked to the miner's key; nothing arrives from outside and
//! nothing can be melted. A quote request that does not carry the in-process authorization is
//! refused here too, so the HTTP route is closed twice.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use cdk_common::{
    nuts::CurrencyUnit,
    payment::{
        CreateIncomingPaymentResponse, Error as PaymentError, Event, IncomingPaymentOptions,
        MakePaymentResponse, MintPayment, OutgoingPaymentOptions, PaymentIdentifier,
        PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
    },
};
use futures::Stream;
use serde::{Deserialize, Serialize};

pub use ext_mint_quote::EHASH_METHOD;

/// What the issuer passes to the processor in the quote request's extra fields.
#[derive(Debug, Serialize, Deserialize)]
pub struct EhashQuoteExtra {
    /// Secret known only inside this process.
    pub authorization: String,
    /// The pool's request id (hex): the quote's lookup id, unique in the database.
    pub request_id: String,
    /// Shares in the batch and the SHA-256 commitment to their hashes (hex): shown to wallets
    /// as the quote's request, kept for audit.
    pub share_count: u32,
    pub share_commitment: String,
    /// The settlement epoch of the batch (`None`: work from before the pool's first epoch).
    #[serde(default)]
    pub epoch: Option<u32>,
}

/// The lookup id a request id maps to (one quote per request id, enforced by the database).
pub fn lookup_id(request_id_hex: &str) -> PaymentIdentifier {
    PaymentIdentifier::CustomId(format!("hashpool-{request_id_hex}"))
}

pub struct EhashProcessor {
    unit: CurrencyUnit,
    authorization: String,
    events_active: AtomicBool,
}

impl EhashProcessor {
    pub fn new(unit: CurrencyUnit, authorization: String) -> Self {
        Self {
            unit,
            authorization,
            events_active: AtomicBool::new(false),
        }
    }

    fn refuse(reason: &str) -> PaymentError {
        PaymentError::Custom(reason.to_string())
    }
}

#[async_trait]
impl MintPayment for EhashProcessor {
    type Err = PaymentError;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(SettingsResponse {
            unit: self.unit.to_string(),
            bolt11: None,
            bolt12: None,
            onchain: None,
            custom: HashMap::from([(
                EHASH_METHOD.to_string(),
                r#"{"issued_by":"pool","locked":"nut20"}"#.to_string(),
            )]),
        })
    }

    async fn create_incoming_payment_request(
        &self,
        options: IncomingPaymentOptions,
    ) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        let IncomingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        let extra: EhashQuoteExtra = options
            .extra_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| Self::refuse("ehash quotes are created by the pool only"))?;
        if !constant_time_eq(
            extra.authorization.as_bytes(),
            self.authorization.as_bytes(),
        ) {
            return Err(Self::refuse("ehash quotes are created by the pool only"));
        }
        if options.pubkey.is_none() {
            return Err(Self::refuse("ehash quotes must be locked to a key"));
        }
        Ok(CreateIncomingPaymentResponse {
            request_lookup_id: lookup_id(&extra.request_id),
            request: ext_mint_quote::ehash_quote_request(
                &extra.request_id,
                extra.share_count,
                &extra.share_commitment,
                extra.epoch,
            ),
            // Paid at creation; the wallet may mint it whenever it comes online.
            expiry: None,
            extra_json: None,
        })
    }

    async fn get_payment_quote(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<PaymentQuoteResponse, Self::Err> {
        Err(Self::refuse("ehash cannot be melted"))
    }

    async fn make_payment(
        &self,
        _unit: &CurrencyUnit,
        _options: OutgoingPaymentOptions,
    ) -> Result<MakePaymentResponse, Self::Err> {
        Err(Self::refuse("ehash cannot be melted"))
    }

    /// Payments are applied in-process by the issuer, so the stream never yields.
    async fn wait_payment_event(
        &self,
    ) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        self.events_active.store(true, Ordering::SeqCst);
        Ok(Box::pin(futures::stream::pending()))
    }

    fn is_payment_event_stream_active(&self) -> bool {
        self.events_active.load(Ordering::SeqCst)
    }

    fn cancel_payment_event_stream(&self) {
        self.events_active.store(false, Ordering::SeqCst);
    }

    /// A quote is paid in the transaction that follows its creation; there is no other source
    /// of payments to ask.
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
        Err(Self::refuse("ehash cannot be melted"))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
