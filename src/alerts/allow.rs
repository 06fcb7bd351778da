//! The hosts webhooks may call (`METRICSTORE_WEBHOOK_ALLOW`): host names
//! (`hooks.example.com`, `*.example.com`), addresses and CIDR blocks.
//! A URL is allowed when its host is allowed by name, or when it is (or
//! every address it resolves to is) inside an allowed block. The default
//! is loopback only, so a rule cannot make the server call into a private
//! network; senders connect to the addresses checked, not to a second
//! resolution of the name.

use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Name(String),
    Suffix(String),
    V4(u32, u32),
    V6(u128, u128),
}

/// The allowed webhook destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

pub const DEFAULT: &str = "127.0.0.0/8,::1,localhost";

fn v4_mask(bits: u32) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    }
}

fn v6_mask(bits: u32) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address for matching.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl AllowList {
    /// Loopback only.
    pub fn loopback() -> Self {
        Self::parse(DEFAULT).expect("the default parses")
    }

    /// Parses a comma-separated list of host names, `*.suffix`, addresses
    /// and CIDR blocks.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |why: &str| format!("METRICSTORE_WEBHOOK_ALLOW entry {item:?}: {why}");
            let entry = if let Some((addr, bits)) = item.split_once('/') {
                let bits: u32 = bits
                    .parse()
                    .map_err(|_| bad("the prefix length is not a number"))?;
                match addr
                    .parse::<IpAddr>()
                    .map_err(|_| bad("not an IP address"))?
                {
                    IpAddr::V4(a) if bits <= 32 => {
                        Entry::V4(u32::from(a) & v4_mask(bits), v4_mask(bits))
                    }
                    IpAddr::V6(a) if bits <= 128 => {
                        Entry::V6(u128::from(a) & v6_mask(bits), v6_mask(bits))
                    }
                    _ => return Err(bad("the prefix length is too long")),
                }
            } else if let Ok(ip) = item.trim_matches(['[', ']']).parse::<IpAddr>() {
                match canonical(ip) {
                    IpAddr::V4(a) => Entry::V4(u32::from(a), u32::MAX),
                    IpAddr::V6(a) => Entry::V6(u128::from(a), u128::MAX),
                }
            } else if let Some(suffix) = item.strip_prefix("*.") {
                if suffix.is_empty() || !valid_name(suffix) {
                    return Err(bad("not a host name pattern"));
                }
                Entry::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
            } else if valid_name(item) {
                Entry::Name(item.to_ascii_lowercase())
            } else {
                return Err(bad("not a host name, address or CIDR block"));
            };
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// Reads `METRICSTORE_WEBHOOK_ALLOW` (loopback only when unset).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("METRICSTORE_WEBHOOK_ALLOW") {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v),
            _ => Ok(Self::loopback()),
        }
    }

    fn allows_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.entries.iter().any(|e| match e {
            Entry::Name(n) => *n == host,
            Entry::Suffix(s) => host.ends_with(s.as_str()),
            _ => false,
        })
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|e| match (e, ip) {
            (Entry::V4(net, mask), IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (Entry::V6(net, mask), IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        })
    }

    /// Checks what can be checked without resolving: the URL's form, its
    /// scheme, and an address literal against the blocks.
    pub fn check_url(&self, text: &str) -> Result<(), String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; sign with the channel's secret".into());
        }
        match url.host() {
            None => Err("has no host".into()),
            Some(url::Host::Ipv4(a)) if !self.allows_ip(IpAddr::V4(a)) => {
                Err(format!("{a} is not allowed by METRICSTORE_WEBHOOK_ALLOW"))
            }
            Some(url::Host::Ipv6(a)) if !self.allows_ip(IpAddr::V6(a)) => {
                Err(format!("{a} is not allowed by METRICSTORE_WEBHOOK_ALLOW"))
            }
            _ => Ok(()),
        }
    }

    /// Checks `text` whole, resolving a host name not allowed by name:
    /// every address must be allowed. Returns the addresses a sender must
    /// connect to (`None`: the host is allowed by name or is an address).
    pub async fn resolve_checked(
        &self,
        text: &str,
    ) -> Result<Option<(String, Vec<SocketAddr>)>, String> {
        self.check_url(text)?;
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(None);
        };
        let named = self.allows_name(host);
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("host {host:?} does not resolve: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("host {host:?} does not resolve"));
        }
        // An allowed name may still point into a private network (a DNS
        // record changed, or rebound between check and connection): its
        // addresses must be public unless an address entry allows them.
        let allowed = |ip: IpAddr| self.allows_ip(ip) || (named && is_public(ip));
        if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip())) {
            return Err(format!(
                "host {host:?} resolves to {}, which METRICSTORE_WEBHOOK_ALLOW does not allow{}",
                bad.ip(),
                if named {
                    " (an allowed name must resolve to public addresses, or the address must be allowed too)"
                } else {
                    ""
                }
            ));
        }
        Ok(Some((host.to_string(), addrs)))
    }
}

/// Whether `ip` is an address of the public internet. By hand because
/// `IpAddr::is_global` is not stable; the ranges are RFC 6890's special
/// purpose blocks that lead into a host or a private network.
fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let [x, y, ..] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || x == 0
                || (x == 100 && (64..128).contains(&y))
                || (x == 192 && y == 0 && a.octets()[2] == 0)
                || x >= 240)
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_loopback() {
        let a = AllowList::loopback();
        assert!(a.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(a.check_url("http://127.8.9.10/x").is_ok());
        assert!(a.check_url("http://[::1]:80/x").is_ok());
        assert!(a.check_url("http://[::ffff:127.0.0.1]/x").is_ok());
        for bad in [
            "http://10.0.0.1/x",
            "http://192.168.1.1/x",
            "http://169.254.169.254/latest",
            "http://[fe80::1]/x",
            "ftp://127.0.0.1/x",
            "http://user:pw@127.0.0.1/x",
            "not a url",
        ] {
            assert!(a.check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_blocks() {
        let a = AllowList::parse("hooks.example.com, *.corp.example, 10.1.0.0/16, 2001:db8::/32")
            .unwrap();
        assert!(a.allows_name("HOOKS.example.com"));
        assert!(a.allows_name("a.corp.example") && !a.allows_name("corp.example"));
        assert!(a.allows_ip("10.1.200.3".parse().unwrap()));
        assert!(!a.allows_ip("10.2.0.1".parse().unwrap()));
        assert!(a.allows_ip("2001:db8::5".parse().unwrap()));
        assert!(!a.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(AllowList::parse("10.0.0.0/33").is_err());
        assert!(AllowList::parse("bad host!").is_err());
    }

    #[tokio::test]
    async fn resolves_names_not_allowed_by_name() {
        let a = AllowList::parse("127.0.0.0/8").unwrap();
        // `localhost` resolves to loopback addresses only where it resolves
        // to IPv4; a block list without ::1 refuses an IPv6 answer.
        let by_name = AllowList::loopback();
        let (host, addrs) = by_name
            .resolve_checked("http://localhost:1/x")
            .await
            .unwrap()
            .expect("names are resolved and pinned");
        assert_eq!(host, "localhost");
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(a.resolve_checked("http://10.0.0.1/x").await.is_err());
    }

    #[tokio::test]
    async fn an_allowed_name_that_resolves_into_a_private_network_is_refused() {
        // Allowed by name only: `localhost` resolves to loopback, which no
        // address entry allows.
        let a = AllowList::parse("localhost").unwrap();
        let e = a.resolve_checked("http://localhost:1/x").await.unwrap_err();
        assert!(e.contains("public addresses"), "{e}");
    }

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.4.4"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
