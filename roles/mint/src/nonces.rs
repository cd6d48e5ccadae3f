//! Lookup nonces the mint has accepted, each remembered until its request's time leaves the
//! accepted window (after that the time check alone refuses a replay). Memory is bounded: a
//! full store refuses new lookups rather than forget a nonce that could still be replayed.
//! Expired nonces are dropped whenever the store has doubled since the last sweep, so it holds
//! about what the last minutes' lookups need, not its capacity (at a few lookups a second a
//! store swept only when full would grow for hours).

use std::{collections::HashMap, sync::Mutex};

/// What [`SeenNonces::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// First use: remembered until it expires.
    Fresh,
    /// Seen before and not expired: a replay.
    Replayed,
    /// The store is full of unexpired nonces.
    Full,
}

pub struct SeenNonces {
    capacity: usize,
    store: Mutex<Store>,
}

struct Store {
    /// `<locking key>:<nonce>` -> Unix second after which it may be forgotten.
    seen: HashMap<String, u64>,
    /// The size at which expired nonces are swept next.
    sweep_at: usize,
}

/// The smallest store that is swept: below it a sweep would cost more than it frees.
const MIN_SWEEP: usize = 1024;

impl SeenNonces {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            store: Mutex::new(Store {
                seen: HashMap::new(),
                sweep_at: MIN_SWEEP.min(capacity),
            }),
        }
    }

    /// Remembers `key` until `expires` (Unix seconds), unless it is already there.
    pub fn admit(&self, key: String, expires: u64, now: u64) -> Admission {
        // A poisoned lock only means another request panicked mid-insert: the map is intact.
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match store.seen.get(&key) {
            Some(&until) if until >= now => return Admission::Replayed,
            _ => {}
        }
        if store.seen.len() >= store.sweep_at {
            // Sweeping when the store has doubled since the last sweep keeps admission O(1)
            // amortised and the store within twice what is unexpired.
            store.seen.retain(|_, until| *until >= now);
            store.sweep_at = (store.seen.len() * 2).max(MIN_SWEEP).min(self.capacity);
            if store.seen.len() >= self.capacity {
                return Admission::Full;
            }
        }
        store.seen.insert(key, expires);
        Admission::Fresh
    }

    pub fn len(&self) -> usize {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_admitted_once_until_it_expires() {
        let nonces = SeenNonces::new(10);
        assert_eq!(nonces.admit("k:n".into(), 100, 0), Admission::Fresh);
        assert_eq!(nonces.admit("k:n".into(), 100, 50), Admission::Replayed);
        assert_eq!(nonces.admit("k:m".into(), 100, 50), Admission::Fresh);
        assert_eq!(nonces.admit("j:n".into(), 100, 50), Admission::Fresh);
        // Past its expiry the time window refuses the request anyway: it may be reused here.
        assert_eq!(nonces.admit("k:n".into(), 300, 101), Admission::Fresh);
    }

    #[test]
    fn memory_is_bounded_and_expired_nonces_make_room() {
        let nonces = SeenNonces::new(2);
        assert_eq!(nonces.admit("a".into(), 10, 0), Admission::Fresh);
        assert_eq!(nonces.admit("b".into(), 20, 0), Admission::Fresh);
        assert_eq!(nonces.admit("c".into(), 30, 5), Admission::Full);
        assert_eq!(nonces.len(), 2);
        // "a" expired: pruned to make room; "b" is still remembered.
        assert_eq!(nonces.admit("c".into(), 30, 11), Admission::Fresh);
        assert_eq!(nonces.admit("b".into(), 20, 11), Admission::Replayed);
        assert_eq!(nonces.len(), 2);
    }

    /// Steady lookups: the store holds what has not expired (and at most as much again), not
    /// its capacity.
    #[test]
    fn expired_nonces_are_swept_long_before_the_store_is_full() {
        let nonces = SeenNonces::new(100_000);
        // Ten lookups a second for two hours, each nonce remembered for 300 s.
        for i in 0..72_000u64 {
            let now = i / 10;
            assert_eq!(
                nonces.admit(format!("k:{i}"), now + 300, now),
                Admission::Fresh
            );
        }
        let live = 3_010;
        assert!(
            nonces.len() <= 2 * live,
            "{} nonces held, {live} unexpired",
            nonces.len()
        );
        // A nonce still in its window is still refused.
        assert_eq!(
            nonces.admit("k:71999".into(), 7_500, 7_199),
            Admission::Replayed
        );
    }
}
