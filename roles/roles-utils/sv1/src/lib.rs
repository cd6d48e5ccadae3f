//! Stratum V1 as miners speak it: newline-delimited JSON-RPC. The translator serves it and the
//! SV1 CPU miner speaks it; both parse and build messages here, strictly (a malformed line is a
//! clear error with the JSON-RPC code to answer, never a panic).

mod messages;
mod work;

pub use messages::{
    error_code, notify, parse_client_line, parse_server_line, request, response_error, response_ok,
    set_difficulty, set_extranonce, set_version_mask, ClientRequest, Notify, ServerMessage, Submit,
    Sv1Error, MAX_LINE_LEN,
};
pub use work::{
    difficulty_to_target, merkle_root, prev_hash_from_sv1, prev_hash_to_sv1, target_to_difficulty,
    ShareHeader,
};
