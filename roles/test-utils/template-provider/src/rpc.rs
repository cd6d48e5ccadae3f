//! The subset of Bitcoin Core's JSON-RPC interface the job declarator server and the pool's
//! chain follower need, served for this chain at `POST /` on the HTTP address:
//! `getblockchaininfo`, `getbestblockhash`, `getblockcount`, `getblockhash`, `getblockheader`
//! (confirmations -1 off the best chain), `getrawmempool` (plain or verbose, with wtxids and
//! fees), `getrawtransaction` (hex), `submitblock`, and regtest's `generatetoaddress` and
//! `invalidateblock` (tests mature coinbases and reorg with them). Answers and error codes
//! follow Bitcoin Core's, so a client written for bitcoind works here unchanged.

use axum::{extract::State, Json};
use bitcoin::{consensus, Amount, Block, BlockHash};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::state::{ChainEvent, Shared};

/// Bitcoin Core's error codes (rpc/protocol.h).
mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION_ERROR: i64 = -22;
}

#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

struct RpcError(i64, String);

/// `POST /`: one request (batches are not part of the subset).
pub async fn handle(State(shared): State<Shared>, body: axum::body::Bytes) -> Json<Value> {
    let request: Request = match serde_json::from_slice::<Value>(&body) {
        Err(e) => return reply(Value::Null, Err(RpcError(code::PARSE_ERROR, e.to_string()))),
        Ok(value) => match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                return reply(
                    Value::Null,
                    Err(RpcError(code::INVALID_REQUEST, e.to_string())),
                )
            }
        },
    };
    let result = call(&shared, &request.method, &request.params);
    reply(request.id, result)
}

fn reply(id: Value, result: Result<Value, RpcError>) -> Json<Value> {
    Json(match result {
        Ok(value) => json!({ "result": value, "error": null, "id": id }),
        Err(RpcError(code, message)) => {
            json!({ "result": null, "error": { "code": code, "message": message }, "id": id })
        }
    })
}

/// Positional parameter `i` (Bitcoin Core also takes named ones; clients of this subset use
/// positions).
fn param(params: &Value, i: usize) -> Option<&Value> {
    match params {
        Value::Array(list) => list.get(i),
        _ => None,
    }
}

