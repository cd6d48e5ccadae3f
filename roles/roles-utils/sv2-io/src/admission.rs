//! Who may hold a connection on a public port: at most so many open in all and from one source.
//! Checked on accept, before a handshake or a line costs the server anything; a role counts the
//! refusals with its own reasons.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Which bound refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The most connections the server holds were open.
    Connections,
    /// The most connections from one source were open.
    ConnectionsPerAddress,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Open connections, in all and per source.
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a connection from `address`, or says which bound refuses it.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, Full> {
        let address = address_source(address);
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Full::Connections);
        }
        let from_address = open.per_address.entry(address).or_insert(0);
        if *from_address >= self.max_per_address {
            return Err(Full::ConnectionsPerAddress);
        }
        *from_address += 1;
        open.total += 1;
        Ok(Admitted {
            admission: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.lock().total
    }
}

/// The source a per-address bound counts: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: a peer with a /64 has 2^64 addresses to spread connections over).
pub fn address_source(address: IpAddr) -> IpAddr {
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
    fn per_address_and_total_bounds_refuse_and_free_their_places() {
        let a = Arc::new(Admission::new(3, 2));
        let first = a.admit(ip(1)).unwrap();
        let _second = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).err(), Some(Full::ConnectionsPerAddress));
        let _other = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).err(), Some(Full::Connections));
        assert_eq!(a.open_connections(), 3);
        drop(first);
        assert_eq!(a.open_connections(), 2);
        // The freed place is usable again, by the same address too.
        let _again = a.admit(ip(1)).unwrap();
        // A refusal took no place.
        assert_eq!(a.lock().per_address.get(&ip(3)), None);
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let a = Arc::new(Admission::new(10, 2));
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        let _one = a.admit(host(1)).unwrap();
        let _two = a.admit(host(2)).unwrap();
        assert_eq!(a.admit(host(3)).err(), Some(Full::ConnectionsPerAddress));
        // Another /64 is another source; a v4-mapped address is its IPv4 address.
        let other = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        let _three = a.admit(other).unwrap();
        let _v4 = a.admit(ip(9)).unwrap();
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped());
        let _v4_again = a.admit(mapped).unwrap();
        assert_eq!(a.admit(ip(9)).err(), Some(Full::ConnectionsPerAddress));
    }
}
