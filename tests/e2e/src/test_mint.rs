//! The mint in-process, and wallets on it.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{loopback_any_port, public_key, secret_key};

/// A real mint (roles/mint) in-process, linked to a pool's mint link, its database under `dir`.
pub struct TestMint {
    pub running: mint::RunningMint,
    pub shutdown: CancellationToken,
}

pub fn mint_run_config(
    dir: &Path,
    mint_link: SocketAddr,
    http_address: SocketAddr,
) -> mint::MintRunConfig {
    mint::MintRunConfig {
        http_address,
        pool_address: mint_link.into(),
        pool_authority_public_key: public_key(),
        secret_key: secret_key(),
        unit: "hash".into(),
        database_path: dir.join("mint.sqlite"),
        database_url: None,
        seed_path: dir.join("mint.seed"),
        info: mint::info::MintInfoSettings {
            name: Some("test mint".into()),
            description: Some("hashpool e2e".into()),
            ..Default::default()
        },
        max_concurrent_quotes: 4,
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(1_000),
        // Lookups are signed for `http://<bound address>`, the URL `TestMint::url` gives.
        public_url: None,
        other_urls: Vec::new(),
        monitoring_address: loopback_any_port(),
        lookup_nonce_capacity: mint::config::DEFAULT_LOOKUP_NONCE_CAPACITY,
        sqlite_memory_limit: mint::config::DEFAULT_SQLITE_MEMORY_LIMIT_MIB << 20,
        redeem: None,
        withdraw: None,
    }
}

impl TestMint {
    /// The states the mint gives the proofs with these Y values (NUT-07 `checkstate`), in order.
    pub async fn proof_states(&self, ys: &[String]) -> anyhow::Result<Vec<String>> {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/checkstate", self.url()))
            .json(&serde_json::json!({ "Ys": ys }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["states"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s["state"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn start(dir: &Path, mint_link: SocketAddr) -> anyhow::Result<Self> {
        Self::start_at(dir, mint_link, loopback_any_port()).await
    }

    pub async fn start_at(
        dir: &Path,
        mint_link: SocketAddr,
        http_address: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_with(mint_run_config(dir, mint_link, http_address)).await
    }

    /// A mint of this configuration ([`mint_run_config`], changed).
    pub async fn start_with(config: mint::MintRunConfig) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let running = mint::start(config, shutdown.clone()).await?;
        Ok(Self { running, shutdown })
    }

    /// Issues an ehash quote of `epoch` locked to `key` as the pool's request for batch `id`
    /// would; returns its id.
    pub async fn issue(
        &self,
        id: u8,
        key: &[u8],
        amount: u64,
        epoch: u32,
    ) -> anyhow::Result<String> {
        let request = ext_mint_quote::MintQuoteRequestOwned {
            request_id: binary_sv2::U256Owned::from([id; 32]),
            locking_key: binary_sv2::B0255Owned::new(key.to_vec())
                .map_err(|e| anyhow::anyhow!("locking key: {e:?}"))?,
            unit: hashpool_sv2_io::str0255("hash"),
            amount,
            share_count: 1,
            share_commitment: binary_sv2::U256Owned::from([id; 32]),
            epoch,
        };
        Ok(self.running.issuer.issue(&request).await?.quote_id)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.running.http_address)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("mint did not stop")??;
        Ok(())
    }
}

/// A wallet with a fresh mnemonic under `dir`.
pub async fn open_wallet(
    dir: &Path,
    mint_url: &str,
) -> anyhow::Result<hashpool_wallet::EhashWallet> {
    Ok(hashpool_wallet::EhashWallet::open(&wallet_config(dir, mint_url)).await?)
}

/// A wallet of unit `hash` on `mint_url`, kept in `dir`.
pub fn wallet_config(dir: &Path, mint_url: &str) -> hashpool_wallet::WalletConfig {
    hashpool_wallet::WalletConfig {
        mint_url: mint_url.to_string(),
        unit: "hash".into(),
        database_path: dir.join("wallet.sqlite"),
        mnemonic: None,
        mnemonic_path: dir.join("mnemonic"),
    }
}
