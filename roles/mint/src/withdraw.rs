//! Withdrawal in the coinbase (docs/settlement.md, "Withdrawals in the coinbase"): a melt of
//! sat ecash, method `hashpool-coinbase`, whose request names the sats and an address of the
//! mint's chain. Executing it records the withdrawal in the mint's database (CDK's key-value
//! store, keyed by the melt quote's id, written once); the pool reads the signed list of
//! records (`GET /v1/hashpool/withdrawals`) and pays each in a coinbase output.
//!
//! The record *is* the payment: `check_outgoing_payment` reports a melt paid exactly when its
//! record exists, so CDK's recovery of a melt a crash interrupted either finds the record (the
//! proofs stay spent, the pool pays) or not (the proofs go back to the wallet, nothing is owed).

use std::{collections::HashMap, pin::Pin, str::FromStr, sync::Arc};

use async_trait::async_trait;
use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use bitcoin::{Address, Network};
use cdk::{
    nuts::{CurrencyUnit, MeltQuoteState},
    Amount,
};
use cdk_common::payment::{
    CreateIncomingPaymentResponse, Error as PaymentError, Event, IncomingPaymentOptions,
    MakePaymentResponse, MintPayment, OutgoingPaymentOptions, PaymentIdentifier,
    PaymentQuoteResponse, SettingsResponse, WaitPaymentResponse,
};
use ext_mint_quote::{parse_withdraw_request, WithdrawRequest, WITHDRAW_METHOD};
use futures::Stream;
use hashpool_settlement::withdrawals::{Withdrawal, WithdrawalList, WITHDRAWALS_TAG};

use crate::cashu_error::{cashu_error, UNAVAILABLE};
use crate::issuer::MintDb;

/// The longest output script withdrawn to (P2WSH, P2TR).
pub const MAX_SCRIPT: usize = 34;

/// CDK key-value namespaces of the records.
const NAMESPACE: &str = "hashpool";
const RECORDS: &str = "withdrawals";

/// The mint's `[settlement]` withdrawal settings (docs/mint.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawConfig {
    /// The chain withdrawal addresses must be of.
    pub network: Network,
    /// The smallest withdrawal: each is a coinbase output of its own.
    pub min_sats: u64,
    /// The largest: one output must fit one block's reward.
    pub max_sats: u64,
}

pub struct Withdrawals {
    config: WithdrawConfig,
    db: MintDb,
    /// Counts records written by this process: a list built before the last one is stale.
    written: std::sync::atomic::AtomicU64,
}

fn refuse(reason: impl Into<String>) -> PaymentError {
    PaymentError::Custom(reason.into())
}

impl Withdrawals {
    pub fn new(config: WithdrawConfig, db: MintDb) -> Arc<Self> {
        Arc::new(Self {
            config,
            db,
            written: Default::default(),
        })
    }

    /// The request, checked: its address is of the mint's chain and its sats in range.
    pub fn check(&self, request: &str) -> Result<(WithdrawRequest, Address), PaymentError> {
        let r = parse_withdraw_request(request).map_err(|e| refuse(e.to_string()))?;
        let address = Address::from_str(&r.address)
            .map_err(|e| refuse(format!("`{}` is not an address: {e}", r.address)))?
            .require_network(self.config.network)
            .map_err(|_| {
                refuse(format!(
                    "`{}` is not an address of this mint's chain ({})",
                    r.address, self.config.network
                ))
            })?;
        // Longer scripts (witness programs of future versions) are not standard outputs, and
        // pool and job declarators reserve room for 34-byte ones.
        if address.script_pubkey().len() > MAX_SCRIPT {
            return Err(refuse(format!(
                "`{}` is not a standard output's address",
                r.address
            )));
        }
        let (min, max) = (self.config.min_sats, self.config.max_sats);
        if r.sats < min || r.sats > max {
            return Err(refuse(format!(
                "a withdrawal is of {min} to {max} sats, not {}",
                r.sats
            )));
        }
        Ok((r, address))
    }

    async fn record(&self, quote_id: &str) -> Result<Option<Withdrawal>, PaymentError> {
        let bytes = self
            .db
            .kv_read(NAMESPACE, RECORDS, quote_id)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| refuse(e.to_string())))
            .transpose()
    }

    /// Records the withdrawal of melt `quote_id`, once: a repeated execution finds the record.
    async fn write_once(&self, w: &Withdrawal) -> Result<(), PaymentError> {
        let value = serde_json::to_vec(w).map_err(|e| refuse(e.to_string()))?;
        let mut tx = self
            .db
            .begin_transaction()
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let written = tx
            .kv_write_if_absent(NAMESPACE, RECORDS, &w.quote_id, &value)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        tx.commit().await.map_err(|e| refuse(e.to_string()))?;
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if !written {
            let held = self.record(&w.quote_id).await?;
            if held.as_ref().map(|h| (h.sats, &h.script)) != Some((w.sats, &w.script)) {
                return Err(refuse(format!(
                    "melt {} already records another withdrawal",
                    w.quote_id
                )));
            }
        }
        Ok(())
    }

    /// Every record, oldest first (then by quote id).
    pub async fn all(&self) -> Result<Vec<Withdrawal>, String> {
        let keys = self
            .db
            .kv_list(NAMESPACE, RECORDS)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(w) = self.record(&key).await.map_err(|e| e.to_string())? {
                out.push(w);
            }
        }
        out.sort_by(|a, b| (a.recorded_at, &a.quote_id).cmp(&(b.recorded_at, &b.quote_id)));
        Ok(out)
    }
}

