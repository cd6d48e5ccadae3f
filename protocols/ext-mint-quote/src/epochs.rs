//! The mint's list of its epochs' `hash` keysets (`GET /v1/hashpool/epochs`), which a wallet
//! reads to mint a quote, and to swap ehash, in the keyset of the quote's epoch.

use serde::{Deserialize, Serialize};

pub const EPOCHS_PATH: &str = "/v1/hashpool/epochs";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochKeyset {
    pub epoch: u32,
    /// The keyset id (NUT-02, hex).
    pub keyset: String,
    /// The epoch's final rate, once the pool has published it (the mint redeems at it):
    /// `x` ehash redeem for `floor(x * reward_sats / ehash)` sats. Absent while the epoch is
    /// open or not final, and from a mint that does not redeem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<EpochRate>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpochRate {
    pub reward_sats: u64,
    pub ehash: u64,
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
