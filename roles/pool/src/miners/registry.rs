//! The open miner connections, and which of them mine for which locking key. Observability
//! reads the connections' channels; a quote is announced to the connections with a channel
//! locked to its key through the key index, without locking any connection's channels.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use binary_sv2::B0255Owned;
use ext_mint_quote::{LockingKey, MintQuoteMessage, QuoteAnnouncementOwned};
use tokio::sync::mpsc;

use super::channel_set::{ChannelEntry, ChannelSet};

/// Where a connection's quote announcements go (its task writes them to the miner).
pub type Announcer = mpsc::UnboundedSender<MintQuoteMessage>;

/// A connection's channels, and the ids of those locked to one key.
pub type KeyChannels = (Arc<Mutex<ChannelSet>>, Vec<u32>);

/// A quote the mint issued, to be announced to the miners of its key.
#[derive(Debug, Clone, Copy)]
pub struct Quote<'a> {
    pub id: &'a str,
    pub amount: u64,
}

struct Connection {
    channels: Arc<Mutex<ChannelSet>>,
    /// Set once the connection negotiated the mint-quote extension.
    announcer: Option<Announcer>,
    /// Its channels' locking keys, to drop them from the index when it goes.
    keys: HashMap<u32, LockingKey>,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<usize, Connection>,
    /// Per locking key: the connections with a channel locked to it, and those channels.
    by_key: HashMap<LockingKey, HashMap<usize, BTreeSet<u32>>>,
}

impl Inner {
    fn unindex(&mut self, client_id: usize, channel_id: u32, key: &LockingKey) {
        let Some(clients) = self.by_key.get_mut(key) else {
            return;
        };
        if let Some(channels) = clients.get_mut(&client_id) {
            channels.remove(&channel_id);
            if channels.is_empty() {
                clients.remove(&client_id);
            }
        }
        if clients.is_empty() {
            self.by_key.remove(key);
        }
    }
}

