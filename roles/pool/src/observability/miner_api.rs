//! The pool's per-key miner API (`pool.api_address` in the shared config): `GET
//! /api/v1/miners/{key}` answers what the ledger and the open channels say of one locking key
//! ([`miner_view`](super::miner_view)). Read-only and public by design, like a pool's address
//! pages: nothing here can spend or change anything.
//!
//! The key comes from a URL: anything but 66 hex characters of a valid compressed public key
//! gets 400; a valid key nobody mined for gets 200 with `"known": false`. Each answer reads a
//! bounded number of ledger rows on the ledger's own read-only connections, and at most
//! [`CONCURRENT_READS`] answers are computed at once (others wait up to [`READ_WAIT`], then get
//! 503), so the API cannot starve the share path.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use ext_mint_quote::LockingKey;
use hashpool_ehash::UnitWork;
use serde_json::json;
use tokio::sync::Semaphore;

use super::miner_view::{self, WINDOWS};
use crate::{ledger::LedgerReader, miners::Registry};

/// Answers computed at once.
pub const CONCURRENT_READS: usize = 2;
/// How long a request waits for its turn.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// What the API reads.
#[derive(Clone)]
pub struct MinerApi {
    pub reader: LedgerReader,
    pub registry: Arc<Registry>,
    pub unit: String,
    pub unit_work: UnitWork,
    turns: Arc<Semaphore>,
}

impl MinerApi {
    pub fn new(
        reader: LedgerReader,
        registry: Arc<Registry>,
        unit: String,
        unit_work: UnitWork,
    ) -> Self {
        Self {
            reader,
            registry,
            unit,
            unit_work,
            turns: Arc::new(Semaphore::new(CONCURRENT_READS)),
        }
    }

    /// `GET /api/v1/miners/{key}`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/miners/{key}", get(miner))
            .with_state(self)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A locking key from a URL: exactly 66 hex characters of a compressed secp256k1 point.
pub fn parse_key(text: &str) -> Result<LockingKey, String> {
    if text.len() != 66 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            "a miner key is 66 hex characters (a compressed secp256k1 public key, 02... or 03...)"
                .into(),
        );
    }
    LockingKey::from_hex(text).map_err(|e| format!("not a valid public key: {e}"))
}

async fn miner(State(api): State<MinerApi>, Path(key): Path<String>) -> Response {
    let key = match parse_key(&key) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Ok(Ok(_turn)) = tokio::time::timeout(READ_WAIT, api.turns.acquire()).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: too many miner pages at once, try again",
        );
    };
    let now_ms = hashpool_role::unix_now_ms();
    let secs = WINDOWS.map(|(_, s)| s);
    match api.reader.key_report(&key, now_ms, &secs).await {
        Ok(report) => Json(miner_view::build(
            &key,
            &api.unit,
            api.unit_work,
            report,
            &api.registry,
            now_ms,
        ))
        .into_response(),
        Err(e) => {
            tracing::warn!(key = %key.to_hex(), "miner API: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ledger could not be read",
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
