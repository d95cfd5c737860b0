//! Hook execution: a pool of worker threads, each owning one Boa context with the
//! enabled hook compiled once, fed through a bounded queue with a oneshot reply.
//!
//! The caller awaits the reply under the hook's time limit, so a slow hook fails only
//! its own request (D1, D9) and never blocks pingora's I/O threads. Plain-JS runaways
//! (loops, recursion) are stopped inside the engine by Boa's runtime limits.

pub mod engine;
pub mod manifest;

use crate::config::HooksConfig;
use crate::error::OAuthError;
use crate::token::claims::{self, ClaimPolicy, HookEffect};
use engine::{Engine, Form, JsErrorInfo, Limits, LogLine, RawOutcome, State};
use manifest::HookSpec;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The hook's `client` argument (D14).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookClient {
    pub id: String,
    pub name: String,
    pub tenant: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Everything a hook invocation sees about the request.
#[derive(Debug, Clone, Default)]
pub struct HookCall {
    pub client: HookClient,
    /// The upstream token's scopes; None when it had none (`undefined` in a legacy hook).
    pub scope: Option<Vec<String>>,
    pub audience: Option<String>,
    pub requested_scope: Option<Vec<String>>,
    /// Token request parameters without credentials.
    pub body: Map<String, Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub hostname: Option<String>,
    pub language: Option<String>,
    pub method: String,
    pub request_id: String,
}

/// Why a hook did not produce a token; each carries the client's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookFailure {
    /// The hook denied the request (`InvalidScopeError`, `InvalidRequestError`, `api.access.deny`).
    Denied(OAuthError),
    /// The hook failed: threw, errored, never called back, bad result (D1).
    Error(OAuthError),
    /// Over its time limit (D9).
    Timeout(OAuthError),
    /// Not run: the work queue is full.
    Rejected(OAuthError),
}

impl HookFailure {
    pub fn label(&self) -> &'static str {
        match self {
            HookFailure::Denied(_) => "denied",
            HookFailure::Error(_) => "error",
            HookFailure::Timeout(_) => "timeout",
            HookFailure::Rejected(_) => "rejected",
        }
    }

    pub fn error(&self) -> &OAuthError {
        match self {
            HookFailure::Denied(e)
            | HookFailure::Error(e)
            | HookFailure::Timeout(e)
            | HookFailure::Rejected(e) => e,
        }
    }

    pub fn into_error(self) -> OAuthError {
        match self {
            HookFailure::Denied(e)
            | HookFailure::Error(e)
            | HookFailure::Timeout(e)
            | HookFailure::Rejected(e) => e,
        }
    }
}

/// The result of one invocation, as the runner and the proxy both need it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub result: Result<HookEffect, HookFailure>,
    pub logs: Vec<LogLine>,
}

struct Job {
    input: String,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Invocation>,
}

/// A `Send + Sync` handle to the worker threads running the enabled hook.
pub struct HookPool {
    name: String,
    form: Form,
    timeout: Duration,
    tx: crossbeam_channel::Sender<Job>,
    alive: Arc<AtomicUsize>,
}

