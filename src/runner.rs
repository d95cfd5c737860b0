//! `tokenhook hooks run FILE --event EVENT.json` (one hook) and `tokenhook hooks run
//! --dir DIR --event EVENT.json` (the folder's enabled Hook and flow): runs them once
//! through the same exchange core as the sidecar (`crate::exchange`: same worker process, engine, request
//! filtering, defaults, rules and limits), and prints one JSON object saying what it
//! would do to the token.

use crate::config::{ClientInfo, HooksConfig, IssuerMode};
use crate::error::OAuthError;
use crate::exchange::{Exchange, Peer, TokenRequest};
use crate::hooks::engine::Form;
use crate::hooks::manifest::{self, FlowSpec, HookSpec};
use crate::hooks::pool::WorkerCommand;
use crate::hooks::{HookPool, StepRun};
use crate::token::claims::ClaimPolicy;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
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
    pub metadata: Option<BTreeMap<String, String>>,
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
    json!({"outcome": "error", "status": e.http_status(), "error": e.code().as_str(), "error_description": e.description()})
}

impl Event {
    /// The IdP token a real request with these facts would bring: its scopes, audience
    /// and client, which the exchange core reads exactly as it reads a real token's.
    fn upstream_claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("client_id".into(), json!(self.client.id));
        if let Some(aud) = &self.audience {
            claims.insert("aud".into(), json!(aud));
        }
        if let Some(s) = &self.scope {
            claims.insert("scope".into(), json!(s.join(" ")));
        }
        claims
    }

    /// The token request's parameters: `request.body`, with `requested_scope` as the
    /// `scope` parameter a real request carries it in (a `scope` in the body wins, as
    /// it is what the sidecar would read).
    fn request_params(&self) -> Map<String, Value> {
        let mut body = self.request.body.clone();
        if let Some(req) = &self.requested_scope
            && !body.contains_key("scope")
        {
            body.insert("scope".into(), Value::String(req.join(" ")));
        }
        body
    }
}

/// Runs `flow` against `event` through the exchange core, as a token request with
/// the same facts would run in the sidecar, and returns the runner's JSON: the result,
/// and what each step did.
pub fn run(
    mut flow: FlowSpec,
    event: Event,
    cfg: &HooksConfig,
    command: WorkerCommand,
    registry: &HashMap<String, ClientInfo>,
) -> Value {
    let params = event.request_params();
    // The event's secrets stand in for every step's (as a value the folder could not
    // resolve here, such as an unset variable, would be).
    for step in &mut flow.steps {
        step.secrets.extend(event.secrets.clone());
    }
    // The runner performs the hooks' fetch itself, under the folder's policies, as
    // the sidecar would.
    let egress = crate::egress::Egress::new(&cfg.fetch_roots)
        .ok()
        .map(Arc::new);
    let pool = match HookPool::start_with(
        flow,
        cfg,
        command,
        Default::default(),
        Default::default(),
        egress,
    ) {
        Ok(p) => p,
        // What a request would get if the sidecar ran it (D1).
        Err(e) => return error_json(&OAuthError::server_error(e)),
    };
    let expires = crate::hooks::cache::now_ms() + crate::hooks::cache::DEFAULT_TTL_MS;
    pool.cache().seed(
        event
            .cache
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    crate::hooks::cache::Entry {
                        value: v.clone(),
                        expires_at: expires,
                    },
                )
            })
            .collect(),
    );
    // The config's registry entry for this client (as the sidecar would find it), with
    // what the event says on top.
    let registered = registry.get(&event.client.id).cloned().unwrap_or_default();
    let clients = HashMap::from([(
        event.client.id.clone(),
        ClientInfo {
            name: event.client.name.clone().or(registered.name),
            tenant: event.client.tenant.clone().or(registered.tenant),
            metadata: event.client.metadata.clone().unwrap_or(registered.metadata),
        },
    )]);
    let pool = Arc::new(pool);
    let exchange = Exchange {
        hook: Some(pool.clone()),
        clients: &clients,
        policy: ClaimPolicy {
            allow_unnamespaced: cfg.allow_unnamespaced_claims,
        },
        issuer: &IssuerMode::Upstream,
        ignored_claims: None,
        log_console: false,
    };
    let req = TokenRequest::from_params(params, None);
    let peer = Peer {
        ip: event.request.ip.clone(),
        user_agent: event.request.user_agent.clone(),
        hostname: event.request.hostname.clone(),
        language: event.request.language.clone(),
        method: event.request.method.clone(),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return error_json(&OAuthError::server_error(e.to_string())),
    };
    let result = rt.block_on(exchange.run(event.upstream_claims(), &req, &peer, "hooks-run"));
    let lines = |logs: &[crate::hooks::engine::LogLine]| -> Vec<String> {
        logs.iter().map(|l| l.line.clone()).collect()
    };
    match result {
        Ok(a) => {
            json!({"outcome": "token", "claims": a.claims, "scope": a.scopes, "ignored": a.ignored, "logs": lines(&a.logs), "steps": steps_json(&pool, &a.steps)})
        }
        Err(refused) => {
            let mut out = error_json(&refused.error);
            out["logs"] = json!(lines(&refused.logs));
            out["steps"] = steps_json(&pool, &refused.steps);
            out
        }
    }
}

