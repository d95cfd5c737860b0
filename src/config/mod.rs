//! Typed configuration: TOML file + `TOKENHOOK_*` environment overrides, validated with
//! every problem collected and named by its key before anything starts.

mod env;
pub mod raw;
mod validate;

use jsonwebtoken::Algorithm;
use raw::RawConfig;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// One problem in the configuration, named by the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Starts a value left for the user to fill (`tokenhook import` writes them): any
/// config value that still starts with it is reported as such, in place of whatever
/// else its key would fail (`upstream.url: placeholder left by tokenhook import: …`).
pub const PLACEHOLDER: &str = "REPLACE-ME";

/// All problems found in one pass; printed one per line by `check` and `serve`.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated configuration. Paths are absolute (relative ones are taken from the
/// config file's folder, so the sidecar does not depend on its working directory).
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// The paths the sidecar answers itself, normalised once (`crate::routes`).
    pub routes: crate::routes::Routes,
    pub upstream: UpstreamConfig,
    pub signing: SigningConfig,
    pub hooks: HooksConfig,
    pub log: LogConfig,
    pub clients: HashMap<String, ClientInfo>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub public_url: Url,
    pub jwks_path: String,
    pub discovery_path: String,
    pub jwks_max_age: Duration,
    pub threads: usize,
    pub grace_period: Duration,
    /// After SIGTERM, how long readiness fails while the listeners still accept, so load
    /// balancers stop sending traffic before they close.
    pub drain_delay: Duration,
    /// `server.read_timeout_ms`: the whole of a request's head and body must arrive
    /// within it, counted from its first byte (and a new connection's first request must
    /// start within it). Defaults to 5000 ms.
    pub read_timeout: Duration,
    /// `server.idle_timeout_ms`: a keep-alive connection with no request for this long
    /// is closed. Defaults to 60000 ms.
    pub idle_timeout: Duration,
    /// `server.max_connections`: open client connections on the proxy listener; one
    /// more is answered 503 and closed. Defaults to 10000.
    pub max_connections: usize,
    /// `server.trusted_proxies`: peers whose forwarding headers name the client
    /// (`crate::client_ip`). Defaults to none.
    pub trusted_proxies: Vec<crate::client_ip::Cidr>,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: Url,
    /// `host:port` of the IdP, resolved by pingora's connector.
    pub address: SocketAddr,
    /// The Host header value used for the sidecar's own requests (JWKS, discovery).
    pub authority: String,
    pub token_path: String,
    pub jwks_url: Url,
    pub jwks_address: SocketAddr,
    pub discovery_path: String,
    /// The `iss` the IdP's tokens must carry (`upstream.issuer`). Defaults to None: the
    /// `issuer` of the IdP's discovery document, learned at the first JWKS fetch.
    pub issuer: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_body_bytes: usize,
    pub leeway_seconds: u64,
    pub jwks_refresh: Duration,
    pub jwks_min_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// Every key with its state; exactly one is active.
    pub keys: Vec<KeyRef>,
    pub algorithm: Algorithm,
    pub issuer: IssuerMode,
    /// How often key files are checked for changes; zero disables reloading.
    pub reload_interval: Duration,
}

/// A key file and its role in rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub path: PathBuf,
    pub state: KeyState,
    /// How config and errors name it (`signing.next[0]`).
    pub key: String,
}

/// Published and signing (`Active`), published ahead of use (`Next`), or published so
/// tokens it signed keep verifying until they expire (`Retired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// What the re-signed token's `iss` becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerMode {
    Fixed(String),
    /// Keep the IdP's `iss` (config value `"upstream"`).
    Upstream,
}