impl HookPool {
    /// Compiles the hook on every worker before returning, so a hook that does not
    /// compile is reported at startup (and by `check`), never on the first request.
    pub fn start(
        spec: HookSpec,
        cfg: &HooksConfig,
        _policy: ClaimPolicy,
    ) -> Result<HookPool, engine::CompileError> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(cfg.queue);
        let secrets = serde_json::to_string(&spec.secrets).unwrap_or_else(|_| "{}".into());
        let alive = Arc::new(AtomicUsize::new(0));
        let mut form = None;
        for i in 0..cfg.workers.max(1) {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let rx = rx.clone();
            let source = spec.source.clone();
            let secrets = secrets.clone();
            let alive = alive.clone();
            let hook_name = spec.name.clone();
            let limit = spec.timeout;
            std::thread::Builder::new()
                .name(format!("hook-worker-{i}"))
                .spawn(move || {
                    let mut engine = match Engine::compile(&source, &secrets, Limits::default()) {
                        Ok(e) => {
                            let _ = ready_tx.send(Ok(e.form()));
                            e
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    alive.fetch_add(1, Ordering::Relaxed);
                    while let Ok(job) = rx.recv() {
                        if job.reply.is_closed() || Instant::now() >= job.deadline {
                            // The caller gave up (timeout) while the job queued.
                            continue;
                        }
                        let inv = invoke(&mut engine, &hook_name, &job.input, job.deadline, limit);
                        let _ = job.reply.send(inv);
                    }
                    alive.fetch_sub(1, Ordering::Relaxed);
                })
                .map_err(|e| engine::CompileError::Internal(e.to_string()))?;
            match ready_rx.recv() {
                Ok(Ok(f)) => form = Some(f),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(engine::CompileError::Internal("worker died".into())),
            }
        }
        Ok(HookPool {
            name: spec.name,
            form: form.unwrap_or(Form::Legacy),
            timeout: spec.timeout,
            tx,
            alive,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn form(&self) -> Form {
        self.form
    }

    pub fn can_serve(&self) -> bool {
        self.alive.load(Ordering::Relaxed) > 0
    }

    /// Runs the hook for one request.
    pub async fn run(&self, call: HookCall) -> Result<HookEffect, HookFailure> {
        let inv = self.invoke(&call).await;
        for l in &inv.logs {
            emit_log(&self.name, &call.request_id, l);
        }
        inv.result
    }

    /// Runs the hook and returns its console lines too (the local runner prints them).
    pub async fn invoke(&self, call: &HookCall) -> Invocation {
        let input = input_json(self.form, call);
        let (reply, rx) = tokio::sync::oneshot::channel();
        let deadline = Instant::now() + self.timeout;
        let job = Job {
            input,
            deadline,
            reply,
        };
        if let Err(e) = self.tx.try_send(job) {
            let mut err = OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many token requests in progress; retry shortly",
            );
            err.retry_after = Some(1);
            if matches!(e, crossbeam_channel::TrySendError::Disconnected(_)) {
                err.description = "hook workers are not running".into();
            }
            return Invocation {
                result: Err(HookFailure::Rejected(err)),
                logs: Vec::new(),
            };
        }
        // A little slack over the worker's own deadline so a timer-bound hook reports
        // its own timeout; the outer bound still holds if the worker is stuck.
        match tokio::time::timeout(self.timeout + Duration::from_millis(50), rx).await {
            Ok(Ok(inv)) => inv,
            Ok(Err(_)) => Invocation {
                result: Err(HookFailure::Error(OAuthError::server_error(
                    "hook worker stopped",
                ))),
                logs: Vec::new(),
            },
            Err(_) => Invocation {
                result: Err(timeout_failure(self.timeout)),
                logs: Vec::new(),
            },
        }
    }
}

fn timeout_failure(limit: Duration) -> HookFailure {
    HookFailure::Timeout(OAuthError::server_error(format!(
        "hook timed out after {} ms",
        limit.as_millis()
    )))
}

fn emit_log(hook: &str, request_id: &str, l: &LogLine) {
    match l.level.as_str() {
        "error" => tracing::error!(hook, request_id, "{}", l.line),
        "warn" => tracing::warn!(hook, request_id, "{}", l.line),
        "debug" => tracing::debug!(hook, request_id, "{}", l.line),
        _ => tracing::info!(hook, request_id, "{}", l.line),
    }
}

/// The JSON the JS driver receives. Secrets are not in it: each worker holds them.
fn input_json(_form: Form, call: &HookCall) -> String {
    let mut client = Map::new();
    client.insert("id".into(), call.client.id.clone().into());
    client.insert("name".into(), call.client.name.clone().into());
    if let Some(t) = &call.client.tenant {
        client.insert("tenant".into(), t.clone().into());
    }
    client.insert(
        "metadata".into(),
        Value::Object(
            call.client
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    let mut context = Map::new();
    if let Some(ip) = &call.ip {
        context.insert("ip".into(), ip.clone().into());
    }
    if let Some(ua) = &call.user_agent {
        context.insert("userAgent".into(), ua.clone().into());
    }
    context.insert("body".into(), Value::Object(call.body.clone()));
    let mut input = Map::new();
    input.insert("client".into(), Value::Object(client));
    if let Some(s) = &call.scope {
        input.insert(
            "scope".into(),
            s.iter()
                .cloned()
                .map(Value::String)
                .collect::<Vec<_>>()
                .into(),
        );
    }
    if let Some(a) = &call.audience {
        input.insert("audience".into(), a.clone().into());
    }
    input.insert("context".into(), Value::Object(context));
    Value::Object(input).to_string()
}

/// Runs one invocation on this worker's engine and applies Auth0's error rules.
fn invoke(
    engine: &mut Engine,
    hook: &str,
    input: &str,
    deadline: Instant,
    limit: Duration,
) -> Invocation {
    let (raw, logs) = engine.call(input, deadline);
    let result = match raw {
        RawOutcome::TimedOut => Err(timeout_failure(limit)),
        RawOutcome::Aborted(msg) => Err(HookFailure::Error(OAuthError::server_error(format!(
            "hook aborted: {}",
            first_line(&msg)
        )))),
        RawOutcome::Finished(state) => legacy_result(hook, state),
    };
    Invocation { result, logs }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// D1, D5, D7, D8, D12 for the legacy form.
fn legacy_result(hook: &str, state: State) -> Result<HookEffect, HookFailure> {
    if state.late > 0 {
        tracing::warn!(
            hook,
            extra_calls = state.late,
            "hook called cb more than once; later calls ignored"
        );
    }
    if let Some(err) = state.error {
        return Err(map_error(err));
    }
    if !state.done {
        return Err(HookFailure::Error(OAuthError::server_error(
            match state.rejected {
                Some(r) => r.message,
                None => "hook completed without calling back".to_owned(),
            },
        )));
    }
    let value = match state.result.as_deref() {
        None | Some("null") => None,
        Some(json) => match serde_json::from_str::<Value>(json) {
            Ok(v) => Some(v),
            Err(e) => {
                return Err(HookFailure::Error(OAuthError::server_error(format!(
                    "hook result is not valid JSON: {e}"
                ))));
            }
        },
    };
    claims::legacy_effect(value)
        .map_err(|e| HookFailure::Error(OAuthError::server_error(e.to_string())))
}

/// The injected error classes pick the OAuth error (D1).
fn map_error(err: JsErrorInfo) -> HookFailure {
    match err.name.as_str() {
        "InvalidScopeError" => {
            HookFailure::Denied(OAuthError::new(400, "invalid_scope", err.message))
        }
        "InvalidRequestError" => {
            HookFailure::Denied(OAuthError::new(400, "invalid_request", err.message))
        }
        _ => HookFailure::Error(OAuthError::server_error(err.message)),
    }
}

#[cfg(test)]
mod tests;
