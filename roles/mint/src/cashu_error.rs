//! Cashu's error answer (`{"detail", "code"}`), as every route of the mint's HTTP API gives it.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use cdk_common::error::ErrorCode;

/// A failure that is not the request's fault (database trouble, the nonce store full): 50000,
/// the code CDK 0.18.3's mint gives its own internal errors; the NUT table has none.
pub const UNAVAILABLE: ErrorCode = ErrorCode::Unknown(50000);

/// Cashu-style error body (`detail`, `code`).
pub fn cashu_error(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "detail": detail.into(), "code": code.to_code() })),
    )
        .into_response()
}
