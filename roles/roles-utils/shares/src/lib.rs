//! One share checker for every role that judges its miners' shares (the translator's SV1 side,
//! the jd-client's downstream channels).
//!
//! The rules used to live in each role with its own vocabulary, and the same bug ("a share found
//! before a harder target was sent is refused") had to be fixed in each. Here they are once:
//!
//! - [`ShareChecker`]: the targets each job was sent with (a job re-sent with a new difficulty is
//!   judged by the easiest target it was sent with, never easier than the floor; an SV2
//!   `SetTarget`, which applies to every job at once, leaves each job the easiest target it
//!   had since it was sent) and the duplicate policy (bounded per job: past the bound a job's
//!   further shares are refused, a remembered share is never forgotten while its job can be
//!   submitted to; a caller that may send the same work under several ids refuses a hash
//!   remembered on any listed job);
//! - [`NtimeRule`] and [`VersionRule`]: what a share's header may carry;
//! - [`Rejection`]: every verdict, each with its `SubmitShares.Error` code ([`codes`]).
//!
//! The caller builds the share's header (it knows its coinbase and extranonce layout) and asks
//! the checker in the order its protocol answers: job, extranonce size, ntime, version, then the
//! hash ([`ShareChecker::record`]).

pub mod chain;
mod checker;

pub use bitcoin::Target;
pub use checker::{SentJob, ShareChecker};

/// SV2 targets travel as little-endian 256-bit numbers.
pub fn target_to_u256(target: &Target) -> binary_sv2::U256Owned {
    binary_sv2::U256Owned::from(target.to_le_bytes())
}

pub fn u256_to_target(value: &binary_sv2::U256Owned) -> Target {
    Target::from_le_bytes(value.to_array())
}

/// The `SubmitShares.Error` codes the verdicts map to: those of `mining_sv2` where it has one,
/// and the codes the jd-client has always sent where it has none (peers already know them).
pub mod codes {
    pub const STALE_SHARE: &str = "stale-share";
    pub const INVALID_JOB_ID: &str = "invalid-job-id";
    pub const INVALID_EXTRANONCE_SIZE: &str = "invalid-extranonce-size";
    pub const INVALID_TIMESTAMP: &str = "invalid-timestamp";
    pub const INVALID_VERSION: &str = "invalid-version";
    pub const DUPLICATE_SHARE: &str = "duplicate-share";
    pub const DIFFICULTY_TOO_LOW: &str = "difficulty-too-low";
    /// A job's share bound is reached: the share may be fine, but it cannot be remembered.
    pub const INVALID_SHARE: &str = "invalid-share";
}

/// Shares may carry times up to two hours after the job's `min_ntime` (consensus' future limit).
pub const MAX_NTIME_AHEAD: u32 = 2 * 60 * 60;
/// BIP320: the version bits miners may roll.
pub const VERSION_ROLLING_MASK: u32 = 0x1fff_e000;

/// Why a share is refused. `Display` is the `SubmitShares.Error` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Its job is no longer one the miner may submit to (or the channel reopened).
    #[error("stale-share")]
    Stale,
    /// Its job id was never issued.
    #[error("invalid-job-id")]
    InvalidJobId,
    #[error("invalid-extranonce-size")]
    ExtranonceSize,
    #[error("invalid-timestamp")]
    Ntime,
    /// It rolled version bits it may not roll (or any, when rolling was not agreed).
    #[error("invalid-version")]
    Version,
    #[error("duplicate-share")]
    Duplicate,
    /// Its hash does not meet the target its job was sent with.
    #[error("difficulty-too-low")]
    Difficulty,
    /// The job already holds this many remembered shares: no more on it until the next job.
    #[error("invalid-share")]
    JobShareLimit(usize),
}

impl Rejection {
    /// The `SubmitShares.Error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Stale => codes::STALE_SHARE,
            Rejection::InvalidJobId => codes::INVALID_JOB_ID,
            Rejection::ExtranonceSize => codes::INVALID_EXTRANONCE_SIZE,
            Rejection::Ntime => codes::INVALID_TIMESTAMP,
            Rejection::Version => codes::INVALID_VERSION,
            Rejection::Duplicate => codes::DUPLICATE_SHARE,
            Rejection::Difficulty => codes::DIFFICULTY_TOO_LOW,
            Rejection::JobShareLimit(_) => codes::INVALID_SHARE,
        }
    }

    /// The verdict on a job id that is not listed: stale when it was issued (ids are issued in
    /// increasing order, `next_id` being the next one), unknown otherwise.
    pub fn unknown_job(job_id: u32, next_id: u32) -> Rejection {
        if job_id < next_id {
            Rejection::Stale
        } else {
            Rejection::InvalidJobId
        }
    }
}

/// Refuses a share whose extranonce is not the size its channel rolls.
pub fn check_extranonce_size(got: usize, expected: usize) -> Result<(), Rejection> {
    if got == expected {
        Ok(())
    } else {
        Err(Rejection::ExtranonceSize)
    }
}

/// Refuses a hash that does not meet `target`.
pub fn check_target(hash: &Target, target: &Target) -> Result<(), Rejection> {
    if hash <= target {
        Ok(())
    } else {
        Err(Rejection::Difficulty)
    }
}

/// What a share's ntime may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtimeRule {
    /// Any: the upstream that judges the share checks it (the translator's SV1 side).
    Unchecked,
    /// From the job's `min_ntime` to [`MAX_NTIME_AHEAD`] after it.
    FromMinNtime(u32),
}

impl NtimeRule {
    pub fn check(&self, ntime: u32) -> Result<(), Rejection> {
        match *self {
            NtimeRule::Unchecked => Ok(()),
            NtimeRule::FromMinNtime(min) => {
                if ntime < min || ntime > min.saturating_add(MAX_NTIME_AHEAD) {
                    Err(Rejection::Ntime)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Which version bits a share may roll on its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRule {
    pub job_version: u32,
    /// The bits it may roll: [`VERSION_ROLLING_MASK`], or none.
    pub mask: u32,
}

impl VersionRule {
    /// `rolling`: whether version rolling was agreed (BIP320's bits), or none may roll.
    pub fn new(job_version: u32, rolling: bool) -> Self {
        VersionRule {
            job_version,
            mask: if rolling { VERSION_ROLLING_MASK } else { 0 },
        }
    }

    /// Checks a full header version (SV2 shares carry one).
    pub fn check(&self, version: u32) -> Result<u32, Rejection> {
        if (version ^ self.job_version) & !self.mask != 0 {
            return Err(Rejection::Version);
        }
        Ok(version)
    }

    /// The header version of an SV1 share carrying only its rolled bits (`None`: it rolled
    /// nothing). Bits outside the mask are ignored; any bits with no rolling agreed refuse it.
    pub fn apply_bits(&self, bits: Option<u32>) -> Result<u32, Rejection> {
        match bits {
            Some(bits) if self.mask != 0 => {
                Ok((self.job_version & !self.mask) | (bits & self.mask))
            }
            Some(_) => Err(Rejection::Version),
            None => Ok(self.job_version),
        }
    }
}

#[cfg(test)]
mod tests;
