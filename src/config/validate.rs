//! From the raw file to the typed `Config`, one section at a time; every problem is
//! recorded under its key and validation goes on, so one run reports them all.

use super::raw::{RawClient, RawConfig, RawHooks, RawLog, RawServer, RawSigning, RawUpstream};
use super::*;

/// Where problems go: `(key, message)`.
pub(super) type Err<'a> = &'a mut dyn FnMut(&str, String);

pub(super) fn validate(
    raw: RawConfig,
    base: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Config> {
    let start = errors.len();
    let mut err = |key: &str, msg: String| errors.push(ConfigError::new(key, msg));
    let routes = crate::routes::Routes::new(
        &raw.upstream.token_path,
        &raw.server.jwks_path,
        &raw.server.discovery_path,
    );
    let server = server(&raw.server, &mut err);
    let upstream = upstream(&raw.upstream, &mut err);
    let public_url = server.as_ref().map(|s| &s.public_url);
    let signing = signing(&raw.signing, base, public_url, &mut err);
    let hooks = HooksConfig::from_raw(&raw.hooks, base, &mut err);
    let log = log(&raw.log, &mut err);
    let clients = clients(raw.clients);
    if errors.len() > start {
        return None;
    }
    Some(Config {
        routes,
        server: server?,
        upstream: upstream?,
        signing: signing?,
        hooks,
        log: log?,
        clients,
    })
}

/// Every string value (in a list too) that still starts with [`PLACEHOLDER`], named
/// by its key as validation names it (`signing.keys[0]`).
pub(super) fn placeholders(doc: &toml::Table) -> Vec<ConfigError> {
    fn walk(v: &toml::Value, key: String, out: &mut Vec<ConfigError>) {
        match v {
            toml::Value::String(s) => {
                if let Some(rest) = s.strip_prefix(PLACEHOLDER) {
                    let what = rest.trim_start_matches([':', ' ']).trim();
                    let what = if what.is_empty() { "fill it in" } else { what };
                    out.push(ConfigError::new(
                        key,
                        format!("placeholder left by tokenhook import: {what}"),
                    ));
                }
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{key}[{i}]"), out);
                }
            }
            toml::Value::Table(t) => {
                for (k, item) in t {
                    let sub = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    walk(item, sub, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&toml::Value::Table(doc.clone()), String::new(), &mut out);
    out
}

/// `0` where a positive number is required.
fn positive(values: &[(&str, u64)], err: Err) {
    for (key, v) in values {
        if *v == 0 {
            err(key, "must be greater than 0".into());
        }
    }
}

fn server(raw: &RawServer, err: Err) -> Option<ServerConfig> {
    let listen = parse_addr(&raw.listen, "server.listen", err);
    let admin_listen = parse_addr(&raw.admin_listen, "server.admin_listen", err);
    if let (Some(a), Some(b)) = (listen, admin_listen)
        && a == b
    {
        err(
            "server.admin_listen",
            format!("must differ from server.listen ({a})"),
        );
    }
    let public_url = match &raw.public_url {
        Some(u) => parse_url(u, "server.public_url", false, err),
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
    check_path(&raw.jwks_path, "server.jwks_path", err);
    check_path(&raw.discovery_path, "server.discovery_path", err);
    let threads = raw.threads.unwrap_or_else(default_parallelism);
    if threads == 0 {
        err("server.threads", "must be at least 1".into());
    }
    positive(
        &[
            ("server.read_timeout_ms", raw.read_timeout_ms),
            ("server.idle_timeout_ms", raw.idle_timeout_ms),
            ("server.max_connections", raw.max_connections as u64),
        ],
        err,
    );
    let mut trusted_proxies = Vec::new();
    for (i, p) in raw.trusted_proxies.iter().enumerate() {
        match p.parse() {
            Ok(c) => trusted_proxies.push(c),
            Err(m) => err(&format!("server.trusted_proxies[{i}]"), m),
        }
    }
    Some(ServerConfig {
        listen: listen?,
        admin_listen: admin_listen?,
        public_url: public_url?,
        jwks_path: raw.jwks_path.clone(),
        discovery_path: raw.discovery_path.clone(),
        jwks_max_age: Duration::from_secs(raw.jwks_max_age_seconds),
        threads,
        grace_period: Duration::from_secs(raw.grace_period_seconds),
        drain_delay: Duration::from_secs(raw.drain_delay_seconds),
        read_timeout: Duration::from_millis(raw.read_timeout_ms),
        idle_timeout: Duration::from_millis(raw.idle_timeout_ms),
        max_connections: raw.max_connections,
        trusted_proxies,
    })
}

fn upstream(raw: &RawUpstream, err: Err) -> Option<UpstreamConfig> {
    let url = match &raw.url {
        Some(u) => parse_url(u, "upstream.url", true, err),
        None => {
            err(
                "upstream.url",
                "required: the IdP's base URL, e.g. \"http://127.0.0.1:3000\"".into(),
            );
            None
        }
    };
    let jwks_url = match (&raw.jwks_url, &url) {
        (Some(u), _) => parse_url(u, "upstream.jwks_url", true, err),
        (None, Some(base_url)) => base_url.join("/.well-known/jwks.json").ok(),
        (None, None) => None,
    };
    let address = url.as_ref().and_then(|u| resolve(u, "upstream.url", err));
    let jwks_address = jwks_url
        .as_ref()
        .and_then(|u| resolve(u, "upstream.jwks_url", err));
    check_path(&raw.token_path, "upstream.token_path", err);
    check_path(&raw.discovery_path, "upstream.discovery_path", err);
    if raw.algorithms.is_empty() {
        err(
            "upstream.algorithms",
            "must name at least one algorithm".into(),
        );
    }
    let mut algorithms = Vec::new();
    for (i, a) in raw.algorithms.iter().enumerate() {
        match parse_alg(a, UPSTREAM_ALGORITHMS) {
            Ok(alg) => algorithms.push(alg),
            Err(m) => err(&format!("upstream.algorithms[{i}]"), m),
        }
    }
    positive(
        &[
            ("upstream.connect_timeout_ms", raw.connect_timeout_ms),
            ("upstream.timeout_ms", raw.timeout_ms),
            ("upstream.max_body_bytes", raw.max_body_bytes as u64),
            ("upstream.jwks_refresh_seconds", raw.jwks_refresh_seconds),
        ],
        err,
    );
    if raw.issuer.as_deref() == Some("") {
        err(
            "upstream.issuer",
            "must not be empty; leave it out to take the discovery document's issuer".into(),
        );
    }
    let url = url?;
    Some(UpstreamConfig {
        authority: authority(&url),
        url,
        address: address?,
        token_path: raw.token_path.clone(),
        jwks_url: jwks_url?,
        jwks_address: jwks_address?,
        discovery_path: raw.discovery_path.clone(),
        issuer: raw.issuer.clone(),
        algorithms,
        connect_timeout: Duration::from_millis(raw.connect_timeout_ms),
        timeout: Duration::from_millis(raw.timeout_ms),
        max_body_bytes: raw.max_body_bytes,
        leeway_seconds: raw.leeway_seconds,
        jwks_refresh: Duration::from_secs(raw.jwks_refresh_seconds),
        jwks_min_refresh: Duration::from_secs(raw.jwks_min_refresh_seconds),
    })
}

/// `signing.keys` (the first signs, the rest stay published) or explicit states.
fn signing(
    r: &RawSigning,
    base: &Path,
    public_url: Option<&Url>,
    err: Err,
) -> Option<SigningConfig> {
    let mut keys: Vec<KeyRef> = Vec::new();
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
    let algorithm = match parse_alg(&r.algorithm, SIGNING_ALGORITHMS) {
        Ok(a) => Some(a),
        Err(m) => {
            err("signing.algorithm", m);
            None
        }
    };
    let issuer = match r.issuer.as_deref() {
        Some("upstream") => Some(IssuerMode::Upstream),
        Some("") => {
            err("signing.issuer", "must not be empty".into());
            None
        }
        Some(s) => Some(IssuerMode::Fixed(s.to_owned())),
        None => public_url.map(|u| IssuerMode::Fixed(u.as_str().trim_end_matches('/').to_owned())),
    };
    Some(SigningConfig {
        keys,
        algorithm: algorithm?,
        issuer: issuer?,
        reload_interval: Duration::from_millis(r.reload_interval_ms),
    })
}

impl HooksConfig {
    /// The `[hooks]` section; the one path that builds it, for the sidecar and for tools
    /// that run a hook without a config file alike. `dir` is taken from `base`.
    pub(super) fn from_raw(raw: &RawHooks, base: &Path, err: Err) -> HooksConfig {
        let dir = base.join(&raw.dir);
        if !dir.is_dir() {
            err("hooks.dir", format!("no such folder: {}", raw.dir));
        }
        let workers = raw.workers.unwrap_or_else(default_parallelism);
        if workers == 0 {
            err("hooks.workers", "must be at least 1".into());
        }
        if raw.memory_limit_mb != 0 && !(64..=1024 * 1024).contains(&raw.memory_limit_mb) {
            err(
                "hooks.memory_limit_mb",
                "must be 0 (unlimited) or from 64 to 1048576".into(),
            );
        }
        positive(
            &[
                ("hooks.timeout_ms", raw.timeout_ms),
                ("hooks.flow_timeout_ms", raw.flow_timeout_ms),
                ("hooks.queue", raw.queue as u64),
                ("hooks.loop_iteration_limit", raw.loop_iteration_limit),
                ("hooks.recursion_limit", raw.recursion_limit as u64),
            ],
            err,
        );
        let fetch_roots = match &raw.fetch_ca_file {
            None => Vec::new(),
            Some(file) => std::fs::read(base.join(file))
                .map_err(|e| format!("{file}: {e}"))
                .and_then(|pem| crate::egress::read_roots(&pem).map_err(|e| format!("{file}: {e}")))
                .unwrap_or_else(|e| {
                    err("hooks.fetch_ca_file", e);
                    Vec::new()
                }),
        };
        HooksConfig {
            dir,
            timeout: Duration::from_millis(raw.timeout_ms),
            flow_timeout: Duration::from_millis(raw.flow_timeout_ms),
            workers,
            queue: raw.queue,
            allow_unnamespaced_claims: raw.allow_unnamespaced_claims,
            memory_limit_bytes: raw.memory_limit_mb * 1024 * 1024,
            loop_iterations: raw.loop_iteration_limit,
            recursion_limit: raw.recursion_limit,
            kill_grace: Duration::from_millis(100),
            reload_interval: Duration::from_millis(raw.reload_interval_ms),
            max_stuck_workers: raw.max_stuck_workers.unwrap_or(workers * 2),
            fetch_roots,
        }
    }
}

fn log(raw: &RawLog, err: Err) -> Option<LogConfig> {
    let format = match raw.format.as_str() {
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
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.level) {
        err("log.level", format!("not a valid filter: {e}"));
    }
    Some(LogConfig {
        format,
        level: raw.level.clone(),
    })
}

fn clients(raw: std::collections::BTreeMap<String, RawClient>) -> HashMap<String, ClientInfo> {
    raw.into_iter()
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
        .collect()
}
