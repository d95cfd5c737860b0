//! Which addresses a hook may connect to, judged after DNS resolution: the DNS
//! resolver given to the HTTP client drops the refused ones, so a host name that
//! resolves (or rebinds) to loopback or a metadata service is never connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is refused for a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Loopback,
    LinkLocal,
    /// `0.0.0.0/8` and `::`; connecting to them reaches this host.
    Unspecified,
    Multicast,
    Broadcast,
    /// A cloud metadata address outside the link-local range (AWS's IPv6 one,
    /// Alibaba's in 100.64/10).
    Metadata,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link-local",
            Refusal::Unspecified => "unspecified",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Metadata => "cloud metadata",
        }
    }
}

const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

/// Why `ip` may not be connected to through a host name; None when it may. Private
/// ranges (RFC 1918, IPv6 unique local) are allowed: cluster services live there.
pub fn refused(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(a: Ipv4Addr) -> Option<Refusal> {
    let o = a.octets();
    if o[0] == 0 {
        Some(Refusal::Unspecified)
    } else if a.is_loopback() {
        Some(Refusal::Loopback)
    } else if a.is_link_local() {
        Some(Refusal::LinkLocal)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else if a.is_broadcast() {
        Some(Refusal::Broadcast)
    } else if a == ALIBABA_METADATA {
        Some(Refusal::Metadata)
    } else {
        None
    }
}

fn refused_v6(a: Ipv6Addr) -> Option<Refusal> {
    // An IPv4 address dressed as IPv6 reaches the IPv4 host: `::ffff:127.0.0.1` is
    // loopback on a dual-stack socket, and the NAT64 prefix translates to the embedded
    // address.
    if let Some(v4) = embedded_v4(a) {
        return refused_v4(v4);
    }
    let s = a.segments();
    if a.is_unspecified() {
        Some(Refusal::Unspecified)
    } else if a.is_loopback() {
        Some(Refusal::Loopback)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some(Refusal::LinkLocal)
    } else if a.is_multicast() {
        Some(Refusal::Multicast)
    } else if a == AWS_METADATA_V6 {
        Some(Refusal::Metadata)
    } else {
        None
    }
}

/// The IPv4 address inside a v4-mapped (`::ffff:0:0/96`) or well-known NAT64
/// (`64:ff9b::/96`) address.
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = a.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let o = a.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// Addresses no allow-list entry may name even as an IP literal: nothing serves there.
pub fn never_a_server(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    matches!(
        refused(ip),
        Some(Refusal::Unspecified | Refusal::Multicast | Refusal::Broadcast)
    )
}

/// A host name resolved only to refused addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRefused {
    pub ip: IpAddr,
    pub why: Refusal,
}

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resolves to {} ({})", self.ip, self.why.as_str())
    }
}

impl std::error::Error for AddressRefused {}

/// The allowed addresses among `addrs` (a name that has both kinds is used through
/// its allowed ones only), or the first refusal when only refused ones were given.
pub fn filter(
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, AddressRefused> {
    let mut first_refusal = None;
    let mut kept = Vec::new();
    for a in addrs {
        match refused(a.ip()) {
            None => kept.push(a),
            Some(why) => {
                first_refusal.get_or_insert(AddressRefused { ip: a.ip(), why });
            }
        }
    }
    match first_refusal {
        Some(r) if kept.is_empty() => Err(r),
        _ => Ok(kept),
    }
}

/// Fixed answers for names, consulted before the system resolver; only tests set
/// them, to point a name at an address no DNS here would give.
pub type Hosts = Arc<Vec<(String, Vec<IpAddr>)>>;

/// The HTTP client's resolver: the system's (`getaddrinfo` on tokio's blocking
/// pool, as reqwest's default does), then [`filter`]. IP-literal URLs never reach a
/// resolver; the allow-list decides those alone.
pub struct CheckedResolver {
    pub hosts: Hosts,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let fixed = self
            .hosts
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&host))
            .map(|(_, ips)| ips.clone());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match fixed {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            // The refusal travels up the client's error chain as itself, so the
            // caller tells it from a DNS failure by downcasting.
            let kept = filter(addrs)?;
            if kept.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "resolves to no address",
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
