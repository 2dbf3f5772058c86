//! Whether an address is on the public internet. The registry a job names, and the token
//! realm that registry names, are the job's choice; the runner reaching them sits on the host's
//! network, not the sandbox's, so it must not be made a client of internal services.

use std::net::IpAddr;

/// An address on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unique-local, multicast, documentation or unspecified.
pub fn is_public(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0))
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(&std::net::IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // Addresses that carry an IPv4 address (NAT64, 6to4, IPv4-compatible) are as public
            // as that address.
            let embedded = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || seg[..6] == [0; 6] {
                return is_public(&std::net::IpAddr::V4(embedded(seg[6], seg[7])));
            }
            if seg[0] == 0x2002 {
                return is_public(&std::net::IpAddr::V4(embedded(seg[1], seg[2])));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] & 0xffc0) == 0xfec0
                || seg[0] == 0x2001 && seg[1] == 0x0db8)
        }
    }
}

/// Registries (`host[:port]`) the runner may reach on private or local addresses: the ones its
/// settings name (`insecure`, `private_registries`, the mirror). Everything else a job's
/// registry makes the runner fetch (the registry, its token realm, a redirect) must be public.
#[derive(Debug, Clone, Default)]
pub struct PrivateAllowed {
    entries: std::sync::Arc<Vec<String>>,
}

impl PrivateAllowed {
    /// Allows these `host[:port]` entries.
    pub fn new(entries: impl IntoIterator<Item = String>) -> Self {
        PrivateAllowed {
            entries: std::sync::Arc::new(entries.into_iter().collect()),
        }
    }

    /// Whether some entry names `host` (whatever its port): for names being resolved, which
    /// come without one.
    fn allows_name(&self, host: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e == host || e.rsplit_once(':').is_some_and(|(h, _)| h == host))
    }

    /// Whether `url`'s host and port are named (an entry without a port names every port).
    fn allows(&self, url: &reqwest::Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        self.entries.iter().any(|e| match e.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h == host && p == port.to_string(),
            _ => e == host,
        })
    }

    /// An error when `url` names a private or local IP address that is not allowed. Names are
    /// checked when they are resolved ([`PublicOnlyResolver`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if is_public(&ip) || self.allows(url) {
            Ok(())
        } else {
            Err(format!(
                "{url} is on a private or local address this runner does not reach for a registry"
            ))
        }
    }
}

/// Resolves names for registry requests, refusing one that resolves to a private or local
/// address unless it is allowed: checked at connect time, so a name that changes its answer
/// (DNS rebinding) is caught too.
#[derive(Debug, Clone)]
pub struct PublicOnlyResolver {
    allowed: PrivateAllowed,
}

impl PublicOnlyResolver {
    /// A resolver allowing `allowed` on private addresses.
    pub fn new(allowed: PrivateAllowed) -> Self {
        PublicOnlyResolver { allowed }
    }
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allowed = self.allowed.allows_name(&host);
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed && !addresses.iter().all(|a| is_public(&a.ip())) {
                return Err(format!(
                    "{host} resolves to a private or local address this runner does not reach for a registry"
                )
                .into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
