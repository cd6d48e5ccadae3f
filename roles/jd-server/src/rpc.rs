//! A Bitcoin Core JSON-RPC client for what the jd-server asks a node: the mempool (txids,
//! wtxids, fees), transactions, the chain, and block submission.

use std::{collections::HashMap, time::Duration};

use bitcoin::{consensus::encode, Amount, Block, Transaction, Txid, Wtxid};
use serde_json::{json, Value};

use crate::config::RpcSettings;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("node at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("node refused {method}: {code} {message}")]
    Refused {
        method: String,
        code: i64,
        message: String,
    },
    #[error("unexpected answer to {method}: {reason}")]
    BadAnswer { method: String, reason: String },
    #[error("cookie file {0}: {1}")]
    Cookie(String, String),
}

/// A mempool entry.
#[derive(Debug, Clone, Copy)]
pub struct MempoolEntry {
    pub txid: Txid,
    pub fee: Amount,
}

/// The mempool by wtxid.
pub type Mempool = HashMap<Wtxid, MempoolEntry>;

pub struct BitcoinRpc {
    http: reqwest::Client,
    settings: RpcSettings,
}

impl BitcoinRpc {
    pub fn new(settings: RpcSettings) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RpcError::Unreachable {
                url: settings.url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { http, settings })
    }

    /// User and password: the cookie file is read at each call (bitcoind rewrites it when it
    /// restarts).
    fn credentials(&self) -> Result<Option<(String, String)>, RpcError> {
        if let Some(path) = &self.settings.cookie_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RpcError::Cookie(path.display().to_string(), e.to_string()))?;
            let (user, password) = text.trim().split_once(':').ok_or_else(|| {
                RpcError::Cookie(path.display().to_string(), "not user:password".into())
            })?;
            return Ok(Some((user.to_string(), password.to_string())));
        }
        Ok(self
            .settings
            .user
            .clone()
            .map(|u| (u, self.settings.password.clone().unwrap_or_default())))
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let body =
            json!({ "jsonrpc": "1.0", "id": "jd-server", "method": method, "params": params });
        let mut request = self.http.post(&self.settings.url).json(&body);
        if let Some((user, password)) = self.credentials()? {
            request = request.basic_auth(user, Some(password));
        }
        let unreachable = |e: reqwest::Error| RpcError::Unreachable {
            url: self.settings.url.clone(),
            reason: e.without_url().to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        // bitcoind answers errors with HTTP 500 and a JSON body; 401 has none.
        let status = response.status();
        let reply: Value = response.json().await.map_err(|e| RpcError::BadAnswer {
            method: method.into(),
            reason: format!("HTTP {status}: {}", e.without_url()),
        })?;
        if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Refused {
                method: method.into(),
                code: error["code"].as_i64().unwrap_or(0),
                message: error["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    fn bad(method: &str, reason: impl Into<String>) -> RpcError {
        RpcError::BadAnswer {
            method: method.into(),
            reason: reason.into(),
        }
    }

    /// The chain's name (`main`, `test`, `testnet4`, `signet`, `regtest`) and tip height.
    pub async fn chain(&self) -> Result<(String, u32), RpcError> {
        let info = self.call("getblockchaininfo", json!([])).await?;
        let chain = info["chain"]
            .as_str()
            .ok_or_else(|| Self::bad("getblockchaininfo", "no chain"))?;
        let blocks = info["blocks"]
            .as_u64()
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| Self::bad("getblockchaininfo", "no block count"))?;
        Ok((chain.to_string(), blocks))
    }

    /// Every mempool transaction by wtxid.
    pub async fn mempool(&self) -> Result<Mempool, RpcError> {
        let entries = self.call("getrawmempool", json!([true])).await?;
        let entries = entries
            .as_object()
            .ok_or_else(|| Self::bad("getrawmempool", "not an object"))?;
        let mut out = HashMap::with_capacity(entries.len());
        for (txid, entry) in entries {
            let txid: Txid = txid
                .parse()
                .map_err(|_| Self::bad("getrawmempool", format!("txid {txid}")))?;
            let wtxid: Wtxid = entry["wtxid"]
                .as_str()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| Self::bad("getrawmempool", "entry without wtxid"))?;
            let fee = entry["fees"]["base"]
                .as_f64()
                .and_then(|btc| Amount::from_btc(btc).ok())
                .ok_or_else(|| Self::bad("getrawmempool", "entry without fees.base"))?;
            out.insert(wtxid, MempoolEntry { txid, fee });
        }
        Ok(out)
    }

    pub async fn transaction(&self, txid: &Txid) -> Result<Transaction, RpcError> {
        let hex = self
            .call("getrawtransaction", json!([txid.to_string()]))
            .await?;
        let hex = hex
            .as_str()
            .ok_or_else(|| Self::bad("getrawtransaction", "not a hex string"))?;
        encode::deserialize_hex(hex).map_err(|e| Self::bad("getrawtransaction", e.to_string()))
    }

    /// `Ok(None)` when the node took the block, `Ok(Some(reason))` when it refused it.
    pub async fn submit_block(&self, block: &Block) -> Result<Option<String>, RpcError> {
        let result = self
            .call("submitblock", json!([encode::serialize_hex(block)]))
            .await?;
        Ok(result.as_str().map(String::from))
    }
}
