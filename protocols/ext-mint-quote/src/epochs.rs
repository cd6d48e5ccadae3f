//! The mint's list of its epochs' `hash` keysets (`GET /v1/hashpool/epochs`), which a wallet
//! reads to mint a quote, and to swap ehash, in the keyset of the quote's epoch.

use serde::{Deserialize, Serialize};

pub const EPOCHS_PATH: &str = "/v1/hashpool/epochs";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochKeyset {
    pub epoch: u32,
    /// The keyset id (NUT-02, hex).
    pub keyset: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochsResponse {
    /// The `hash` keyset of ehash from before the pool's first epoch.
    pub pre_epoch: Option<String>,
    /// Every epoch the mint has issued ehash in, oldest first.
    pub epochs: Vec<EpochKeyset>,
}

impl EpochsResponse {
    /// The keyset a quote of `epoch` (`None`: of no epoch) is minted in.
    pub fn keyset_of(&self, epoch: Option<u32>) -> Option<&str> {
        match epoch {
            None => self.pre_epoch.as_deref(),
            Some(e) => self
                .epochs
                .iter()
                .find(|k| k.epoch == e)
                .map(|k| k.keyset.as_str()),
        }
    }
}