/// The `sat` side of method `hashpool-coinbase`: melts only.
pub struct WithdrawSide(pub Arc<Withdrawals>);

#[async_trait]
impl MintPayment for WithdrawSide {
    type Err = PaymentError;

    async fn get_settings(&self) -> Result<SettingsResponse, Self::Err> {
        Ok(SettingsResponse {
            unit: CurrencyUnit::Sat.to_string(),
            bolt11: None,
            bolt12: None,
            onchain: None,
            custom: HashMap::from([(
                WITHDRAW_METHOD.to_string(),
                serde_json::json!({
                    "request": "coinbase:<sats>:<address>",
                    "network": self.0.config.network.to_string(),
                    "min_sats": self.0.config.min_sats,
                    "max_sats": self.0.config.max_sats,
                })
                .to_string(),
            )]),
        })
    }

    async fn create_incoming_payment_request(
        &self,
        _options: IncomingPaymentOptions,
    ) -> Result<CreateIncomingPaymentResponse, Self::Err> {
        Err(refuse("sats are issued by redemptions, not bought"))
    }

    async fn get_payment_quote(
        &self,
        unit: &CurrencyUnit,
        options: OutgoingPaymentOptions,
    ) -> Result<PaymentQuoteResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        if unit != &CurrencyUnit::Sat {
            return Err(refuse("only sats are withdrawn"));
        }
        let (request, _) = self.0.check(&options.request)?;
        Ok(PaymentQuoteResponse {
            request_lookup_id: Some(PaymentIdentifier::CustomId(options.quote_id.to_string())),
            amount: Amount::new(request.sats, CurrencyUnit::Sat),
            // A coinbase output costs no transaction fee.
            fee: Amount::new(0, CurrencyUnit::Sat),
            state: MeltQuoteState::Unpaid,
            extra_json: None,
            estimated_blocks: None,
            fee_options: None,
        })
    }

    async fn make_payment(
        &self,
        _unit: &CurrencyUnit,
        options: OutgoingPaymentOptions,
    ) -> Result<MakePaymentResponse, Self::Err> {
        let OutgoingPaymentOptions::Custom(options) = options else {
            return Err(PaymentError::UnsupportedPaymentOption);
        };
        let (request, address) = self.0.check(&options.request)?;
        let quote_id = options.quote_id.to_string();
        let withdrawal = Withdrawal {
            quote_id: quote_id.clone(),
            sats: request.sats,
            address: request.address,
            script: address.script_pubkey().to_hex_string(),
            recorded_at: hashpool_role::unix_now(),
        };
        self.0.write_once(&withdrawal).await?;
        tracing::info!(
            quote_id,
            sats = withdrawal.sats,
            address = withdrawal.address,
            "withdrawal recorded: the pool pays it in a coinbase"
        );
        Ok(MakePaymentResponse {
            payment_lookup_id: PaymentIdentifier::CustomId(quote_id.clone()),
            payment_proof: Some(quote_id),
            status: MeltQuoteState::Paid,
            total_spent: Amount::new(withdrawal.sats, CurrencyUnit::Sat),
        })
    }

    async fn wait_payment_event(
        &self,
    ) -> Result<Pin<Box<dyn Stream<Item = Event> + Send>>, Self::Err> {
        Ok(Box::pin(futures::stream::pending()))
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

    /// After a crash mid-melt CDK asks here: paid exactly when the withdrawal was recorded.
    async fn check_outgoing_payment(
        &self,
        payment_identifier: &PaymentIdentifier,
    ) -> Result<MakePaymentResponse, Self::Err> {
        let quote_id = match payment_identifier {
            PaymentIdentifier::CustomId(id) => id.clone(),
            other => other.to_string(),
        };
        let record = self.0.record(&quote_id).await?;
        Ok(MakePaymentResponse {
            payment_lookup_id: PaymentIdentifier::CustomId(quote_id.clone()),
            payment_proof: record.as_ref().map(|_| quote_id),
            status: if record.is_some() {
                MeltQuoteState::Paid
            } else {
                MeltQuoteState::Unpaid
            },
            total_spent: Amount::new(record.map_or(0, |w| w.sats), CurrencyUnit::Sat),
        })
    }
}

