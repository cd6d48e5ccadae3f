//! A Bitcoin Core JSON-RPC client for what Hashpool's roles ask a node: the chain, a block's
//! place in it (confirmations; off the best chain after a reorg), the mempool (txids, wtxids,
//! fees), transactions, and block submission. The jd-server checks declared jobs with it; the
//! pool follows its found blocks to maturity with it. The embedded template provider answers
//! the same calls (tests and local runs).

use std::{collections::HashMap, path::PathBuf, time::Duration};

use bitcoin::{consensus::encode, Amount, Block, BlockHash, Transaction, Txid, Wtxid};
use serde::Deserialize;
use serde_json::{json, Value};

/// Where the node's JSON-RPC is and how to log in.
#[derive(Debug, Clone, Deserialize)]
pub struct RpcSettings {
    pub url: String,
    /// `user:password` file bitcoind writes (`.cookie`); or `user` and `password`.
    #[serde(default)]
    pub cookie_file: Option<PathBuf>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// Bitcoin Core's "not found" code (RPC_INVALID_ADDRESS_OR_KEY).
const NOT_FOUND: i64 = -5;

/// Where a block stands in the node's view (`getblockheader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlace {
    pub height: u32,
    /// Blocks on top of it in the best chain, plus one; -1 when it is off the best chain.
    pub confirmations: i64,
}

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
            json!({ "jsonrpc": "1.0", "id": "hashpool", "method": method, "params": params });
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

    /// Where `hash` stands; `None` when the node does not know the block.
    pub async fn block_place(&self, hash: &BlockHash) -> Result<Option<BlockPlace>, RpcError> {
        let header = match self
            .call("getblockheader", json!([hash.to_string(), true]))
            .await
        {
            Err(RpcError::Refused { code, .. }) if code == NOT_FOUND => return Ok(None),
            other => other?,
        };
        let height = header["height"]
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .ok_or_else(|| Self::bad("getblockheader", "no height"))?;
        let confirmations = header["confirmations"]
            .as_i64()
            .ok_or_else(|| Self::bad("getblockheader", "no confirmations"))?;
        Ok(Some(BlockPlace {
            height,
            confirmations,
        }))
    }

    /// The hash of the best chain's block at `height`; `None` above the tip.
    pub async fn block_hash_at(&self, height: u32) -> Result<Option<BlockHash>, RpcError> {
        let hash = match self.call("getblockhash", json!([height])).await {
            // Bitcoin Core: -8 "Block height out of range".
            Err(RpcError::Refused { code: -8, .. }) => return Ok(None),
            other => other?,
        };
        hash.as_str()
            .and_then(|h| h.parse().ok())
            .map(Some)
            .ok_or_else(|| Self::bad("getblockhash", "not a block hash"))
    }

    /// The block `hash` (`getblock` verbosity 0).
    pub async fn block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        let hex = self.call("getblock", json!([hash.to_string(), 0])).await?;
        let hex = hex
            .as_str()
            .ok_or_else(|| Self::bad("getblock", "not a hex string"))?;
        encode::deserialize_hex(hex).map_err(|e| Self::bad("getblock", e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{routing::post, Json, Router};

    /// A node that knows one block at height 7 with `confirmations`, and answers "not found"
    /// for every other.
    async fn node(known: BlockHash, confirmations: i64) -> String {
        let app = Router::new().route(
            "/",
            post(move |Json(req): Json<Value>| async move {
                let asked = req["params"][0].as_str().unwrap_or_default().to_string();
                Json(if asked == known.to_string() {
                    json!({ "result": { "height": 7, "confirmations": confirmations }, "error": null, "id": req["id"] })
                } else {
                    json!({ "result": null, "error": { "code": -5, "message": "Block not found" }, "id": req["id"] })
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn client(url: String) -> BitcoinRpc {
        BitcoinRpc::new(RpcSettings {
            url,
            cookie_file: None,
            user: None,
            password: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_blocks_place_reads_confirmations_and_unknown_is_none() {
        use bitcoin::hashes::Hash as _;
        let known = BlockHash::from_byte_array([3; 32]);
        let rpc = client(node(known, -1).await);
        assert_eq!(
            rpc.block_place(&known).await.unwrap(),
            Some(BlockPlace {
                height: 7,
                confirmations: -1
            })
        );
        let other = BlockHash::from_byte_array([4; 32]);
        assert_eq!(rpc.block_place(&other).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_node_is_an_error_not_an_unknown_block() {
        use bitcoin::hashes::Hash as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let rpc = client(url);
        assert!(matches!(
            rpc.block_place(&BlockHash::from_byte_array([3; 32])).await,
            Err(RpcError::Unreachable { .. })
        ));
    }
}
