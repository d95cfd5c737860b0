//! `tokenhook hooks run FILE --event EVENT.json`: runs a hook once, exactly as the
//! sidecar does (same worker process, engine, rules and limits), and prints one JSON
//! object saying what it would do to the token.

use super::manifest::HookSpec;
use super::pool::WorkerCommand;
use super::{HookCall, HookClient, HookPool};
use crate::config::HooksConfig;
use crate::error::OAuthError;
use crate::token::claims::{self, ClaimPolicy};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// The event file's shape; every field is optional except `client.id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub client: EventClient,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    #[serde(default)]
    pub requested_scope: Option<Vec<String>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub request: EventRequest,
    #[serde(default)]
    pub cache: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventClient {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub body: Map<String, Value>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

fn error_json(e: &OAuthError) -> Value {
    json!({"outcome": "error", "status": e.status, "error": e.code, "error_description": e.description})
}

/// Runs `source` against `event` and returns the runner's JSON.
pub fn run(
    source: String,
    name: &str,
    event: Event,
    cfg: &HooksConfig,
    command: WorkerCommand,
) -> Value {
    let spec = HookSpec {
        name: name.to_owned(),
        path: name.into(),
        source,
        timeout: cfg.timeout,
        secrets: event.secrets.clone(),
    };
    let pool = match HookPool::start(spec, cfg, command) {
        Ok(p) => p,
        // What a request would get if the sidecar ran it (D1).
        Err(e) => return error_json(&OAuthError::server_error(e)),
    };
    let expires = super::cache::now_ms() + super::cache::DEFAULT_TTL_MS;
    pool.cache().seed(
        event
            .cache
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    super::cache::Entry {
                        value: v.clone(),
                        expires_at: expires,
                    },
                )
            })
            .collect(),
    );
    let call = HookCall {
        client: HookClient {
            name: event
                .client
                .name
                .clone()
                .unwrap_or_else(|| event.client.id.clone()),
            id: event.client.id,
            tenant: event.client.tenant,
            metadata: event.client.metadata,
        },
        scope: event.scope.clone(),
        audience: event.audience,
        requested_scope: event.requested_scope,
        body: event.request.body,
        ip: event.request.ip,
        user_agent: event.request.user_agent,
        hostname: event.request.hostname,
        language: event.request.language,
        method: event.request.method.unwrap_or_else(|| "POST".into()),
        request_id: "hooks-run".into(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error_json(&OAuthError::server_error(e.to_string())),
    };
    let inv = rt.block_on(pool.invoke(&call));
    let logs: Vec<String> = inv.logs.iter().map(|l| l.line.clone()).collect();
    let effect = match inv.result {
        Ok(e) => e,
        Err(f) => {
            let mut out = error_json(f.error());
            out["logs"] = json!(logs);
            return out;
        }
    };
    let mut payload = Map::new();
    if let Some(s) = &event.scope {
        payload.insert("scope".into(), Value::String(s.join(" ")));
    }
    let policy = ClaimPolicy {
        allow_unnamespaced: cfg.allow_unnamespaced_claims,
    };
    match claims::apply(payload, effect, policy) {
        Ok(a) => {
            json!({"outcome": "token", "claims": a.claims, "scope": a.scopes, "ignored": a.ignored, "logs": logs})
        }
        Err(e) => {
            let mut out = error_json(&OAuthError::server_error(e.to_string()));
            out["logs"] = json!(logs);
            out
        }
    }
}

pub fn run_cli(file: &Path, event: &Path, timeout_ms: Option<u64>, cfg: &HooksConfig) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("{msg}");
        ExitCode::from(2)
    };
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => return usage(format!("{}: {e}", file.display())),
    };
    let text = match std::fs::read_to_string(event) {
        Ok(s) => s,
        Err(e) => return usage(format!("--event {}: {e}", event.display())),
    };
    let event: Event = match serde_json::from_str(&text) {
        Ok(e) => e,
        Err(e) => {
            return usage(format!(
                "--event {}: not a valid event: {e}",
                event.display()
            ));
        }
    };
    if timeout_ms == Some(0) {
        return usage("--timeout-ms: must be greater than 0".into());
    }
    let mut cfg = cfg.clone();
    cfg.workers = 1;
    if let Some(ms) = timeout_ms {
        cfg.timeout = Duration::from_millis(ms);
    }
    let command = match WorkerCommand::current_exe() {
        Ok(c) => c,
        Err(e) => return usage(format!("cannot locate the tokenhook binary: {e}")),
    };
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("hook");
    let out = run(source, name, event, &cfg, command);
    println!("{out}");
    ExitCode::SUCCESS
}
