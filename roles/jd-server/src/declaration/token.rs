//! The mining job token a declaration carries: one of this connection's, each used once.

use std::time::Instant;

use job_declaration_sv2::ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN;

use super::Refusal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Free,
    /// A declaration waiting for its missing transactions uses it.
    Pending(u32),
    Used,
}

/// A token this server allocated to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    pub expires: Instant,
    pub state: TokenState,
    /// The height the token's payouts were offered at (`None`: no payouts asked for).
    pub payouts_height: Option<u32>,
    /// The withdrawals a coinbase at that height must pay (given with the token).
    pub payouts: Vec<bitcoin::TxOut>,
}

fn invalid_token(why: &str) -> Refusal {
    Refusal(
        ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN,
        why.to_string(),
    )
}

/// A declaration's token, as the connection holds it (`None`: not one of its tokens): usable
/// when free and not expired at `now`.
pub fn check_token(allocated: Option<&Allocated>, now: Instant) -> Result<(), Refusal> {
    match allocated {
        None => Err(invalid_token(
            "not a token this server allocated to this connection",
        )),
        Some(a) if a.state == TokenState::Used => {
            Err(invalid_token("already used for an accepted job"))
        }
        Some(a) if matches!(a.state, TokenState::Pending(_)) => Err(invalid_token(
            "in use by a declaration waiting for its transactions",
        )),
        Some(a) if a.expires <= now => Err(invalid_token("expired")),
        Some(_) => Ok(()),
    }
}

/// A waiting declaration's token when its transactions arrive: it may have expired (or been
/// dropped with it) in the meantime.
pub fn check_token_after_wait(allocated: Option<&Allocated>, now: Instant) -> Result<(), Refusal> {
    match allocated {
        Some(a) if a.expires > now => Ok(()),
        _ => Err(invalid_token("expired while waiting for the transactions")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_are_checked_state_first_then_expiry() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let at = |expires, state| {
            Some(Allocated {
                expires,
                state,
                payouts_height: None,
                payouts: Vec::new(),
            })
        };
        let cases: [(&str, Option<Allocated>, Option<&str>); 7] = [
            ("unknown", None, Some("not a token this server allocated")),
            ("free", at(later, TokenState::Free), None),
            ("used", at(later, TokenState::Used), Some("already used")),
            // A used token says so even once expired.
            (
                "used, expired",
                at(now, TokenState::Used),
                Some("already used"),
            ),
            (
                "pending",
                at(later, TokenState::Pending(3)),
                Some("waiting"),
            ),
            ("expired now", at(now, TokenState::Free), Some("expired")),
            (
                "expired before",
                at(now - Duration::from_secs(1), TokenState::Free),
                Some("expired"),
            ),
        ];
        for (what, allocated, refused) in cases {
            match (check_token(allocated.as_ref(), now), refused) {
                (Ok(()), None) => {}
                (Err(Refusal(code, details)), Some(part)) => {
                    assert_eq!(
                        code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN,
                        "{what}"
                    );
                    assert!(details.contains(part), "{what}: {details}");
                }
                (got, want) => panic!("{what}: got {got:?}, wanted a refusal: {want:?}"),
            }
        }
    }

    #[test]
    fn a_waiting_token_must_outlive_the_wait() {
        let now = Instant::now();
        let alive = Allocated {
            expires: now + Duration::from_secs(1),
            state: TokenState::Pending(1),
            payouts_height: None,
            payouts: Vec::new(),
        };
        assert_eq!(check_token_after_wait(Some(&alive), now), Ok(()));
        let expired = Allocated {
            expires: now,
            ..alive
        };
        for allocated in [None, Some(&expired)] {
            let Refusal(code, details) = check_token_after_wait(allocated, now).unwrap_err();
            assert_eq!(code, ERROR_CODE_DECLARE_MINING_JOB_INVALID_MINING_JOB_TOKEN);
            assert_eq!(details, "expired while waiting for the transactions");
        }
    }
}
