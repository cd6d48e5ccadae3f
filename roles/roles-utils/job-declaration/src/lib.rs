//! Declared jobs, as the jd-server, the pool and the jd-client see them.
//!
//! The jd-server accepts a declared job and answers with a **job token** that the pool can check
//! on its own, without asking the jd-server: a commitment to everything a `SetCustomMiningJob`
//! carries about the job (header version, coinbase fields, merkle path), an expiry, and the
//! jd-server's BIP340 signature over both. The pool recomputes the commitment from the
//! `SetCustomMiningJob` it receives, so a job the jd-server did not accept, or a different job
//! under an accepted job's token, is refused. docs/job-declaration.md.

mod coinbase;
mod merkle;
mod token;

pub use coinbase::{split_coinbase, CoinbaseError, SplitCoinbase};
pub use merkle::{coinbase_merkle_path, witness_commitment_script};
pub use token::{JobCommitment, JobToken, TokenError, JOB_TOKEN_LEN};
