//! Typed configuration: TOML file + `TOKENHOOK_*` environment overrides, validated with
//! every problem collected and named by its key before anything starts.

mod env;
pub mod raw;

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

#[derive(Debug, Clone)]
pub struct HooksConfig {
    pub dir: PathBuf,
    pub timeout: Duration,
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
}

impl HooksConfig {
    /// The defaults, for tools (the local runner) that run a hook without a config file.
    pub fn defaults(dir: PathBuf) -> Self {
        let raw = raw::RawHooks::default();
        HooksConfig {
            dir,
            timeout: Duration::from_millis(raw.timeout_ms),
            workers: 1,
            queue: raw.queue,
            allow_unnamespaced_claims: raw.allow_unnamespaced_claims,
            memory_limit_bytes: raw.memory_limit_mb * 1024 * 1024,
            loop_iterations: raw.loop_iteration_limit,
            recursion_limit: raw.recursion_limit,
            kill_grace: Duration::from_millis(100),
            reload_interval: Duration::from_millis(raw.reload_interval_ms),
            max_stuck_workers: 2,
        }
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
        let raw = parse_collecting(doc, &mut errors);
        let config = validate(raw, base, &mut errors);
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
        match &self.signing.issuer {
            IssuerMode::Fixed(s) => Some(s),
            IssuerMode::Upstream => upstream_iss,
        }
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

fn validate(raw: RawConfig, base: &Path, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let start = errors.len();
    let mut err = |key: &str, msg: String| errors.push(ConfigError::new(key, msg));

    let listen = parse_addr(&raw.server.listen, "server.listen", &mut err);
    let admin_listen = parse_addr(&raw.server.admin_listen, "server.admin_listen", &mut err);
    if let (Some(a), Some(b)) = (listen, admin_listen)
        && a == b
    {
        err(
            "server.admin_listen",
            format!("must differ from server.listen ({a})"),
        );
    }
    let public_url = match &raw.server.public_url {
        Some(u) => parse_url(u, "server.public_url", false, &mut err),
        None => listen.and_then(|a| {
            let url = if a.ip().is_unspecified() {
                format!("http://localhost:{}", a.port())
            } else {
                // SocketAddr's Display brackets IPv6 addresses, as URLs need.
                format!("http://{a}")
            };
            let parsed = Url::parse(&url).ok();
            if parsed.is_none() {
                err(
                    "server.public_url",
                    format!("cannot derive it from server.listen ({a}); set it"),
                );
            }
            parsed
        }),
    };
    for (key, p) in [
        ("server.jwks_path", &raw.server.jwks_path),
        ("server.discovery_path", &raw.server.discovery_path),
        ("upstream.token_path", &raw.upstream.token_path),
        ("upstream.discovery_path", &raw.upstream.discovery_path),
    ] {
        check_path(p, key, &mut err);
    }
    let threads = raw.server.threads.unwrap_or_else(default_parallelism);
    if threads == 0 {
        err("server.threads", "must be at least 1".into());
    }
    for (key, v) in [
        ("server.read_timeout_ms", raw.server.read_timeout_ms),
        ("server.idle_timeout_ms", raw.server.idle_timeout_ms),
        ("server.max_connections", raw.server.max_connections as u64),
    ] {
        if v == 0 {
            err(key, "must be at least 1".into());
        }
    }

    let url = match &raw.upstream.url {
        Some(u) => parse_url(u, "upstream.url", true, &mut err),
        None => {
            err(
                "upstream.url",
                "required: the IdP's base URL, e.g. \"http://127.0.0.1:3000\"".into(),
            );
            None
        }
    };
    let jwks_url = match (&raw.upstream.jwks_url, &url) {
        (Some(u), _) => parse_url(u, "upstream.jwks_url", true, &mut err),
        (None, Some(base_url)) => base_url.join("/.well-known/jwks.json").ok(),
        (None, None) => None,
    };
    let address = url
        .as_ref()
        .and_then(|u| resolve(u, "upstream.url", &mut err));
    let jwks_address = jwks_url
        .as_ref()
        .and_then(|u| resolve(u, "upstream.jwks_url", &mut err));
    let mut algorithms = Vec::new();
    if raw.upstream.algorithms.is_empty() {
        err(
            "upstream.algorithms",
            "must name at least one algorithm".into(),
        );
    }
    for (i, a) in raw.upstream.algorithms.iter().enumerate() {
        match parse_alg(a, UPSTREAM_ALGORITHMS) {
            Ok(alg) => algorithms.push(alg),
            Err(m) => err(&format!("upstream.algorithms[{i}]"), m),
        }
    }
    for (key, v) in [
        (
            "upstream.connect_timeout_ms",
            raw.upstream.connect_timeout_ms,
        ),
        ("upstream.timeout_ms", raw.upstream.timeout_ms),
        ("hooks.timeout_ms", raw.hooks.timeout_ms),
        (
            "upstream.max_body_bytes",
            raw.upstream.max_body_bytes as u64,
        ),
        ("hooks.queue", raw.hooks.queue as u64),
        ("hooks.loop_iteration_limit", raw.hooks.loop_iteration_limit),
        (
            "upstream.jwks_refresh_seconds",
            raw.upstream.jwks_refresh_seconds,
        ),
        ("hooks.recursion_limit", raw.hooks.recursion_limit as u64),
    ] {
        if v == 0 {
            err(key, "must be greater than 0".into());
        }
    }

    // `signing.keys` (first signs, the rest stay published) or explicit states.
    let mut keys: Vec<KeyRef> = Vec::new();
    let r = &raw.signing;
    match (&r.active, r.keys.is_empty()) {
        (Some(_), false) => err(
            "signing.keys",
            "give either signing.keys or signing.active (with next/retired), not both".into(),
        ),
        (None, true) => err(
            "signing.keys",
            "required: at least one private key file (PKCS#8 PEM); make one with `tokenhook keys generate`".into(),
        ),
        (None, false) => {
            for (i, k) in r.keys.iter().enumerate() {
                let state = if i == 0 { KeyState::Active } else { KeyState::Retired };
                keys.push(KeyRef { path: base.join(k), state, key: format!("signing.keys[{i}]") });
            }
        }
        (Some(a), true) => {
            keys.push(KeyRef { path: base.join(a), state: KeyState::Active, key: "signing.active".into() });
        }
    }
    if r.active.is_none() && !(r.next.is_empty() && r.retired.is_empty()) && !r.keys.is_empty() {
        err(
            "signing.next",
            "next and retired keys go with signing.active, not signing.keys".into(),
        );
    }
    for (list, state, name) in [
        (&r.next, KeyState::Next, "next"),
        (&r.retired, KeyState::Retired, "retired"),
    ] {
        for (i, k) in list.iter().enumerate() {
            keys.push(KeyRef {
                path: base.join(k),
                state,
                key: format!("signing.{name}[{i}]"),
            });
        }
    }
    let named: Vec<&String> = r
        .keys
        .iter()
        .chain(r.active.iter())
        .chain(&r.next)
        .chain(&r.retired)
        .collect();
    for (k, shown) in keys.iter().zip(named) {
        if !k.path.is_file() {
            err(&k.key, format!("no such file: {shown}"));
        }
    }
    let algorithm = match parse_alg(&raw.signing.algorithm, SIGNING_ALGORITHMS) {
        Ok(a) => Some(a),
        Err(m) => {
            err("signing.algorithm", m);
            None
        }
    };
    let issuer = match raw.signing.issuer.as_deref() {
        Some("upstream") => Some(IssuerMode::Upstream),
        Some("") => {
            err("signing.issuer", "must not be empty".into());
            None
        }
        Some(s) => Some(IssuerMode::Fixed(s.to_owned())),
        None => public_url
            .as_ref()
            .map(|u| IssuerMode::Fixed(u.as_str().trim_end_matches('/').to_owned())),
    };

    let dir = base.join(&raw.hooks.dir);
    if !dir.is_dir() {
        err("hooks.dir", format!("no such folder: {}", raw.hooks.dir));
    }
    let workers = raw.hooks.workers.unwrap_or_else(default_parallelism);
    if workers == 0 {
        err("hooks.workers", "must be at least 1".into());
    }
    if raw.hooks.memory_limit_mb != 0 && !(64..=1024 * 1024).contains(&raw.hooks.memory_limit_mb) {
        err(
            "hooks.memory_limit_mb",
            "must be 0 (unlimited) or from 64 to 1048576".into(),
        );
    }

    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            err(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            );
            LogFormat::Text
        }
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        err("log.level", format!("not a valid filter: {e}"));
    }

