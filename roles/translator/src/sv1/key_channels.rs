//! Public mode: one channel on the pool per miner key, shared by that key's workers. The first
//! worker of a key has its channel opened; the last to leave has it closed.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex,
    },
};

use ext_mint_quote::LockingKey;
use tokio::sync::{mpsc, watch};

use super::Work;
use crate::sv2::Command;

/// The keys with workers connected, and the key miners without one mine for.
pub struct KeyChannels {
    default_key: Option<LockingKey>,
    keys: Mutex<HashMap<LockingKey, KeyChannel>>,
    /// Per source address (an IPv4 address or an IPv6 /64): workers per key it mines for.
    sources: Mutex<HashMap<IpAddr, HashMap<LockingKey, usize>>>,
    max_keys_per_address: usize,
    /// Slot numbers: unique for the process, so a key's new channel never takes a closed one's.
    next_slot: AtomicU32,
}

struct KeyChannel {
    slot: u32,
    work: Work,
    workers: usize,
}

/// A worker's place on its key's channel: its slot, and the channel's work.
pub(super) struct Joined {
    pub(super) slot: u32,
    pub(super) work: Work,
}

/// Why a worker cannot join its key's channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    #[error(
        "workers from your address already mine for {0} different keys (the translator's \
         `max_keys_per_address`); mine for one of those, or ask the operator for more"
    )]
    TooManyKeys(usize),
    #[error("translator stopping")]
    Stopping,
}

impl KeyChannels {
    pub fn new(default_key: Option<LockingKey>, max_keys_per_address: usize) -> Self {
        Self {
            default_key,
            keys: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            max_keys_per_address,
            next_slot: AtomicU32::new(1),
        }
    }