/// Each step that ran, in order: its name and form, how it ended, what it asked for
/// (claims, and scopes: a legacy Hook's replacement or an Action's target scopes,
/// before the rules apply) and its console lines.
fn steps_json(pool: &HookPool, steps: &[StepRun]) -> Value {
    let form = |i: usize| match pool.form(i) {
        Form::Legacy => "hook",
        Form::Action => "action",
    };
    Value::Array(
        steps
            .iter()
            .map(|s| {
                let logs: Vec<&str> = s.logs.iter().map(|l| l.line.as_str()).collect();
                match &s.result {
                    Ok(effect) => json!({
                        "name": pool.step(s.step), "form": form(s.step), "outcome": "ok",
                        "set_claims": effect.claims, "scope": effect.scope, "logs": logs,
                    }),
                    Err(f) => json!({
                        "name": pool.step(s.step), "form": form(s.step),
                        "outcome": f.hook_outcome().label(),
                        "error": f.error().code().as_str(),
                        "error_description": f.error().description(), "logs": logs,
                    }),
                }
            })
            .collect(),
    )
}

/// What the hooks folder says of the hook being run, when it is one of its hooks: the
/// sidecar would run it with this time limit, these secrets and this egress policy.
#[derive(Debug, Default)]
pub struct Defaults {
    pub timeout: Option<Duration>,
    pub secrets: BTreeMap<String, String>,
    pub fetch: Option<crate::hooks::manifest::FetchPolicy>,
}

impl Defaults {
    /// The manifest entry in `dir` whose file is `file`, if any. Secrets that cannot be
    /// resolved here (an unset variable) are left to the event's `secrets`.
    pub fn for_file(dir: &Path, file: &Path, default_timeout: Duration) -> Defaults {
        use crate::hooks::manifest::Manifest;
        let Ok(m) = Manifest::read(dir) else {
            return Defaults::default();
        };
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let Some(name) = m
            .hooks(dir)
            .into_iter()
            .find(|n| same(&dir.join(m.file_for(n)), file))
        else {
            return Defaults::default();
        };
        let entry = m.hook.get(&name).cloned().unwrap_or_default();
        let env = |v: &str| std::env::var(v).ok();
        let secrets = entry
            .secrets
            .iter()
            .filter_map(|(k, r)| r.resolve(dir, &env).ok().map(|v| (k.clone(), v)))
            .collect();
        Defaults {
            timeout: entry
                .timeout_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .or(Some(default_timeout)),
            secrets,
            fetch: entry.fetch.clone(),
        }
    }
}

/// Reads and checks the event file; `Err` is the usage message.
fn read_event(event: &Path, timeout_ms: Option<u64>) -> Result<Event, String> {
    let text =
        std::fs::read_to_string(event).map_err(|e| format!("--event {}: {e}", event.display()))?;
    let event: Event = serde_json::from_str(&text)
        .map_err(|e| format!("--event {}: not a valid event: {e}", event.display()))?;
    if timeout_ms == Some(0) {
        return Err("--timeout-ms: must be greater than 0".into());
    }
    Ok(event)
}

