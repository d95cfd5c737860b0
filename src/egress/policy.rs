//! A hook's `[hook.NAME.fetch]` table compiled once at load: allow-list entries as
//! normalized origins, limits with their defaults, and the problems of a bad table.

use super::addr;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use url::{Host, Url};

/// The hooks folder's manifest, which problems are keyed by.
const MANIFEST: &str = "hooks.toml";

/// `[hook.NAME.fetch]`: the egress allow-list of one hook (deny by default), compiled
/// and enforced by [`HookEgress`](super::HookEgress). Zero limits are load problems.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FetchPolicy {
    /// Origins (`scheme://host[:port]`, http or https, no path, query or credentials)
    /// the hook may call; scheme, host and port must match exactly. A host name is
    /// reached only through addresses that are not loopback, link-local or the like; an
    /// IP literal is reached as written.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Time limit of one request, redirects included. Defaults to the hook's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest response body read. Defaults to 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Most requests one hook call may make. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
}

/// `max_response_bytes` when the table leaves it out.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// `max_requests` when the table leaves it out.
pub const DEFAULT_MAX_REQUESTS: u32 = 10;

/// `scheme://host:port`, with the default port filled in and the host as the URL
/// parser normalizes it (lower case, punycode, canonical IP forms), so two spellings
/// of one origin compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: Host<String>,
    pub port: u16,
}

impl Origin {
    /// The origin of an http(s) URL; None for any other scheme.
    pub fn of(url: &Url) -> Option<Origin> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        Some(Origin {
            https,
            host: url.host()?.to_owned(),
            port: url.port_or_known_default()?,
        })
    }

    /// The address of an IP-literal origin; None for a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ipv4(a) => Some(IpAddr::V4(a)),
            Host::Ipv6(a) => Some(IpAddr::V6(a)),
            Host::Domain(_) => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let default = if self.https { 443 } else { 80 };
        write!(f, "{scheme}://{}", self.host)?;
        if self.port != default {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// One allow-list entry as written, checked to be a bare origin.
pub fn parse_entry(entry: &str) -> Result<Origin, String> {
    let url = Url::parse(entry).map_err(|e| format!("not an origin ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not allowed; use http or https",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an origin carries no user name or password".into());
    }
    if url.path() != "/" {
        return Err("an origin has no path; give scheme://host[:port]".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an origin has no query or fragment; give scheme://host[:port]".into());
    }
    let origin = Origin::of(&url).ok_or("not an origin")?;
    if let Some(ip) = origin.ip()
        && addr::never_a_server(ip)
    {
        return Err(format!("{ip} is not the address of a server"));
    }
    Ok(origin)
}

/// How an entry is named in a problem: as written, except anything that may be
/// credentials (up to the last `@`), which a config error must not repeat. Done on the
/// text, not the parsed URL, so an entry too broken to parse is masked as well.
fn shown(entry: &str) -> String {
    match entry.rfind('@') {
        Some(at) => {
            let start = entry.find("://").map_or(0, |i| i + 3).min(at);
            format!("{:?}", format!("{}***{}", &entry[..start], &entry[at..]))
        }
        None => format!("{entry:?}"),
    }
}

/// The compiled table.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub allow: Vec<Origin>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
    pub max_requests: u32,
}

/// Compiles `p` for `hook`; every problem is keyed like the manifest's own
/// (`hooks.dir/hooks.toml: hook.NAME.fetch.FIELD`).
pub fn compile(
    hook: &str,
    p: &FetchPolicy,
    default_timeout: Duration,
) -> Result<Compiled, Vec<(String, String)>> {
    let key = |field: &str| format!("hooks.dir/{MANIFEST}: hook.{hook}.fetch.{field}");
    let mut problems = Vec::new();
    let mut allow = Vec::with_capacity(p.allow.len());
    for (i, entry) in p.allow.iter().enumerate() {
        match parse_entry(entry) {
            Ok(o) => allow.push(o),
            Err(why) => problems.push((key("allow"), format!("[{i}] {}: {why}", shown(entry)))),
        }
    }
    let zero = "must be greater than 0".to_owned();
    if p.timeout_ms == Some(0) {
        problems.push((key("timeout_ms"), zero.clone()));
    }
    if p.max_response_bytes == Some(0) {
        problems.push((key("max_response_bytes"), zero.clone()));
    }
    if p.max_requests == Some(0) {
        problems.push((key("max_requests"), zero));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Compiled {
        allow,
        timeout: p
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(default_timeout),
        max_response_bytes: p.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        max_requests: p.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS),
    })
}