/// How long a built list is answered again: anyone may ask, and each build reads every
/// record.
pub const LIST_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct ListState {
    pub withdrawals: Arc<Withdrawals>,
    /// The mint's authority secret key: signs the list.
    pub secret_key: [u8; 32],
    /// The list last built, with the record count it was built after; held while one is
    /// built (one at a time).
    pub built: Arc<tokio::sync::Mutex<Option<(std::time::Instant, u64, WithdrawalList)>>>,
}

/// `GET /v1/hashpool/withdrawals`: every recorded withdrawal, signed with the mint's key.
pub async fn list(State(state): State<ListState>) -> Response {
    let mut built = state.built.lock().await;
    let written = state
        .withdrawals
        .written
        .load(std::sync::atomic::Ordering::SeqCst);
    if let Some((at, after, list)) = built.as_ref() {
        if at.elapsed() < LIST_FRESH && *after == written {
            return Json(list.clone()).into_response();
        }
    }
    let signed = state.withdrawals.all().await.and_then(|all| {
        WithdrawalList::sign(WITHDRAWALS_TAG, &state.secret_key, all).map_err(|e| e.to_string())
    });
    match signed {
        Ok(list) => {
            *built = Some((std::time::Instant::now(), written, list.clone()));
            Json(list).into_response()
        }
        Err(e) => cashu_error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn withdrawals() -> Arc<Withdrawals> {
        let db: MintDb = Arc::new(
            cdk_sqlite::MintSqliteDatabase::new(":memory:")
                .await
                .unwrap(),
        );
        Withdrawals::new(
            WithdrawConfig {
                network: Network::Regtest,
                min_sats: 10_000,
                max_sats: 100_000_000,
            },
            db,
        )
    }

    const REGTEST: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    const MAINNET: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

    #[tokio::test]
    async fn only_an_address_of_the_chain_and_sats_in_range_are_withdrawn() {
        let w = withdrawals().await;
        assert!(w.check(&format!("coinbase:10000:{REGTEST}")).is_ok());
        assert!(w.check(&format!("coinbase:100000000:{REGTEST}")).is_ok());
        // A 40-byte witness program of a future version: no standard output.
        let long = Address::from_witness_program(
            bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V2, &[7u8; 40]).unwrap(),
            bitcoin::KnownHrp::Regtest,
        );
        for bad in [
            format!("coinbase:10000:{long}"),
            format!("coinbase:9999:{REGTEST}"),
            format!("coinbase:100000001:{REGTEST}"),
            format!("coinbase:10000:{MAINNET}"),
            "coinbase:10000:notanaddress".to_string(),
            format!("redeem:10000:{REGTEST}"),
        ] {
            assert!(w.check(&bad).is_err(), "{bad} accepted");
        }
    }

    #[tokio::test]
    async fn a_withdrawal_is_recorded_once_and_paid_only_when_recorded() {
        let w = withdrawals().await;
        let side = WithdrawSide(w.clone());
        let id = PaymentIdentifier::CustomId("q1".into());
        let before = side.check_outgoing_payment(&id).await.unwrap();
        assert_eq!(before.status, MeltQuoteState::Unpaid);
        let record = Withdrawal {
            quote_id: "q1".into(),
            sats: 20_000,
            address: REGTEST.into(),
            script: "0014751e76e8199196d454941c45d1b3a323f1433bd6".into(),
            recorded_at: 5,
        };
        w.write_once(&record).await.unwrap();
        // Executed again (a crash between the record and CDK's bookkeeping): the same record.
        w.write_once(&Withdrawal {
            recorded_at: 9,
            ..record.clone()
        })
        .await
        .unwrap();
        // Another withdrawal under the same melt is refused.
        assert!(w
            .write_once(&Withdrawal {
                sats: 30_000,
                ..record.clone()
            })
            .await
            .is_err());
        let after = side.check_outgoing_payment(&id).await.unwrap();
        assert_eq!(after.status, MeltQuoteState::Paid);
        assert_eq!(after.total_spent.value(), 20_000);
        assert_eq!(w.all().await.unwrap(), vec![record.clone()]);

        // The signed list: answered again within a second, but never without a record written
        // since it was built.
        let state = ListState {
            withdrawals: w.clone(),
            secret_key: [7; 32],
            built: Arc::default(),
        };
        let read = |state: ListState| async move {
            let response = list(State(state)).await;
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice::<WithdrawalList>(&bytes).unwrap()
        };
        let first = read(state.clone()).await;
        assert_eq!(first.body, vec![record.clone()]);
        let second = Withdrawal {
            quote_id: "q2".into(),
            recorded_at: 6,
            ..record.clone()
        };
        w.write_once(&second).await.unwrap();
        let listed = read(state.clone()).await;
        assert_eq!(listed.body, vec![record, second]);
        let signer = {
            let secp = bitcoin::secp256k1::Secp256k1::signing_only();
            bitcoin::secp256k1::Keypair::from_seckey_slice(&secp, &[7; 32])
                .unwrap()
                .x_only_public_key()
                .0
                .serialize()
        };
        listed.verify(WITHDRAWALS_TAG, &signer).unwrap();
    }
}
