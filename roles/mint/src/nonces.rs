//! Lookup nonces the mint has accepted, each remembered until its request's time leaves the
//! accepted window (after that the time check alone refuses a replay). Memory is bounded: a
//! full store refuses new lookups rather than forget a nonce that could still be replayed.

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
    /// `<locking key>:<nonce>` -> Unix second after which it may be forgotten.
    seen: Mutex<HashMap<String, u64>>,
}

impl SeenNonces {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers `key` until `expires` (Unix seconds), unless it is already there.
    pub fn admit(&self, key: String, expires: u64, now: u64) -> Admission {
        // A poisoned lock only means another request panicked mid-insert: the map is intact.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&key) {
            Some(&until) if until >= now => return Admission::Replayed,
            _ => {}
        }
        if seen.len() >= self.capacity {
            // Pruning only when full keeps admission O(1) amortised.
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.capacity {
                return Admission::Full;
            }
        }
        seen.insert(key, expires);
        Admission::Fresh
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
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
}
