//! `TOKENHOOK_<SECTION>_<KEY>` environment overrides, applied to the parsed TOML before it is typed.

use super::ConfigError;

/// How an environment string becomes a TOML value for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated values.
    List,
}

/// Every key that an environment variable may override. Kept beside the raw structs;
/// a unit test checks each entry is a real field.
pub(crate) const SCHEMA: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Str),
    ("server", "admin_listen", Kind::Str),
    ("server", "public_url", Kind::Str),
    ("server", "jwks_path", Kind::Str),
    ("server", "discovery_path", Kind::Str),
    ("server", "jwks_max_age_seconds", Kind::Int),
    ("server", "threads", Kind::Int),
    ("server", "grace_period_seconds", Kind::Int),
    ("server", "drain_delay_seconds", Kind::Int),
    ("server", "read_timeout_ms", Kind::Int),
    ("server", "idle_timeout_ms", Kind::Int),
    ("server", "max_connections", Kind::Int),
    ("server", "trusted_proxies", Kind::List),
    ("upstream", "url", Kind::Str),
    ("upstream", "token_path", Kind::Str),
    ("upstream", "jwks_url", Kind::Str),
    ("upstream", "discovery_path", Kind::Str),
    ("upstream", "issuer", Kind::Str),
    ("upstream", "algorithms", Kind::List),
    ("upstream", "connect_timeout_ms", Kind::Int),
    ("upstream", "timeout_ms", Kind::Int),
    ("upstream", "max_body_bytes", Kind::Int),
    ("upstream", "leeway_seconds", Kind::Int),
    ("upstream", "jwks_refresh_seconds", Kind::Int),
    ("upstream", "jwks_min_refresh_seconds", Kind::Int),
    ("signing", "keys", Kind::List),
    ("signing", "active", Kind::Str),
    ("signing", "next", Kind::List),
    ("signing", "retired", Kind::List),
    ("signing", "reload_interval_ms", Kind::Int),
    ("signing", "algorithm", Kind::Str),
    ("signing", "issuer", Kind::Str),
    ("hooks", "dir", Kind::Str),
    ("hooks", "timeout_ms", Kind::Int),
    ("hooks", "flow_timeout_ms", Kind::Int),
    ("hooks", "workers", Kind::Int),
    ("hooks", "queue", Kind::Int),
    ("hooks", "allow_unnamespaced_claims", Kind::Bool),
    ("hooks", "memory_limit_mb", Kind::Int),
    ("hooks", "loop_iteration_limit", Kind::Int),
    ("hooks", "recursion_limit", Kind::Int),
    ("hooks", "reload_interval_ms", Kind::Int),
    ("hooks", "max_stuck_workers", Kind::Int),
    ("hooks", "fetch_ca_file", Kind::Str),
    ("log", "format", Kind::Str),
    ("log", "level", Kind::Str),
];

pub(crate) const PREFIX: &str = "TOKENHOOK_";

/// Writes every `TOKENHOOK_*` variable of a known section into `doc`. Variables of
/// other prefixes are left alone; a known section with an unknown key is an error,
/// since that is almost always a typo that would otherwise be silently ignored.
pub(crate) fn apply(
    doc: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
    errors: &mut Vec<ConfigError>,
) {
    let mut vars: Vec<_> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = &name[PREFIX.len()..];
        let Some((section, key)) = SCHEMA.iter().map(|(s, _, _)| *s).find_map(|s| {
            let upper = s.to_ascii_uppercase();
            rest.strip_prefix(&upper)
                .and_then(|r| r.strip_prefix('_'))
                .map(|k| (s, k.to_ascii_lowercase()))
        }) else {
            continue;
        };
        let Some((_, _, kind)) = SCHEMA.iter().find(|(s, k, _)| *s == section && *k == key) else {
            errors.push(ConfigError::new(
                name.clone(),
                format!("unknown setting (no key `{section}.{key}`)"),
            ));
            continue;
        };
        let parsed = match kind {
            Kind::Str => Ok(toml::Value::String(value)),
            Kind::Int => value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| format!("expected a whole number, got {value:?}")),
            Kind::Bool => match value.trim() {
                "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
                "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
                _ => Err(format!("expected true or false, got {value:?}")),
            },
            Kind::List => Ok(toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_owned()))
                    .collect(),
            )),
        };
        match parsed {
            Ok(v) => {
                let table = doc
                    .entry(section.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(t) = table.as_table_mut() {
                    t.insert(key, v);
                }
            }
            Err(msg) => errors.push(ConfigError::new(name, msg)),
        }
    }
}
