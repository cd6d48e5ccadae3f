//! [`HostPort`]: the address of an upstream a role dials, a host name or an IP address and a
//! port. Unlike a `SocketAddr` it is not resolved when the configuration is read: the dialer
//! resolves it at every (re)connect, so a pool whose address changes is followed.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `host:port`, where the host is a DNS name (`pool.example.org`), an IPv4 address
/// (`192.0.2.7`) or an IPv6 address in brackets (`[2001:db8::7]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    /// Lower case, as DNS compares names.
    Name(String),
}

/// Why a `host:port` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    #[error("`{0}` has no port: write `host:port`, e.g. `pool.example.org:34254`")]
    MissingPort(String),
    #[error("`{0}`: the port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("`{0}` has no host: write `host:port`, e.g. `pool.example.org:34254`")]
    EmptyHost(String),
    #[error("`{0}`: an IPv6 address is written in brackets, e.g. `[2001:db8::7]:34254`")]
    UnbracketedIpv6(String),
    #[error("`{0}`: `{1}` is not an IPv6 address")]
    BadIpv6(String, String),
    #[error(
        "`{0}`: `{1}` is not a host name (letters, digits, `-`, `_` and dots) or an IP address"
    )]
    BadHost(String, String),
}

impl HostPort {
    /// `host` is a name or an IP address (an IPv6 one without brackets).
    pub fn new(host: &str, port: u16) -> Result<Self, HostPortError> {
        let text = || match host.parse::<Ipv6Addr>() {
            Ok(_) => format!("[{host}]:{port}"),
            Err(_) => format!("{host}:{port}"),
        };
        if port == 0 {
            return Err(HostPortError::BadPort(text()));
        }
        if host.is_empty() {
            return Err(HostPortError::EmptyHost(text()));
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if is_host_name(host) => Host::Name(host.to_ascii_lowercase()),
            Err(_) => return Err(HostPortError::BadHost(text(), host.to_string())),
        };
        Ok(Self { host, port })
    }

    /// The name or the IP address (an IPv6 one without brackets), as resolvers take it.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address when the host is an IP address (nothing to resolve).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// Whether the host is a name, resolved at each connect.
    pub fn is_name(&self) -> bool {
        matches!(self.host, Host::Name(_))
    }
}

/// Labels of letters, digits, `-` and `_` (service names such as `_sv2` and some internal
/// hosts use it), separated by dots, with an optional trailing dot.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Some(rest) = text.strip_prefix('[') {
            let Some((ip, after)) = rest.split_once(']') else {
                return Err(HostPortError::BadIpv6(text.into(), rest.into()));
            };
            let ip = ip
                .parse::<Ipv6Addr>()
                .map_err(|_| HostPortError::BadIpv6(text.into(), ip.into()))?;
            let Some(port) = after.strip_prefix(':') else {
                return Err(HostPortError::MissingPort(text.into()));
            };
            let port = parse_port(text, port)?;
            return Ok(Self {
                host: Host::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(HostPortError::MissingPort(text.into()));
        };
        if host.contains(':') {
            return Err(
                if host.parse::<Ipv6Addr>().is_ok() || text.parse::<Ipv6Addr>().is_ok() {
                    HostPortError::UnbracketedIpv6(text.into())
                } else {
                    HostPortError::BadHost(text.into(), host.into())
                },
            );
        }
        if host.is_empty() {
            return Err(HostPortError::EmptyHost(text.into()));
        }
        let port = parse_port(text, port)?;
        Self::new(host, port).map_err(|e| match e {
            HostPortError::BadHost(_, host) => HostPortError::BadHost(text.into(), host),
            other => other,
        })
    }
}