fn call(shared: &Shared, method: &str, params: &Value) -> Result<Value, RpcError> {
    match method {
        "getblockchaininfo" => {
            let st = shared.lock();
            Ok(json!({
                "chain": "regtest",
                "blocks": st.chain.height(),
                "headers": st.chain.height(),
                "bestblockhash": st.chain.tip().to_string(),
                "mediantime": st.chain.median_time_past(),
            }))
        }
        "getbestblockhash" => Ok(json!(shared.lock().chain.tip().to_string())),
        "getblockcount" => Ok(json!(shared.lock().chain.height())),
        "getblockhash" => {
            let height = param(params, 0)
                .and_then(Value::as_u64)
                .ok_or_else(|| RpcError(code::INVALID_PARAMS, "height (number) required".into()))?;
            let st = shared.lock();
            u32::try_from(height)
                .ok()
                .and_then(|h| st.chain.block_at(h))
                .map(|b| json!(b.block_hash().to_string()))
                .ok_or_else(|| {
                    RpcError(code::INVALID_PARAMETER, "Block height out of range".into())
                })
        }
        "getblockheader" => {
            let hash = block_hash_param(params)?;
            let verbose = !matches!(param(params, 1), Some(Value::Bool(false)));
            let st = shared.lock();
            let status = st
                .chain
                .header_status(&hash)
                .ok_or_else(|| RpcError(code::INVALID_ADDRESS_OR_KEY, "Block not found".into()))?;
            if !verbose {
                return Ok(json!(consensus::encode::serialize_hex(&status.header)));
            }
            let h = status.header;
            let mut out = json!({
                "hash": hash.to_string(),
                "confirmations": status.confirmations,
                "height": status.height,
                "version": h.version.to_consensus(),
                "versionHex": format!("{:08x}", h.version.to_consensus()),
                "merkleroot": h.merkle_root.to_string(),
                "time": h.time,
                "nonce": h.nonce,
                "bits": format!("{:08x}", h.bits.to_consensus()),
                "difficulty": h.difficulty_float(),
                "previousblockhash": h.prev_blockhash.to_string(),
            });
            if let Some(next) = status.next {
                out["nextblockhash"] = json!(next.to_string());
            }
            Ok(out)
        }
        "getblock" => {
            let hash = block_hash_param(params)?;
            if !matches!(param(params, 1), None | Some(Value::Null))
                && param(params, 1).and_then(Value::as_u64) != Some(0)
            {
                return Err(RpcError(
                    code::INVALID_PARAMETER,
                    "only verbosity 0 (hex) is served here".into(),
                ));
            }
            let st = shared.lock();
            let block = st
                .chain
                .height_of(&hash)
                .and_then(|h| st.chain.block_at(h))
                .ok_or_else(|| {
                    // Bitcoin Core keeps a stale block's data; this chain keeps its header.
                    let known = st.chain.header_status(&hash).is_some();
                    RpcError(
                        code::INVALID_ADDRESS_OR_KEY,
                        if known {
                            "Block not available (not in the best chain)".into()
                        } else {
                            "Block not found".into()
                        },
                    )
                })?;
            Ok(json!(consensus::encode::serialize_hex(block)))
        }
        "generatetoaddress" => {
            let count = param(params, 0).and_then(Value::as_u64).ok_or_else(|| {
                RpcError(code::INVALID_PARAMS, "nblocks (number) required".into())
            })?;
            if count > MAX_GENERATED {
                return Err(RpcError(
                    code::INVALID_PARAMETER,
                    format!("at most {MAX_GENERATED} blocks per call"),
                ));
            }
            let address = param(params, 1).and_then(Value::as_str).ok_or_else(|| {
                RpcError(code::INVALID_PARAMS, "address (string) required".into())
            })?;
            let script = address
                .parse::<bitcoin::Address<_>>()
                .ok()
                .and_then(|a| a.require_network(bitcoin::Network::Regtest).ok())
                .map(|a| a.script_pubkey())
                .ok_or_else(|| {
                    RpcError(
                        code::INVALID_ADDRESS_OR_KEY,
                        "Error: Invalid address".into(),
                    )
                })?;
            generate(shared, script, count)
        }
        "invalidateblock" => {
            let hash = block_hash_param(params)?;
            let mut st = shared.lock();
            match st.chain.invalidate(&hash) {
                Ok(removed) => {
                    let height = st.chain.height();
                    drop(st);
                    if !removed.is_empty() {
                        tracing::info!(%hash, height, disconnected = removed.len(), "block invalidated");
                        shared.notify(ChainEvent::NewTip { height });
                    }
                    Ok(Value::Null)
                }
                Err(crate::chain::ChainError::UnknownBlock(_)) => Err(RpcError(
                    code::INVALID_ADDRESS_OR_KEY,
                    "Block not found".into(),
                )),
                Err(e) => Err(RpcError(code::INVALID_PARAMETER, e.to_string())),
            }
        }
        "getrawmempool" => {
            let verbose = match param(params, 0) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(RpcError(
                        code::INVALID_PARAMS,
                        "verbose must be a boolean".into(),
                    ))
                }
            };
            let st = shared.lock();
            let txs = st.mempool.transactions();
            if verbose {
                let entries: serde_json::Map<String, Value> = txs
                    .iter()
                    .map(|m| {
                        (
                            m.tx.compute_txid().to_string(),
                            json!({
                                "wtxid": m.tx.compute_wtxid().to_string(),
                                "vsize": m.tx.vsize(),
                                "weight": m.tx.weight().to_wu(),
                                "fees": { "base": m.fee.to_btc() },
                            }),
                        )
                    })
                    .collect();
                Ok(Value::Object(entries))
            } else {
                Ok(json!(txs
                    .iter()
                    .map(|m| m.tx.compute_txid().to_string())
                    .collect::<Vec<_>>()))
            }
        }
        "getrawtransaction" => {
            let txid = param(params, 0)
                .and_then(Value::as_str)
                .ok_or_else(|| RpcError(code::INVALID_PARAMS, "txid (string) required".into()))?;
            let txid: bitcoin::Txid = txid.parse().map_err(|_| {
                RpcError(
                    code::INVALID_PARAMETER,
                    format!("txid must be hexadecimal string (not '{txid}') and length 64"),
                )
            })?;
            if matches!(param(params, 1), Some(v) if v.as_bool() == Some(true) || v.as_u64().is_some_and(|n| n > 0))
            {
                return Err(RpcError(
                    code::INVALID_PARAMETER,
                    "only verbosity 0 (hex) is served here".into(),
                ));
            }
            let st = shared.lock();
            let tx = st
                .mempool
                .transactions()
                .iter()
                .map(|m| &m.tx)
                .find(|t| t.compute_txid() == txid)
                .cloned()
                .or_else(|| st.chain.find_tx(&txid));
            match tx {
                Some(tx) => Ok(json!(consensus::encode::serialize_hex(&tx))),
                None => Err(RpcError(
                    code::INVALID_ADDRESS_OR_KEY,
                    "No such mempool or blockchain transaction".into(),
                )),
            }
        }
        "submitblock" => {
            let hex = param(params, 0).and_then(Value::as_str).ok_or_else(|| {
                RpcError(code::INVALID_PARAMS, "hexdata (string) required".into())
            })?;
            let block: Block = consensus::encode::deserialize_hex(hex)
                .map_err(|_| RpcError(code::DESERIALIZATION_ERROR, "Block decode failed".into()))?;
            Ok(submit_block(shared, block))
        }
        _ => Err(RpcError(code::METHOD_NOT_FOUND, "Method not found".into())),
    }
}

