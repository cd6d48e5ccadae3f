//! Who may hold a miner connection, and why connections were refused or dropped. The connection
//! bounds are checked on accept, before the Noise handshake costs the pool anything; the
//! counters say which limit a hostile (or broken) miner met.

use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use hashpool_sv2_io::Full;

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

/// Open miner connections (total and per address) and the limit counters.
pub struct Admission {
    open: Arc<hashpool_sv2_io::Admission>,
    hits: [AtomicU64; LimitReason::ALL.len()],
}

pub use hashpool_sv2_io::Admitted;

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            open: Arc::new(hashpool_sv2_io::Admission::new(max_total, max_per_address)),
            hits: Default::default(),
        }
    }

    /// Takes a place for a connection from `address`, or says which limit refuses it (and
    /// counts the refusal).
    pub fn admit(&self, address: IpAddr) -> Result<Admitted, LimitReason> {
        self.open.admit(address).map_err(|full| {
            let reason = match full {
                Full::Connections => LimitReason::Connections,
                Full::ConnectionsPerAddress => LimitReason::ConnectionsPerAddress,
            };
            self.count(reason);
            reason
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
        self.open.open_connections()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn per_address_and_total_limits_refuse_free_their_places_and_are_counted() {
        let a = Admission::new(3, 2);
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
