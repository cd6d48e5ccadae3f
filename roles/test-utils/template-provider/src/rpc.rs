//! The subset of Bitcoin Core's JSON-RPC interface a job declarator server needs, served for
//! this chain at `POST /` on the HTTP address: `getblockchaininfo`, `getbestblockhash`,
//! `getblockcount`, `getrawmempool` (plain or verbose, with wtxids and fees),
//! `getrawtransaction` (hex), `submitblock`. Answers and error codes follow Bitcoin Core's, so a
//! client written for bitcoind works here unchanged.

use axum::{extract::State, Json};
use bitcoin::{consensus, Amount, Block};
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

/// Connects `block` if it is valid on the tip. As bitcoind: `null` when accepted, else a
/// short reason (`duplicate`, `inconclusive` for a block not on the tip, or the rule broken).
fn submit_block(shared: &Shared, block: Block) -> Value {
    let hash = block.block_hash();
    let mut st = shared.lock();
    if (0..=st.chain.height()).any(|h| st.chain.block_at(h).is_some_and(|b| b.block_hash() == hash))
    {
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