impl IssuerMode {
    /// The token's `iss` for a given upstream `iss`.
    pub fn issuer_for<'a>(&'a self, upstream_iss: Option<&'a str>) -> Option<&'a str> {
        match self {
            IssuerMode::Fixed(s) => Some(s),
            IssuerMode::Upstream => upstream_iss,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub dir: PathBuf,
    pub timeout: Duration,
    /// `hooks.flow_timeout_ms`: the Hook and every bound Action of one request together
    /// (Auth0: 20 s per flow).
    pub flow_timeout: Duration,
    pub workers: usize,
    pub queue: usize,
    pub allow_unnamespaced_claims: bool,
    /// RLIMIT_AS of each worker process; 0 = unlimited.
    pub memory_limit_bytes: u64,
    pub loop_iterations: u64,
    pub recursion_limit: usize,
    /// How long past a hook's limit the pool waits before killing its worker.
    pub kill_grace: Duration,
    /// How often the hooks folder is checked for changes; zero disables hot reload.
    pub reload_interval: Duration,
    /// How many stuck calls may be set aside (their workers replaced) at once.
    pub max_stuck_workers: usize,
    /// `hooks.fetch_ca_file`: CA certificates hooks' `fetch` trusts besides the bundled
    /// roots, read at startup.
    pub fetch_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl HooksConfig {
    /// The defaults with one worker, for tools (the local runner) that run a hook
    /// without a config file; built by the same path as a config file's `[hooks]`.
    pub fn defaults(dir: PathBuf) -> Self {
        let raw = raw::RawHooks {
            workers: Some(1),
            ..Default::default()
        };
        // The only check that can fail is that the folder exists, which a tool checks
        // itself.
        let mut ignore = |_: &str, _: String| {};
        let mut cfg = Self::from_raw(&raw, Path::new("."), &mut ignore);
        cfg.dir = dir;
        cfg
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// A registered client: what the hook sees as `client`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Algorithms the sidecar signs with.
pub const SIGNING_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Asymmetric algorithms accepted from the IdP; HMAC and `none` never are, since a
/// shared secret would let anyone holding it mint tokens we then re-sign.
const UPSTREAM_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Config {
    /// Reads `path`, applies `TOKENHOOK_*` variables from `vars`, and validates. Does not
    /// touch keys or hooks beyond checking their paths: see `crate::app::check`.
    pub fn load(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "config",
                format!("cannot read {}: {e}", path.display()),
            )])
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_toml(&text, &base, vars)
    }

    /// As [`Config::load`], from text; relative paths are resolved against `base`.
    pub fn from_toml(
        text: &str,
        base: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut doc: toml::Table = match text.parse() {
            Ok(d) => d,
            Err(e) => {
                let e: toml::de::Error = e;
                return Err(ConfigErrors(vec![ConfigError::new(
                    "config",
                    format!("not valid TOML: {}", e.message()),
                )]));
            }
        };
        env::apply(&mut doc, vars, &mut errors);
        let placeholders = validate::placeholders(&doc);
        let raw = parse_collecting(doc, &mut errors);
        let config = validate::validate(raw, base, &mut errors);
        if !placeholders.is_empty() {
            // Its key also fails its own checks ("no such file: REPLACE-ME…"), which
            // would only restate the placeholder less clearly.
            errors.retain(|e| !placeholders.iter().any(|p| p.key == e.key));
            errors.splice(0..0, placeholders);
        }
        match config {
            Some(c) if errors.is_empty() => Ok(c),
            _ if errors.is_empty() => Err(ConfigErrors(vec![ConfigError::new(
                "config",
                "incomplete configuration (a value could not be derived)",
            )])),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// The token's `iss` for a given upstream `iss`.
    pub fn issuer_for<'a>(&'a self, upstream_iss: Option<&'a str>) -> Option<&'a str> {
        self.signing.issuer.issuer_for(upstream_iss)
    }
}

/// Deserializes, and on a bad key records it, drops it and tries again, so one run
/// reports every bad key rather than the first.
fn parse_collecting(mut doc: toml::Table, errors: &mut Vec<ConfigError>) -> RawConfig {
    for _ in 0..256 {
        let value = toml::Value::Table(doc.clone());
        match serde_path_to_error::deserialize::<_, RawConfig>(value) {
            Ok(raw) => return raw,
            Err(e) => {
                let segments: Vec<String> = e
                    .path()
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                        serde_path_to_error::Segment::Seq { .. } => None,
                        _ => None,
                    })
                    .collect();
                let message = e.inner().to_string();
                let message = message.lines().next().unwrap_or("").trim().to_owned();
                let (key_path, msg) = match unknown_field(&message) {
                    Some(field) if segments.last().map(String::as_str) != Some(field) => {
                        let mut p = segments.clone();
                        p.push(field.to_owned());
                        (p, "unknown key".to_owned())
                    }
                    Some(_) => (segments.clone(), "unknown key".to_owned()),
                    None => (segments.clone(), message),
                };
                let shown = if key_path.is_empty() {
                    "config".to_owned()
                } else {
                    key_path.join(".")
                };
                errors.push(ConfigError::new(shown, msg));
                if key_path.is_empty() || !remove_path(&mut doc, &key_path) {
                    return RawConfig::default();
                }
            }
        }
    }
    RawConfig::default()
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

fn remove_path(doc: &mut toml::Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => doc.remove(last).is_some(),
        [first, rest @ ..] => match doc.get_mut(first) {
            Some(toml::Value::Table(t)) => remove_path(t, rest),
            Some(_) => doc.remove(first).is_some(),
            None => false,
        },
    }
}

pub(crate) fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `host[:port]` as sent in a Host header.
pub fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

fn parse_addr(s: &str, key: &str, err: validate::Err) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            err(
                key,
                format!("not an address of the form IP:PORT, got {s:?}"),
            );
            None
        }
    }
}

