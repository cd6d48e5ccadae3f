//! What the jd-server verifies about a job declarator client's messages, as pure functions of
//! what the session knows: each check returns the [`Refusal`] (DeclareMiningJob.Error's code
//! and details) the session answers with. The session does the I/O (mempool, chain tip, block
//! submission) and keeps the state (tokens, waiting declarations, accepted jobs), so every
//! refusal here is tested without a connection or a node.

mod coinbase;
mod solution;
mod token;
mod transactions;

#[cfg(test)]
mod fixtures;

use job_declaration_sv2::ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR;
use job_declaration_sv2::ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB;

use crate::rpc::RpcError;

pub use coinbase::{
    bip34_height, block_reward, check_height, check_outputs, check_witness_commitment,
    required_payouts, split_declared_coinbase, subsidy,
};
pub use solution::{solve, DeclaredJob};
pub use token::{check_token, check_token_after_wait, Allocated, TokenState};
pub use transactions::{check_distinct, check_provided, look_up, wtxids, Known};

/// Declarations of one connection waiting for their missing transactions.
pub const MAX_PENDING: usize = 4;

/// A refusal: DeclareMiningJob.Error's code and details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub &'static str, pub String);

impl From<RpcError> for Refusal {
    fn from(e: RpcError) -> Self {
        Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR,
            format!("the node: {e}"),
        )
    }
}

/// A new declaration may not reuse the request id of one still waiting for its transactions
/// (the answer to the wait would be ambiguous).
pub fn check_request_id(already_waiting: bool) -> Result<(), Refusal> {
    if already_waiting {
        return Err(Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
            "a declaration with this request id is still waiting for its transactions".into(),
        ));
    }
    Ok(())
}

/// Room for one more declaration waiting for its transactions, `waiting` already do.
pub fn check_room_to_wait(waiting: usize) -> Result<(), Refusal> {
    if waiting >= MAX_PENDING {
        return Err(Refusal(
            ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
            format!("{MAX_PENDING} declarations already wait for their transactions"),
        ));
    }
    Ok(())
}

/// ProvideMissingTransactions.Success for a request id no declaration waits under.
pub fn not_waiting() -> Refusal {
    Refusal(
        ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB,
        "no declaration is waiting for transactions under this request id".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_request_id_is_refused() {
        assert_eq!(check_request_id(false), Ok(()));
        let Refusal(code, details) = check_request_id(true).unwrap_err();
        assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB);
        assert!(details.contains("still waiting"), "{details}");
    }

    #[test]
    fn at_most_max_pending_declarations_wait() {
        for waiting in 0..MAX_PENDING {
            assert_eq!(check_room_to_wait(waiting), Ok(()), "{waiting}");
        }
        for waiting in [MAX_PENDING, MAX_PENDING + 1] {
            let Refusal(code, details) = check_room_to_wait(waiting).unwrap_err();
            assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB);
            assert!(details.contains("already wait"), "{details}");
        }
    }

    #[test]
    fn node_errors_are_internal_errors() {
        let Refusal(code, details) = Refusal::from(RpcError::Unreachable {
            url: "http://node".into(),
            reason: "down".into(),
        });
        assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INTERNAL_ERROR);
        assert!(details.starts_with("the node: "), "{details}");
        assert_eq!(not_waiting().0, ERROR_CODE_DECLARE_MINING_JOB_INVALID_JOB);
    }
}