    /// Counts a worker of `key` from `source`, unless that source would then mine for more
    /// than `max_keys_per_address` keys.
    fn admit(&self, source: IpAddr, key: LockingKey) -> Result<(), JoinRefused> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let keys = sources.entry(source).or_default();
        if !keys.contains_key(&key) && keys.len() >= self.max_keys_per_address {
            return Err(JoinRefused::TooManyKeys(keys.len()));
        }
        *keys.entry(key).or_insert(0) += 1;
        Ok(())
    }

    fn release(&self, source: IpAddr, key: LockingKey) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = sources.get_mut(&source) {
            if let Some(n) = keys.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    keys.remove(&key);
                }
            }
            if keys.is_empty() {
                sources.remove(&source);
            }
        }
    }

    pub(super) fn default_key(&self) -> Option<LockingKey> {
        self.default_key
    }

    /// Joins `key`'s channel for a worker connected from `source` (see
    /// `hashpool_sv2_io::address_source`), opening it (at `hashrate`) for its first worker.
    pub(super) async fn join(
        &self,
        key: LockingKey,
        source: IpAddr,
        hashrate: f32,
        commands: &mpsc::Sender<Command>,
    ) -> Result<Joined, JoinRefused> {
        self.admit(source, key)?;
        let open = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match keys.get_mut(&key) {
                // A channel the pool closed or refused has dropped its sender: its workers are
                // being disconnected, and this one gets a new channel.
                Some(c) if c.work.has_changed().is_ok() => {
                    c.workers += 1;
                    return Ok(Joined {
                        slot: c.slot,
                        work: c.work.clone(),
                    });
                }
                _ => {
                    let slot = self.next_slot.fetch_add(1, Ordering::Relaxed);
                    let (tx, work) = watch::channel(None);
                    keys.insert(
                        key,
                        KeyChannel {
                            slot,
                            work: work.clone(),
                            workers: 1,
                        },
                    );
                    (
                        Command::Open {
                            miner: slot,
                            hashrate,
                            work: tx,
                            key: Some(key),
                        },
                        Joined { slot, work },
                    )
                }
            }
        };
        let (command, joined) = open;
        if commands.send(command).await.is_err() {
            self.release(source, key);
            return Err(JoinRefused::Stopping);
        }
        Ok(joined)
    }

    /// A worker from `source` of `key`'s channel `slot` left; the last one's leaving closes
    /// the channel.
    pub(super) async fn leave(
        &self,
        key: LockingKey,
        slot: u32,
        source: IpAddr,
        commands: &mpsc::Sender<Command>,
    ) {
        self.release(source, key);
        let close = {
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            match keys.get_mut(&key) {
                Some(c) if c.slot == slot => {
                    c.workers -= 1;
                    if c.workers == 0 {
                        keys.remove(&key);
                        true
                    } else {
                        false
                    }
                }
                // Its channel was replaced (the pool closed it): the old slot is closed anyway.
                _ => true,
            }
        };
        if close {
            let _ = commands.send(Command::Close { miner: slot }).await;
        }
    }

    /// Keys with a channel, and their workers.
    pub fn workers(&self) -> HashMap<LockingKey, usize> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().map(|(k, c)| (*k, c.workers)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> LockingKey {
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
        LockingKey::from_slice(&sk.public_key(&secp).serialize()).unwrap()
    }

    fn here() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    #[tokio::test]
    async fn one_address_mines_for_a_bounded_number_of_keys_at_once() {
        let keys = KeyChannels::new(None, 2);
        let (tx, mut rx) = mpsc::channel(16);
        let other = IpAddr::from([192, 0, 2, 2]);
        let a = keys.join(key(1), here(), 1e6, &tx).await.unwrap();
        let b = keys.join(key(2), here(), 1e6, &tx).await.unwrap();
        // A third key from the same address is refused, and opens nothing on the pool.
        let opened = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(opened, 2);
        let refused = keys.join(key(3), here(), 1e6, &tx).await.err();
        assert_eq!(refused, Some(JoinRefused::TooManyKeys(2)));
        assert!(refused
            .unwrap()
            .to_string()
            .contains("max_keys_per_address"));
        assert!(rx.try_recv().is_err(), "a refused key opened a channel");
        // More workers of a key it already mines for are welcome, and other addresses are
        // not affected.
        keys.join(key(1), here(), 1e6, &tx).await.unwrap();
        keys.join(key(3), other, 1e6, &tx).await.unwrap();
        // Once every worker of key 2 from here has left, a new key fits again.
        keys.leave(key(2), b.slot, here(), &tx).await;
        keys.join(key(4), here(), 1e6, &tx).await.unwrap();
        assert_eq!(
            keys.join(key(5), here(), 1e6, &tx).await.err(),
            Some(JoinRefused::TooManyKeys(2))
        );
        // Key 1 has two workers from here: one leaving keeps its place.
        keys.leave(key(1), a.slot, here(), &tx).await;
        assert_eq!(
            keys.join(key(5), here(), 1e6, &tx).await.err(),
            Some(JoinRefused::TooManyKeys(2))
        );
    }

    #[tokio::test]
    async fn workers_of_a_key_share_one_channel_opened_once_and_closed_by_the_last() {
        let keys = KeyChannels::new(None, 8);
        let (tx, mut rx) = mpsc::channel(16);
        let a1 = keys.join(key(1), here(), 1e6, &tx).await.unwrap();
        let a2 = keys.join(key(1), here(), 2e6, &tx).await.unwrap();
        let b = keys.join(key(2), here(), 3e6, &tx).await.unwrap();
        assert_eq!(a1.slot, a2.slot);
        assert_ne!(a1.slot, b.slot);
        let mut opened = Vec::new();
        let mut senders = Vec::new();
        while let Ok(c) = rx.try_recv() {
            match c {
                Command::Open {
                    miner, key, work, ..
                } => {
                    opened.push((miner, key));
                    senders.push(work);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            opened,
            vec![(a1.slot, Some(key(1))), (b.slot, Some(key(2)))]
        );
        assert_eq!(keys.workers()[&key(1)], 2);

        keys.leave(key(1), a1.slot, here(), &tx).await;
        assert!(rx.try_recv().is_err(), "a worker is left on the channel");
        keys.leave(key(1), a2.slot, here(), &tx).await;
        assert!(matches!(rx.try_recv(), Ok(Command::Close { miner }) if miner == a1.slot));
        assert!(!keys.workers().contains_key(&key(1)));

        // The pool dropped key 2's channel (its sender gone): the next worker gets a new one,
        // and the old channel's worker leaving does not close it.
        senders.clear();
        let b2 = keys.join(key(2), here(), 1e6, &tx).await.unwrap();
        assert_ne!(b2.slot, b.slot);
        assert!(matches!(rx.try_recv(), Ok(Command::Open { miner, .. }) if miner == b2.slot));
        keys.leave(key(2), b.slot, here(), &tx).await;
        assert!(matches!(rx.try_recv(), Ok(Command::Close { miner }) if miner == b.slot));
        assert_eq!(keys.workers()[&key(2)], 1);
    }
}