fn parse_url(s: &str, key: &str, upstream: bool, err: validate::Err) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if u.cannot_be_a_base() || u.host_str().is_none() => {
            err(key, format!("not an absolute URL: {s:?}"));
            None
        }
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            // Never kept: credentials in a URL end up in logs.
            err(key, "must not carry credentials (user:password@)".into());
            None
        }
        Ok(u)
            if upstream
                && key == "upstream.url"
                && (u.path() != "/" || u.query().is_some() || u.fragment().is_some()) =>
        {
            err(
                key,
                format!(
                    "must be the IdP's origin without a path (got path {:?}); set upstream.token_path, upstream.jwks_url and upstream.discovery_path for paths",
                    u.path()
                ),
            );
            None
        }
        Ok(u) if upstream && u.scheme() != "http" => {
            err(
                key,
                format!(
                    "scheme {:?} is not supported: tokenhook talks to the IdP beside it over plain http",
                    u.scheme()
                ),
            );
            None
        }
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            err(key, format!("must be an http or https URL, got {s:?}"));
            None
        }
        Ok(u) => Some(u),
        Err(_) => {
            err(key, format!("not an absolute URL: {s:?}"));
            None
        }
    }
}

thread_local! {
    /// Whether `resolve` may ask the system resolver about host names. Always true but
    /// on a fuzzing thread (`crate::fuzzing`): arbitrary configs must not send DNS
    /// queries nor wait on them, so there only IP literals resolve.
    static NAME_LOOKUPS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Turns host-name lookups in `resolve` off (or back on) for the calling thread.
pub(crate) fn set_name_lookups(on: bool) {
    NAME_LOOKUPS.with(|c| c.set(on));
}

fn resolve(url: &Url, key: &str, err: validate::Err) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if !NAME_LOOKUPS.with(std::cell::Cell::get) && host.parse::<std::net::IpAddr>().is_err() {
        err(key, format!("host {host:?}: name lookups are off here"));
        return None;
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().or_else(|| {
            err(key, format!("host {host:?} resolves to no address"));
            None
        }),
        Err(e) => {
            err(key, format!("cannot resolve host {host:?}: {e}"));
            None
        }
    }
}

fn check_path(p: &str, key: &str, err: validate::Err) {
    if !p.starts_with('/') {
        err(key, format!("must start with '/', got {p:?}"));
    }
}

fn parse_alg(s: &str, allowed: &[Algorithm]) -> Result<Algorithm, String> {
    let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    match s.parse::<Algorithm>() {
        Ok(a) if allowed.contains(&a) => Ok(a),
        _ => Err(format!(
            "unsupported algorithm {s:?}; one of {}",
            names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests;
