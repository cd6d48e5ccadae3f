//! Keeping ehash in its epoch on the wallet's side (docs/settlement.md, "Epochs in the mint").
//!
//! The mint signs a quote's outputs only in the keyset of the quote's epoch, and a swap of
//! ehash only within one keyset. CDK's wallet always builds outputs in "the active keyset", so
//! the wallet's connection to the mint says which one that is: [`EpochConnector`] passes every
//! call to CDK's HTTP client and, when the wallet has focused it on a keyset, reports that
//! keyset as the unit's only active one. Wallet operations run one at a time
//! (`EhashWallet::minting`), each focusing on the keyset it works in first.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cdk::{
    nuts::{
        BatchCheckMintQuoteRequest, BatchMintRequest, CheckStateRequest, CheckStateResponse,
        CurrencyUnit, Id, KeySet, KeysetResponse, MeltRequest, MintInfo, MintRequest, MintResponse,
        PaymentMethod, RestoreRequest, RestoreResponse, SwapRequest, SwapResponse,
    },
    wallet::{AuthWallet, HttpClient, LnurlPayInvoiceResponse, LnurlPayResponse, MintConnector},
    Error,
};
use cdk_common::{
    MeltQuoteCreateResponse, MeltQuoteRequest, MeltQuoteResponse, MintQuoteRequest,
    MintQuoteResponse,
};

#[derive(Debug)]
pub struct EpochConnector {
    inner: HttpClient,
    unit: CurrencyUnit,
    focus: Mutex<Option<Id>>,
}

impl EpochConnector {
    pub fn new(inner: HttpClient, unit: CurrencyUnit) -> Arc<Self> {
        Arc::new(Self {
            inner,
            unit,
            focus: Mutex::new(None),
        })
    }

    /// From now on, `keyset` is the unit's active keyset as the wallet sees it.
    pub fn focus(&self, keyset: Id) {
        *self.focus.lock().unwrap_or_else(|p| p.into_inner()) = Some(keyset);
    }

    pub fn focused(&self) -> Option<Id> {
        *self.focus.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every keyset of the mint, as the mint lists them (to read a token's proofs).
    pub async fn all_keysets(&self) -> Result<Vec<cdk::nuts::KeySetInfo>, Error> {
        Ok(self.inner.get_mint_keysets().await?.keysets)
    }
}

#[async_trait]
impl MintConnector for EpochConnector {
    async fn fetch_lnurl_pay_request(&self, url: &str) -> Result<LnurlPayResponse, Error> {
        self.inner.fetch_lnurl_pay_request(url).await
    }

    async fn fetch_lnurl_invoice(&self, url: &str) -> Result<LnurlPayInvoiceResponse, Error> {
        self.inner.fetch_lnurl_invoice(url).await
    }

    async fn get_mint_keys(&self) -> Result<Vec<KeySet>, Error> {
        self.inner.get_mint_keys().await
    }

    async fn get_mint_keyset(&self, keyset_id: Id) -> Result<KeySet, Error> {
        self.inner.get_mint_keyset(keyset_id).await
    }

    async fn get_mint_keysets(&self) -> Result<KeysetResponse, Error> {
        let mut answer = self.inner.get_mint_keysets().await?;
        if let Some(focus) = self.focused() {
            for k in &mut answer.keysets {
                if k.unit == self.unit {
                    k.active = k.id == focus;
                }
            }
        }
        Ok(answer)
    }

    async fn post_mint_quote(
        &self,
        request: MintQuoteRequest,
    ) -> Result<MintQuoteResponse<String>, Error> {
        self.inner.post_mint_quote(request).await
    }

    async fn post_mint(
        &self,
        method: &PaymentMethod,
        request: MintRequest<String>,
    ) -> Result<MintResponse, Error> {
        self.inner.post_mint(method, request).await
    }

    async fn post_batch_check_mint_quote_status(
        &self,
        method: &PaymentMethod,
        request: BatchCheckMintQuoteRequest<String>,
    ) -> Result<Vec<MintQuoteResponse<String>>, Error> {
        self.inner
            .post_batch_check_mint_quote_status(method, request)
            .await
    }

    async fn post_batch_mint(
        &self,
        method: &PaymentMethod,
        request: BatchMintRequest<String>,
    ) -> Result<MintResponse, Error> {
        self.inner.post_batch_mint(method, request).await
    }

    async fn post_melt_quote(
        &self,
        request: MeltQuoteRequest,
    ) -> Result<MeltQuoteCreateResponse<String>, Error> {
        self.inner.post_melt_quote(request).await
    }

    async fn get_mint_quote_status(
        &self,
        method: PaymentMethod,
        quote_id: &str,
    ) -> Result<MintQuoteResponse<String>, Error> {
        self.inner.get_mint_quote_status(method, quote_id).await
    }

    async fn get_melt_quote_status(
        &self,
        method: PaymentMethod,
        quote_id: &str,
    ) -> Result<MeltQuoteResponse<String>, Error> {
        self.inner.get_melt_quote_status(method, quote_id).await
    }

    async fn post_melt(
        &self,
        method: &PaymentMethod,
        request: MeltRequest<String>,
    ) -> Result<MeltQuoteResponse<String>, Error> {
        self.inner.post_melt(method, request).await
    }

    async fn post_swap(&self, request: SwapRequest) -> Result<SwapResponse, Error> {
        self.inner.post_swap(request).await
    }

    async fn get_mint_info(&self) -> Result<MintInfo, Error> {
        self.inner.get_mint_info().await
    }

    async fn post_check_state(
        &self,
        request: CheckStateRequest,
    ) -> Result<CheckStateResponse, Error> {
        self.inner.post_check_state(request).await
    }

    async fn post_restore(&self, request: RestoreRequest) -> Result<RestoreResponse, Error> {
        self.inner.post_restore(request).await
    }

    async fn get_auth_wallet(&self) -> Option<AuthWallet> {
        self.inner.get_auth_wallet().await
    }

    async fn set_auth_wallet(&self, wallet: Option<AuthWallet>) {
        self.inner.set_auth_wallet(wallet).await
    }
}
