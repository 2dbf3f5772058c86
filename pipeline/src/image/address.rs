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

/// Whether `host` resolves (now) to public addresses only, and to at least one. A name that
/// resolves differently at connect time (DNS rebinding) is not covered.
pub async fn resolves_public(host: &str, port: u16) -> std::io::Result<bool> {
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await?
        .map(|a| a.ip())
        .collect();
    Ok(!addresses.is_empty() && addresses.iter().all(is_public))
}