/// Connections by client id, and the key index. Lock order: a connection's channels may be
/// locked when the registry is, never the other way round.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, client_id: usize, channels: Arc<Mutex<ChannelSet>>) {
        self.lock().connections.insert(
            client_id,
            Connection {
                channels,
                announcer: None,
                keys: HashMap::new(),
            },
        );
    }

    pub fn remove(&self, client_id: usize) {
        let mut inner = self.lock();
        if let Some(connection) = inner.connections.remove(&client_id) {
            for (channel_id, key) in &connection.keys {
                inner.unindex(client_id, *channel_id, key);
            }
        }
    }

    /// Where the connection's announcements go, or `None` when it did not negotiate the
    /// mint-quote extension.
    pub fn set_announcer(&self, client_id: usize, announcer: Option<Announcer>) {
        if let Some(connection) = self.lock().connections.get_mut(&client_id) {
            connection.announcer = announcer;
        }
    }

    /// Adds a channel to its connection's set and to the key index.
    pub fn open_channel(&self, set: &mut ChannelSet, channel_id: u32, entry: ChannelEntry) {
        let key = entry.locking_key;
        let client_id = set.client_id;
        if let Some(old) = set.insert(channel_id, entry) {
            // Channel ids are never reused; should one be, the index must not keep its key.
            self.lock().unindex(client_id, channel_id, &old.locking_key);
        }
        let mut inner = self.lock();
        let Inner {
            connections,
            by_key,
        } = &mut *inner;
        if let Some(connection) = connections.get_mut(&client_id) {
            connection.keys.insert(channel_id, key);
            by_key
                .entry(key)
                .or_default()
                .entry(client_id)
                .or_default()
                .insert(channel_id);
        }
    }

    /// Removes a channel from its connection's set and from the key index.
    pub fn close_channel(&self, set: &mut ChannelSet, channel_id: u32) -> Option<ChannelEntry> {
        let entry = set.remove(channel_id)?;
        let mut inner = self.lock();
        if let Some(connection) = inner.connections.get_mut(&set.client_id) {
            connection.keys.remove(&channel_id);
        }
        inner.unindex(set.client_id, channel_id, &entry.locking_key);
        Some(entry)
    }

    /// The connections at this moment (each still locked separately when read).
    pub fn connections(&self) -> Vec<Arc<Mutex<ChannelSet>>> {
        self.lock()
            .connections
            .values()
            .map(|c| c.channels.clone())
            .collect()
    }

    /// The connections with a channel locked to `key` and those channels' ids, at most `limit`
    /// channels in all, and how many channels the key has in all. Reads the key index only, not
    /// every connection.
    pub fn channels_of(&self, key: &LockingKey, limit: usize) -> (Vec<KeyChannels>, usize) {
        let inner = self.lock();
        let Some(clients) = inner.by_key.get(key) else {
            return (Vec::new(), 0);
        };
        let total = clients.values().map(BTreeSet::len).sum();
        let mut left = limit;
        let mut out = Vec::new();
        for (client_id, channels) in clients {
            if left == 0 {
                break;
            }
            let Some(connection) = inner.connections.get(client_id) else {
                continue;
            };
            let ids: Vec<u32> = channels.iter().take(left).copied().collect();
            left -= ids.len();
            out.push((connection.channels.clone(), ids));
        }
        (out, total)
    }

    /// Tells every connection with a channel locked to `key` (and the extension negotiated)
    /// that its quote is ready, once per connection, naming one of those channels. Offline
    /// wallets find the quote through the mint instead.
    pub fn announce(&self, key: &LockingKey, quote: Quote<'_>) {
        let inner = self.lock();
        let Some(clients) = inner.by_key.get(key) else {
            return;
        };
        for (client_id, channels) in clients {
            let announcer = inner
                .connections
                .get(client_id)
                .and_then(|c| c.announcer.as_ref());
            let (Some(announcer), Some(channel_id)) = (announcer, channels.first()) else {
                continue;
            };
            let message = MintQuoteMessage::Announcement(QuoteAnnouncementOwned {
                channel_id: *channel_id,
                quote_id: hashpool_sv2_io::str0255(quote.id),
                amount: quote.amount,
                locking_key: B0255Owned::new(key.as_bytes().to_vec()).expect("33 bytes"),
            });
            // A connection that just closed no longer reads: nothing to tell it.
            let _ = announcer.send(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::Target;
    use channels_sv2::{
        extranonce_manager::ExtranonceAllocator, server::standard::StandardChannel, VardiffState,
    };

    use super::*;
    use crate::miners::channel_set::ChannelKind;

    fn key(n: u8) -> LockingKey {
        let secp = bitcoin::secp256k1::Secp256k1::signing_only();
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&[n; 32]).unwrap();
        LockingKey::from_slice(
            &bitcoin::secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize(),
        )
        .unwrap()
    }

    fn entry(allocator: &mut ExtranonceAllocator, id: u32, key: LockingKey) -> ChannelEntry {
        let channel = StandardChannel::new_for_pool(
            id,
            "miner".into(),
            allocator.allocate_standard().unwrap(),
            Target::MAX,
            1e9,
            10,
            6.0,
            "test".into(),
            None,
        )
        .unwrap();
        ChannelEntry {
            kind: ChannelKind::Standard(channel),
            locking_key: key,
            vardiff: VardiffState::new().unwrap(),
            bootstrap_seq: 0,
            job_targets: Default::default(),
            network_target: None,
            acked: Default::default(),
            last_share_ms: None,
            best_difficulty: 0.0,
        }
    }

    struct Miner {
        set: Arc<Mutex<ChannelSet>>,
        announcements: mpsc::UnboundedReceiver<MintQuoteMessage>,
    }

    impl Miner {
        fn connect(registry: &Registry, client_id: usize, negotiated: bool) -> Self {
            let set = Arc::new(Mutex::new(ChannelSet::new(client_id, 0)));
            registry.insert(client_id, set.clone());
            let (tx, announcements) = mpsc::unbounded_channel();
            registry.set_announcer(client_id, negotiated.then_some(tx));
            Self { set, announcements }
        }

        fn open(&self, registry: &Registry, a: &mut ExtranonceAllocator, id: u32, k: LockingKey) {
            let mut set = self.set.lock().unwrap();
            registry.open_channel(&mut set, id, entry(a, id, k));
        }

        fn close(&self, registry: &Registry, id: u32) {
            let mut set = self.set.lock().unwrap();
            assert!(registry.close_channel(&mut set, id).is_some());
            assert!(!set.channels().contains_key(&id));
        }

        /// (channel id, quote id, amount) of every announcement received so far.
        fn received(&mut self) -> Vec<(u32, String, u64)> {
            let mut out = Vec::new();
            while let Ok(m) = self.announcements.try_recv() {
                let MintQuoteMessage::Announcement(a) = m else {
                    panic!("not an announcement");
                };
                out.push((a.channel_id, hashpool_sv2_io::text(&a.quote_id), a.amount));
            }
            out
        }
    }

    #[test]
    fn a_quote_is_announced_once_to_each_connection_mining_for_its_key() {
        let registry = Registry::default();
        let mut a = ExtranonceAllocator::new(vec![0, 1], 20, 1 << 10).unwrap();
        let mut one = Miner::connect(&registry, 1, true);
        let mut two = Miner::connect(&registry, 2, true);
        let mut silent = Miner::connect(&registry, 3, false);
        one.open(&registry, &mut a, 10, key(1));
        one.open(&registry, &mut a, 11, key(1));
        one.open(&registry, &mut a, 12, key(2));
        two.open(&registry, &mut a, 20, key(1));
        silent.open(&registry, &mut a, 30, key(1));
        let quote = |id| Quote { id, amount: 5 };

        registry.announce(&key(1), quote("q1"));
        assert_eq!(one.received(), vec![(10, "q1".to_string(), 5)]);
        assert_eq!(two.received(), vec![(20, "q1".to_string(), 5)]);
        // Without the extension negotiated, nothing is sent.
        assert!(silent.received().is_empty());

        registry.announce(&key(2), quote("q2"));
        assert_eq!(one.received(), vec![(12, "q2".to_string(), 5)]);
        assert!(two.received().is_empty());
        registry.announce(&key(9), quote("nobody"));
        assert!(one.received().is_empty() && two.received().is_empty());

        // A closed channel is no longer named; its connection's other channel of the key is.
        one.close(&registry, 10);
        registry.announce(&key(1), quote("q3"));
        assert_eq!(one.received(), vec![(11, "q3".to_string(), 5)]);
        assert_eq!(two.received(), vec![(20, "q3".to_string(), 5)]);
        // A connection gone is forgotten, keys and all.
        registry.remove(2);
        registry.announce(&key(1), quote("q4"));
        assert!(two.received().is_empty());
        assert_eq!(one.received(), vec![(11, "q4".to_string(), 5)]);
        one.close(&registry, 11);
        registry.announce(&key(1), quote("q5"));
        assert!(one.received().is_empty());
        assert_eq!(registry.connections().len(), 2);
        // Negotiated late, the extension is honoured from then on.
        let (tx, rx) = mpsc::unbounded_channel();
        registry.set_announcer(3, Some(tx));
        silent.announcements = rx;
        registry.announce(&key(1), quote("q6"));
        assert_eq!(silent.received(), vec![(30, "q6".to_string(), 5)]);
    }
}