/// Blocks one `generatetoaddress` may mine (each is an fsync under the chain's lock).
const MAX_GENERATED: u64 = 1_000;

fn block_hash_param(params: &Value) -> Result<BlockHash, RpcError> {
    let hash = param(params, 0)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError(code::INVALID_PARAMS, "blockhash (string) required".into()))?;
    hash.parse().map_err(|_| {
        RpcError(
            code::INVALID_PARAMETER,
            format!("blockhash must be hexadecimal string (not '{hash}') and length 64"),
        )
    })
}

/// Mines `count` blocks paying `script`, each with what the mempool offers, as bitcoind's
/// regtest `generatetoaddress`; answers their hashes.
fn generate(shared: &Shared, script: bitcoin::ScriptBuf, count: u64) -> Result<Value, RpcError> {
    let mut hashes = Vec::new();
    let mut failure = None;
    let mut st = shared.lock();
    for _ in 0..count {
        let offer = crate::template::build(0, &st.chain, &st.mempool, 0, false);
        let block = st
            .chain
            .next_block(script.clone(), offer.transactions, offer.fees);
        let hash = block.block_hash();
        let included: Vec<_> = block.txdata.iter().map(|t| t.compute_txid()).collect();
        if let Err(e) = st.chain.connect(block, offer.fees) {
            failure = Some(RpcError(code::INVALID_PARAMETER, e.to_string()));
            break;
        }
        st.mempool.remove_included(&included);
        st.counters.blocks_connected += 1;
        hashes.push(hash.to_string());
    }
    let height = st.chain.height();
    drop(st);
    if !hashes.is_empty() {
        shared.notify(ChainEvent::NewTip { height });
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(json!(hashes)),
    }
}

/// Connects `block` if it is valid on the tip. As bitcoind: `null` when accepted, else a
/// short reason (`duplicate`, `inconclusive` for a block not on the tip, or the rule broken).
fn submit_block(shared: &Shared, block: Block) -> Value {
    let hash = block.block_hash();
    let mut st = shared.lock();
    if st.chain.height_of(&hash).is_some() {
        return json!("duplicate");
    }
    if block.header.prev_blockhash != st.chain.tip() {
        return json!("inconclusive");
    }
    // Fees of the transactions this node knows (its mempool); one it does not know pays the
    // coinbase nothing here (no UTXO set to look its inputs up in).
    let fees: Amount = block
        .txdata
        .iter()
        .skip(1)
        .filter_map(|t| {
            let txid = t.compute_txid();
            st.mempool
                .transactions()
                .iter()
                .find(|m| m.tx.compute_txid() == txid)
                .map(|m| m.fee)
        })
        .sum();
    let included: Vec<_> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    match st.chain.connect(block, fees) {
        Ok(height) => {
            st.mempool.remove_included(&included);
            st.counters.blocks_connected += 1;
            drop(st);
            shared.notify(ChainEvent::NewTip { height });
            Value::Null
        }
        Err(e) => {
            st.counters.solutions_refused += 1;
            json!(e.reason())
        }
    }
}