/// The hooks settings a run uses: one worker, and `--timeout-ms` if given, which then
/// holds even past the flow's own limit.
fn runner_config(cfg: &HooksConfig, timeout_ms: Option<u64>) -> HooksConfig {
    let mut cfg = cfg.clone();
    cfg.workers = 1;
    if let Some(ms) = timeout_ms {
        cfg.timeout = Duration::from_millis(ms);
        cfg.flow_timeout = cfg.flow_timeout.max(cfg.timeout);
    }
    cfg
}

fn usage(msg: String) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

/// `hooks run FILE`: one hook, with what the hooks folder says of it if it is one of
/// the folder's.
pub fn run_cli(
    file: &Path,
    event: &Path,
    timeout_ms: Option<u64>,
    cfg: &HooksConfig,
    registry: &HashMap<String, ClientInfo>,
) -> ExitCode {
    let source = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) => return usage(format!("{}: {e}", file.display())),
    };
    let event = match read_event(event, timeout_ms) {
        Ok(e) => e,
        Err(m) => return usage(m),
    };
    let cfg = runner_config(cfg, timeout_ms);
    let command = match WorkerCommand::current_exe() {
        Ok(c) => c,
        Err(e) => return usage(format!("cannot locate the tokenhook binary: {e}")),
    };
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("hook");
    let mut defaults = Defaults::for_file(&cfg.dir, file, cfg.timeout);
    if timeout_ms.is_some() {
        defaults.timeout = None;
    }
    let spec = HookSpec {
        name: name.to_owned(),
        path: file.to_owned(),
        source,
        timeout: defaults.timeout.unwrap_or(cfg.timeout),
        secrets: defaults.secrets,
        fetch: defaults.fetch,
    };
    let out = run(FlowSpec::single(spec), event, &cfg, command, registry);
    println!("{out}");
    ExitCode::SUCCESS
}

/// `hooks run --dir DIR`: the enabled Hook and the bound Actions of the folder, loaded
/// exactly as the sidecar loads them (`manifest::load_flow`); a secret the folder
/// cannot resolve here may come from the event's `secrets`.
pub fn run_dir_cli(
    event: &Path,
    timeout_ms: Option<u64>,
    cfg: &HooksConfig,
    registry: &HashMap<String, ClientInfo>,
) -> ExitCode {
    let event = match read_event(event, timeout_ms) {
        Ok(e) => e,
        Err(m) => return usage(m),
    };
    let cfg = runner_config(cfg, timeout_ms);
    let given = event.secrets.clone();
    let env = |var: &str| std::env::var(var).ok();
    let flow = match manifest::load_flow(&cfg.dir, cfg.timeout, &env) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return usage(format!(
                "{}: no Hook is enabled and no Action is bound; nothing would run",
                cfg.dir.display()
            ));
        }
        Err(problems) => {
            // Unresolvable secrets the event supplies are not problems here.
            let real: Vec<_> = problems
                .into_iter()
                .filter(|(k, _)| !given.keys().any(|g| k.ends_with(&format!(".secrets.{g}"))))
                .collect();
            if !real.is_empty() {
                for (k, m) in &real {
                    eprintln!("{k}: {m}");
                }
                return ExitCode::from(crate::server::EXIT_CONFIG);
            }
            match manifest::load_flow(&cfg.dir, cfg.timeout, &|var: &str| {
                env(var).or_else(|| Some(String::new()))
            }) {
                Ok(Some(f)) => f,
                _ => return usage(format!("{}: cannot load the flow", cfg.dir.display())),
            }
        }
    };
    let command = match WorkerCommand::current_exe() {
        Ok(c) => c,
        Err(e) => return usage(format!("cannot locate the tokenhook binary: {e}")),
    };
    let out = run(flow, event, &cfg, command, registry);
    println!("{out}");
    ExitCode::SUCCESS
}
