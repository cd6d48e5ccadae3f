//! Failover: the channels the translator keeps open whenever a pool is connected survive the
//! loss of a pool (they are reopened on the next), and what the SV1 side asks while no pool is
//! connected is applied to them (shares refused at once).

use std::collections::BTreeMap;

use crate::TranslatorRunConfig;

use super::{Command, NotAccepted, UpstreamState};

/// A channel the translator keeps open whenever a pool is connected: the aggregated one, one
/// per subscribed miner (keyed by the miner's index, also the open request's id), or one per
/// miner key (keyed by the key's slot number).
pub(super) struct Slot {
    pub(super) user_identity: String,
    pub(super) hashrate: f32,
    pub(super) work: UpstreamState,
    /// The key this channel is locked to, when not the translator's own (public mode).
    pub(super) locking_key: Option<ext_mint_quote::LockingKey>,
}

pub(super) type Slots = BTreeMap<u32, Slot>;

/// The aggregated channel's slot (miner indexes start at 1).
pub(super) const AGGREGATED_SLOT: u32 = 0;

pub(super) fn apply_offline(slots: &mut Slots, config: &TranslatorRunConfig, command: Command) {
    match command {
        Command::Share(s) => {
            let _ = s
                .verdict
                .send(Err(NotAccepted::Unjudged("the pool is unreachable")));
        }
        Command::Open {
            miner,
            hashrate,
            work,
            key,
        } => {
            // A key's channel is named by its key: a pool that did not take the mint-quote
            // extension still locks the channel to it (the key as user identity).
            let user_identity = match key {
                Some(key) => key.to_hex(),
                None => format!("{}.{miner}", config.user_identity),
            };
            slots.insert(
                miner,
                Slot {
                    user_identity,
                    hashrate,
                    work,
                    locking_key: key,
                },
            );
        }
        Command::Hashrate { miner, hashrate } => {
            if let Some(slot) = slots.get_mut(&miner) {
                slot.hashrate = hashrate;
            }
        }
        Command::Close { miner } => {
            slots.remove(&miner);
        }
    }
}
