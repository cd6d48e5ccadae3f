//! The work the pool hands out: the template provider's templates and chain tip
//! ([`template_receiver`]) made into the pool's jobs ([`JobSource`]), which every miner
//! connection follows.

mod source;
pub mod template_receiver;

pub use source::{
    ChainView, JobEvent, JobSource, PoolTemplate, Sequenced, Snapshot, MAX_PAYOUT_SCRIPT,
};
