//! The template provider in-process: a regtest-like chain of its own, and its JSON-RPC.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use template_provider::{
    config::{ChainConfig, MempoolConfig, ServerConfig},
    http::StatusResponse,
    RunningProvider, TemplateProviderConfig,
};
use tokio_util::sync::CancellationToken;

use crate::{loopback_any_port, public_key, secret_key};

pub struct TestProvider {
    pub running: RunningProvider,
    pub shutdown: CancellationToken,
}

impl TestProvider {
    pub async fn start(
        data_dir: &Path,
        listen: SocketAddr,
        nbits: u32,
        synthetic_tx_interval_ms: u64,
    ) -> anyhow::Result<Self> {
        let config = TemplateProviderConfig {
            template_provider: ServerConfig {
                listen_address: listen,
                http_address: loopback_any_port(),
                authority_public_key: public_key(),
                authority_secret_key: secret_key(),
                cert_validity_secs: 3600,
            },
            chain: ChainConfig {
                data_dir: data_dir.to_path_buf(),
                nbits,
            },
            mempool: MempoolConfig {
                synthetic_tx_interval_ms,
                synthetic_tx_fee_sats: 1_000,
                max_transactions: 20,
            },
        };
        let shutdown = CancellationToken::new();
        let running = template_provider::start(config, shutdown.clone()).await?;
        Ok(Self { running, shutdown })
    }

    /// One Bitcoin Core JSON-RPC call to the provider's node interface: the whole reply
    /// (`result`, `error`).
    pub async fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let body =
            serde_json::json!({ "jsonrpc": "1.0", "id": "t", "method": method, "params": params });
        Ok(reqwest::Client::new()
            .post(format!("http://{}/", self.running.http_address))
            .json(&body)
            .send()
            .await?
            .json()
            .await?)
    }

    /// `count` blocks on the node's tip (`generatetoaddress`, paying a script of nobody's):
    /// what buries the pool's blocks to maturity.
    pub async fn bury(&self, count: u32) -> anyhow::Result<()> {
        let address = bitcoin::Address::p2wsh(
            &bitcoin::ScriptBuf::new_op_return([9u8; 4]),
            bitcoin::KnownHrp::Regtest,
        );
        let reply = self
            .rpc(
                "generatetoaddress",
                serde_json::json!([count, address.to_string()]),
            )
            .await?;
        anyhow::ensure!(reply["error"].is_null(), "generatetoaddress: {reply}");
        Ok(())
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        let url = format!("http://{}/status", self.running.http_address);
        Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
    }

    /// Stops the provider and waits until every one of its tasks has ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.running.task)
            .await
            .context("template provider did not stop")??;
        Ok(())
    }
}
