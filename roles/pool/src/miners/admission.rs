//! Who may hold a miner connection, and why connections were refused or dropped. The connection
//! bounds are checked on accept, before the Noise handshake costs the pool anything; the
//! counters say which limit a hostile (or broken) miner met.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

/// Why the pool refused or closed a miner connection because of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    /// `limits.max_connections` connections were open.
    Connections,
    /// `limits.max_connections_per_address` connections from the same address were open.
    ConnectionsPerAddress,
    /// No SetupConnection within `limits.setup_timeout_secs`.
    SetupTimeout,
    /// No channel within `limits.first_channel_timeout_secs`.
    FirstChannelTimeout,
    /// Nothing received for `limits.idle_timeout_secs`.
    IdleTimeout,
    /// A write did not complete within `limits.write_timeout_secs`.
    WriteTimeout,
    /// A channel beyond `pool.max_channels_per_connection` (refused, the connection stays).
    ChannelsPerConnection,
}

impl LimitReason {
    pub const ALL: [LimitReason; 7] = [
        LimitReason::Connections,
        LimitReason::ConnectionsPerAddress,
        LimitReason::SetupTimeout,
        LimitReason::FirstChannelTimeout,
        LimitReason::IdleTimeout,
        LimitReason::WriteTimeout,
        LimitReason::ChannelsPerConnection,
    ];

    /// The label used in logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::Connections => "max_connections",
            LimitReason::ConnectionsPerAddress => "max_connections_per_address",
            LimitReason::SetupTimeout => "setup_timeout",
            LimitReason::FirstChannelTimeout => "first_channel_timeout",
            LimitReason::IdleTimeout => "idle_timeout",
            LimitReason::WriteTimeout => "write_timeout",
            LimitReason::ChannelsPerConnection => "max_channels_per_connection",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Open miner connections (total and per address) and the limit counters.
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
    hits: [AtomicU64; LimitReason::ALL.len()],
}

/// Held by an admitted connection; frees its place when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total,
            max_per_address,
            open: Mutex::new(Open::default()),
            hits: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a connection from `address`, or says which limit refuses it (and
    /// counts the refusal).
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, LimitReason> {
        let address = source(address);
        let mut open = self.lock();
        let from_address = open.per_address.get(&address).copied().unwrap_or(0);
        let refusal = if open.total >= self.max_total {
            Some(LimitReason::Connections)
        } else if from_address >= self.max_per_address {
            Some(LimitReason::ConnectionsPerAddress)
        } else {
            None
        };
        if let Some(reason) = refusal {
            drop(open);
            self.count(reason);
            return Err(reason);
        }
        open.total += 1;
        *open.per_address.entry(address).or_insert(0) += 1;
        Ok(Admitted {
            admission: self.clone(),
            address,
        })
    }

    pub fn count(&self, reason: LimitReason) {
        self.hits[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// How often each limit was met since start.
    pub fn hits(&self) -> Vec<(&'static str, u64)> {
        LimitReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.hits[r.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// How often `reason`'s limit was met since start.
    pub fn hits_of(&self, reason: LimitReason) -> u64 {
        self.hits[reason.index()].load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.lock().total
    }
}

/// The source a per-address limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: a peer with a /64 has 2^64 addresses to spread connections over).
fn source(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_and_total_limits_refuse_and_free_their_places() {
        let a = Arc::new(Admission::new(3, 2));
        let first = a.admit(ip(1)).unwrap();
        let _second = a.admit(ip(1)).unwrap();
        assert_eq!(
            a.admit(ip(1)).err(),
            Some(LimitReason::ConnectionsPerAddress)
        );
        let _other = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).err(), Some(LimitReason::Connections));
        assert_eq!(a.open_connections(), 3);
        drop(first);
        assert_eq!(a.open_connections(), 2);
        // The freed place is usable again, by the same address too.
        let _again = a.admit(ip(1)).unwrap();
        assert_eq!(a.hits_of(LimitReason::ConnectionsPerAddress), 1);
        assert_eq!(a.hits_of(LimitReason::Connections), 1);
        assert_eq!(a.hits_of(LimitReason::IdleTimeout), 0);
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let a = Arc::new(Admission::new(10, 2));
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        let _one = a.admit(host(1)).unwrap();
        let _two = a.admit(host(2)).unwrap();
        assert_eq!(
            a.admit(host(3)).err(),
            Some(LimitReason::ConnectionsPerAddress)
        );
        // Another /64 is another source; a v4-mapped address is its IPv4 address.
        let other = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        let _three = a.admit(other).unwrap();
        let _v4 = a.admit(ip(9)).unwrap();
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped());
        let _v4_again = a.admit(mapped).unwrap();
        assert_eq!(
            a.admit(ip(9)).err(),
            Some(LimitReason::ConnectionsPerAddress)
        );
    }

    #[test]
    fn every_reason_has_its_own_counter() {
        let a = Admission::new(1, 1);
        for (i, r) in LimitReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                a.count(*r);
            }
        }
        for (i, (_, n)) in a.hits().into_iter().enumerate() {
            assert_eq!(n, i as u64 + 1);
        }
    }
}
