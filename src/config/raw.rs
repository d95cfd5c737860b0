//! The config file's format, exactly as users write it; `mod.rs` turns it into typed values.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole TOML file. Unknown keys are errors so a typo never silently falls back
/// to a default.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub signing: RawSigning,
    #[serde(default)]
    pub hooks: RawHooks,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub clients: BTreeMap<String, RawClient>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default = "default_jwks_path")]
    pub jwks_path: String,
    #[serde(default = "default_discovery_path")]
    pub discovery_path: String,
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_seconds: u64,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default = "default_grace_period")]
    pub grace_period_seconds: u64,
    #[serde(default = "default_drain_delay")]
    pub drain_delay_seconds: u64,
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` / `Forwarded` say
    /// who the client is. Defaults to none: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default = "default_token_path")]
    pub token_path: String,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_discovery_path")]
    pub discovery_path: String,
    /// The `iss` the IdP's tokens must carry. Defaults to the `issuer` of the IdP's
    /// discovery document (`discovery_path`), fetched with the JWKS.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_upstream_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_seconds: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub active: Option<String>,
    #[serde(default)]
    pub next: Vec<String>,
    #[serde(default)]
    pub retired: Vec<String>,
    #[serde(default = "default_key_reload")]
    pub reload_interval_ms: u64,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    #[serde(default)]
    pub issuer: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    #[serde(default = "default_hooks_dir")]
    pub dir: String,
    #[serde(default = "default_hook_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_flow_timeout")]
    pub flow_timeout_ms: u64,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default)]
    pub allow_unnamespaced_claims: bool,
    #[serde(default = "default_memory_limit")]
    pub memory_limit_mb: u64,
    #[serde(default = "default_loop_limit")]
    pub loop_iteration_limit: u64,
    #[serde(default = "default_recursion_limit")]
    pub recursion_limit: usize,
    #[serde(default = "default_reload_interval")]
    pub reload_interval_ms: u64,
    #[serde(default)]
    pub max_stuck_workers: Option<usize>,
    #[serde(default)]
    pub fetch_ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default = "default_log_format")]
    pub format: String,
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

macro_rules! default_from_serde {
    ($($t:ty),*) => {$(
        impl Default for $t {
            fn default() -> Self {
                // The `default_*` functions are the single source of the defaults; an empty
                // table picks them all up.
                toml::from_str("").expect("every field has a default")
            }
        }
    )*};
}
default_from_serde!(RawServer, RawUpstream, RawSigning, RawHooks, RawLog);

fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_admin_listen() -> String {
    "0.0.0.0:9090".into()
}
fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}
fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".into()
}
fn default_jwks_max_age() -> u64 {
    300
}
fn default_grace_period() -> u64 {
    10
}
fn default_drain_delay() -> u64 {
    2
}
fn default_read_timeout() -> u64 {
    5_000
}
fn default_idle_timeout() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_token_path() -> String {
    "/oauth/token".into()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_connect_timeout() -> u64 {
    2_000
}
fn default_upstream_timeout() -> u64 {
    10_000
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_refresh() -> u64 {
    300
}
fn default_jwks_min_refresh() -> u64 {
    10
}
fn default_key_reload() -> u64 {
    1_000
}
fn default_algorithm() -> String {
    "RS256".into()
}
fn default_hooks_dir() -> String {
    "hooks".into()
}
/// Auth0's limit for one execution of a trigger's flow.
fn default_flow_timeout() -> u64 {
    20_000
}

fn default_hook_timeout() -> u64 {
    5_000
}
fn default_queue() -> usize {
    1024
}
fn default_memory_limit() -> u64 {
    512
}
fn default_loop_limit() -> u64 {
    10_000_000
}
fn default_recursion_limit() -> usize {
    512
}
fn default_reload_interval() -> u64 {
    1_000
}
fn default_log_format() -> String {
    "text".into()
}
fn default_log_level() -> String {
    "warn,tokenhook=info".into()
}
