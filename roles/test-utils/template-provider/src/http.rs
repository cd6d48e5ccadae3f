//! Status API: `GET /status` (tip, height, counters) and `GET /blocks/{height}` (hash, txids);
//! `POST /`: the Bitcoin Core JSON-RPC subset of [`crate::rpc`].

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use serde::Serialize;

use crate::state::{Counters, Shared};

#[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct StatusResponse {
    pub height: u32,
    pub tip: String,
    pub nbits: String,
    pub mempool_size: usize,
    pub blocks_connected: u64,
    pub solutions_refused: u64,
    pub templates_sent: u64,
    pub connections: u64,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct BlockResponse {
    pub height: u32,
    pub hash: String,
    pub prev_hash: String,
    pub txids: Vec<String>,
    pub coinbase_value_sats: u64,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/blocks/{height}", get(block))
        .route("/", post(crate::rpc::handle))
        .with_state(shared)
}

async fn status(State(shared): State<Shared>) -> Json<StatusResponse> {
    let st = shared.lock();
    let Counters {
        blocks_connected,
        solutions_refused,
        templates_sent,
        connections,
    } = st.counters.clone();
    Json(StatusResponse {
        height: st.chain.height(),
        tip: st.chain.tip().to_string(),
        nbits: format!("{:08x}", st.chain.nbits()),
        mempool_size: st.mempool.len(),
        blocks_connected,
        solutions_refused,
        templates_sent,
        connections,
    })
}

async fn block(
    State(shared): State<Shared>,
    Path(height): Path<u32>,
) -> Result<Json<BlockResponse>, (StatusCode, String)> {
    let st = shared.lock();
    let block = st.chain.block_at(height).ok_or((
        StatusCode::NOT_FOUND,
        format!("no block at height {height}"),
    ))?;
    Ok(Json(BlockResponse {
        height,
        hash: block.block_hash().to_string(),
        prev_hash: block.header.prev_blockhash.to_string(),
        txids: block
            .txdata
            .iter()
            .map(|t| t.compute_txid().to_string())
            .collect(),
        coinbase_value_sats: block
            .txdata
            .first()
            .map(|c| c.output.iter().map(|o| o.value.to_sat()).sum())
            .unwrap_or(0),
    }))
}