fn parse_port(text: &str, port: &str) -> Result<u16, HostPortError> {
    if port.is_empty() {
        return Err(HostPortError::MissingPort(text.into()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(HostPortError::BadPort(text.into())),
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(address: SocketAddr) -> Self {
        Self {
            host: Host::Ip(address.ip()),
            port: address.port(),
        }
    }
}

impl From<&HostPort> for HostPort {
    fn from(address: &HostPort) -> Self {
        address.clone()
    }
}

impl PartialEq<SocketAddr> for HostPort {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.socket_addr() == Some(*other)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HostPort, HostPortError> {
        s.parse()
    }

    #[test]
    fn ip_addresses_and_names_parse_and_print_back() {
        let v4 = parse("1.2.3.4:34254").unwrap();
        assert_eq!(v4.socket_addr(), Some("1.2.3.4:34254".parse().unwrap()));
        assert!(!v4.is_name());
        assert_eq!(v4.to_string(), "1.2.3.4:34254");

        let v6 = parse("[::1]:34254").unwrap();
        assert_eq!(v6.socket_addr(), Some("[::1]:34254".parse().unwrap()));
        assert_eq!(v6.host(), "::1");
        assert_eq!(v6.to_string(), "[::1]:34254");
        let v6 = parse("[2001:db8::7]:1").unwrap();
        assert_eq!(v6.to_string(), "[2001:db8::7]:1");

        let name = parse("pool.example.org:34254").unwrap();
        assert!(name.is_name());
        assert_eq!(name.host(), "pool.example.org");
        assert_eq!(name.port(), 34254);
        assert_eq!(name.socket_addr(), None);
        assert_eq!(name.to_string(), "pool.example.org:34254");

        for good in [
            "localhost:1",
            "Pool.Example.ORG.:65535",
            "pool-1.internal:3333",
            "_sv2.example.org:34254",
            "  host:9 ",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            parse("Pool.Example.ORG:1").unwrap().host(),
            "pool.example.org"
        );
    }

    #[test]
    fn a_socket_addr_converts_and_compares() {
        let addr: SocketAddr = "[::1]:7".parse().unwrap();
        let hp = HostPort::from(addr);
        assert_eq!(hp, addr);
        assert_eq!(hp.to_string(), addr.to_string());
        assert_eq!(parse(&addr.to_string()).unwrap(), hp);
    }

    #[test]
    fn bad_forms_are_refused_with_the_reason() {
        use HostPortError as E;
        type Expected = fn(&E) -> bool;
        let cases: &[(&str, Expected)] = &[
            ("pool.example.org", |e| matches!(e, E::MissingPort(_))),
            ("pool.example.org:", |e| matches!(e, E::MissingPort(_))),
            ("1.2.3.4", |e| matches!(e, E::MissingPort(_))),
            ("[::1]", |e| matches!(e, E::MissingPort(_))),
            ("[::1]34254", |e| matches!(e, E::MissingPort(_))),
            ("pool.example.org:0", |e| matches!(e, E::BadPort(_))),
            ("pool.example.org:65536", |e| matches!(e, E::BadPort(_))),
            ("pool.example.org:+1", |e| matches!(e, E::BadPort(_))),
            ("pool.example.org:http", |e| matches!(e, E::BadPort(_))),
            (":34254", |e| matches!(e, E::EmptyHost(_))),
            ("", |e| matches!(e, E::MissingPort(_))),
            ("::1:34254", |e| matches!(e, E::UnbracketedIpv6(_))),
            ("[not-ipv6]:1", |e| matches!(e, E::BadIpv6(..))),
            ("[::1:1", |e| matches!(e, E::BadIpv6(..))),
            ("pool example:1", |e| matches!(e, E::BadHost(..))),
            ("2001:db8::7", |e| matches!(e, E::UnbracketedIpv6(_))),
            ("http://pool:1", |e| matches!(e, E::BadHost(..))),
            ("pool..example:1", |e| matches!(e, E::BadHost(..))),
            ("-pool:1", |e| matches!(e, E::BadHost(..))),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text);
            assert!(expected(&err), "{text}: {err:?}");
            assert!(err.to_string().contains(text.trim()), "{text}: {err}");
        }
        assert!(matches!(HostPort::new("", 1), Err(E::EmptyHost(_))));
        assert!(matches!(HostPort::new("a", 0), Err(E::BadPort(_))));
    }

    #[test]
    fn deserializes_from_a_string_and_names_the_problem() {
        #[derive(Debug, Deserialize)]
        struct C {
            upstream: HostPort,
        }
        let c: C = toml_like("localhost:34254").unwrap();
        assert_eq!(c.upstream.host(), "localhost");
        let err = toml_like::<C>("localhost").unwrap_err();
        assert!(err.contains("has no port"), "{err}");

        fn toml_like<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
            use serde::de::{value::MapDeserializer, IntoDeserializer};
            let map = [("upstream", value)]
                .into_iter()
                .map(|(k, v)| (k, v.into_deserializer()));
            T::deserialize(MapDeserializer::<_, serde::de::value::Error>::new(map))
                .map_err(|e| e.to_string())
        }
    }
}