    let clients = raw
        .clients
        .into_iter()
        .map(|(id, c)| {
            (
                id,
                ClientInfo {
                    name: c.name,
                    tenant: c.tenant,
                    metadata: c.metadata,
                },
            )
        })
        .collect();

    if errors.len() > start {
        return None;
    }
    Some(Config {
        server: ServerConfig {
            listen: listen?,
            admin_listen: admin_listen?,
            public_url: public_url?,
            jwks_path: raw.server.jwks_path,
            discovery_path: raw.server.discovery_path,
            jwks_max_age: Duration::from_secs(raw.server.jwks_max_age_seconds),
            threads,
            grace_period: Duration::from_secs(raw.server.grace_period_seconds),
            drain_delay: Duration::from_secs(raw.server.drain_delay_seconds),
            read_timeout: Duration::from_millis(raw.server.read_timeout_ms),
            idle_timeout: Duration::from_millis(raw.server.idle_timeout_ms),
            max_connections: raw.server.max_connections,
        },
        upstream: {
            let url = url?;
            UpstreamConfig {
                authority: authority(&url),
                url,
                address: address?,
                token_path: raw.upstream.token_path,
                jwks_url: jwks_url?,
                jwks_address: jwks_address?,
                discovery_path: raw.upstream.discovery_path,
                algorithms,
                connect_timeout: Duration::from_millis(raw.upstream.connect_timeout_ms),
                timeout: Duration::from_millis(raw.upstream.timeout_ms),
                max_body_bytes: raw.upstream.max_body_bytes,
                leeway_seconds: raw.upstream.leeway_seconds,
                jwks_refresh: Duration::from_secs(raw.upstream.jwks_refresh_seconds),
                jwks_min_refresh: Duration::from_secs(raw.upstream.jwks_min_refresh_seconds),
            }
        },
        signing: SigningConfig {
            keys,
            algorithm: algorithm?,
            issuer: issuer?,
            reload_interval: Duration::from_millis(raw.signing.reload_interval_ms),
        },
        hooks: HooksConfig {
            dir,
            timeout: Duration::from_millis(raw.hooks.timeout_ms),
            workers,
            queue: raw.hooks.queue,
            allow_unnamespaced_claims: raw.hooks.allow_unnamespaced_claims,
            memory_limit_bytes: raw.hooks.memory_limit_mb * 1024 * 1024,
            loop_iterations: raw.hooks.loop_iteration_limit,
            recursion_limit: raw.hooks.recursion_limit,
            kill_grace: Duration::from_millis(100),
            reload_interval: Duration::from_millis(raw.hooks.reload_interval_ms),
            max_stuck_workers: raw.hooks.max_stuck_workers.unwrap_or(workers * 2),
        },
        log: LogConfig {
            format,
            level: raw.log.level,
        },
        clients,
    })
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

fn parse_addr(s: &str, key: &str, err: &mut impl FnMut(&str, String)) -> Option<SocketAddr> {
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

fn parse_url(
    s: &str,
    key: &str,
    upstream: bool,
    err: &mut impl FnMut(&str, String),
) -> Option<Url> {
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

fn resolve(url: &Url, key: &str, err: &mut impl FnMut(&str, String)) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
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

fn check_path(p: &str, key: &str, err: &mut impl FnMut(&str, String)) {
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
