//! The client's address as hooks see it (`context.ip`, `event.request.ip`): the TCP
//! peer, unless that peer is a proxy the operator trusts (`server.trusted_proxies`);
//! then the address that proxy reported. IP allow-list hooks depend on it, so an
//! address a client wrote into a header itself is never taken.

use std::net::IpAddr;

/// An address block in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr {
            addr: canonical(addr),
            prefix,
        })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (ip, ip_width)) = (bits(self.addr), bits(canonical(ip)));
        if width != ip_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

/// An IPv4 address a dual-stack listener reports as `::ffff:a.b.c.d` compares as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of `Forwarded` (`for=192.0.2.1`, `for="[2001:db8::1]:4711"`) or of
/// `X-Forwarded-For` (`192.0.2.1`, `[2001:db8::1]:80`, `192.0.2.1:80`).
fn hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// The client's address for a request from `peer` with the given `X-Forwarded-For` and
/// `Forwarded` header values (every occurrence, in order). When `peer` is trusted, the
/// hops are read from the right (nearest proxy first) and the first one not trusted is
/// the client; `X-Forwarded-For` is read when present, else `Forwarded`'s `for=`. A hop
/// that cannot be read ends the walk at the last address read, since everything to its
/// left could have been written by anyone.
pub fn client_ip(peer: IpAddr, xff: &[&str], forwarded: &[&str], trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = if !xff.is_empty() {
        xff.iter().flat_map(|v| v.split(',')).collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then_some(v)
                    })
                    .unwrap_or("")
            })
            .collect()
    };
    let mut client = peer;
    for h in hops.iter().rev() {
        let Some(ip) = hop(h).map(canonical) else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!c.contains(ip("::1")));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert!(one.contains(ip("2001:db8::1")) && !one.contains(ip("2001:db8::2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "not-an-ip", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    // Breaks if a client that is not behind a trusted proxy could choose its address
    // with a header, or if the walk took the left-most (client-written) entry.
    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = cidrs(&["127.0.0.1", "10.0.0.0/8"]);
        let xff = ["198.51.100.7, 10.1.1.1"];
        assert_eq!(
            client_ip(ip("203.0.113.5"), &xff, &[], &trusted),
            ip("203.0.113.5"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &xff, &[], &trusted),
            ip("198.51.100.7")
        );
        // A client that prepends a fake hop only moves itself further left.
        let spoofed = ["1.2.3.4, 198.51.100.7, 10.1.1.1"];
        assert_eq!(
            client_ip(ip("127.0.0.1"), &spoofed, &[], &trusted),
            ip("198.51.100.7")
        );
        // Only the nearest proxy trusted: its report is the client.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &xff, &[], &cidrs(&["127.0.0.1"])),
            ip("10.1.1.1")
        );
        // Several header lines count as one list, in order.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &["198.51.100.7", "10.1.1.1"],
                &[],
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &[], &[], &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &["garbage, 10.1.1.1"], &[], &trusted),
            ip("10.1.1.1"),
            "an unreadable hop ends the walk"
        );
    }

    #[test]
    fn forwarded_header_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = cidrs(&["127.0.0.1"]);
        let fwd = [r#"for=198.51.100.7;proto=https, for="[2001:db8::1]:4711""#];
        assert_eq!(
            client_ip(ip("127.0.0.1"), &[], &fwd, &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), &[], &["for=192.0.2.60:8080"], &trusted),
            ip("192.0.2.60")
        );
    }
}
