//! Hook execution: the enabled hook runs in worker processes of this binary (see
//! `pool`), each owning one Boa context with the hook compiled once; this module turns
//! what the JS did into a token effect or an OAuth error by Auth0's rules and the
//! decisions in docs/decisions.md.

pub mod cache;
pub mod engine;
pub mod flow;
pub mod manifest;
pub mod pool;
pub mod progress;
pub mod protocol;
mod slot;
pub use slot::HookSlot;
pub mod worker;

use crate::config::HooksConfig;
use crate::egress::{Egress, FetchErrorKind, FetchRequest, FetchResult, HookEgress};
use crate::error::{ErrorCode, OAuthError};
use crate::metrics::{HookCounters, HookOutcome, Outcome};
use crate::token::claims::{self, HookEffect};
use engine::{Deny, Form, JsErrorInfo, LogLine, RawOutcome, State};
use manifest::FlowSpec;
use pool::{Pool, PoolStats, WorkerCommand};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The hidden argument that turns the binary into a hook worker.
pub const WORKER_ARG: &str = "__hook-worker";

/// The hook's `client` argument (D14).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The hook failed: threw, errored, never called back, bad result, crashed (D1).
    Error(OAuthError),
    /// Over its time limit (D9).
    Timeout(OAuthError),
    /// Not run: the work queue is full.
    Rejected(OAuthError),
}

impl HookFailure {
    /// How the hook run is counted (`tokenhook_hook_executions_total`).
    pub fn hook_outcome(&self) -> HookOutcome {
        match self {
            HookFailure::Denied(_) => HookOutcome::Denied,
            HookFailure::Error(_) => HookOutcome::Error,
            HookFailure::Timeout(_) => HookOutcome::Timeout,
            HookFailure::Rejected(_) => HookOutcome::Rejected,
        }
    }

    /// How the request is counted (`tokenhook_requests_total`).
    pub fn request_outcome(&self) -> Outcome {
        match self {
            HookFailure::Denied(_) => Outcome::Denied,
            HookFailure::Error(_) => Outcome::HookError,
            HookFailure::Timeout(_) => Outcome::HookTimeout,
            HookFailure::Rejected(_) => Outcome::HookRejected,
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

/// One step of a flow as it ran: its effect or failure and its console lines.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// Its place in the flow (`HookPool::step`).
    pub step: usize,
    pub result: Result<HookEffect, HookFailure>,
    pub logs: Vec<LogLine>,
}

/// The result of one invocation of the flow, as the runner and the proxy both need it:
/// the steps that ran, in order. Only the last may have failed, and then the request
/// fails with it (D19).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub steps: Vec<StepRun>,
}

impl Invocation {
    fn failed(step: usize, failure: HookFailure) -> Invocation {
        Invocation {
            steps: vec![StepRun {
                step,
                result: Err(failure),
                logs: Vec::new(),
            }],
        }
    }

    /// The step that failed the request, if one did.
    pub fn failure(&self) -> Option<(usize, &HookFailure)> {
        self.steps
            .last()
            .and_then(|s| s.result.as_ref().err().map(|f| (s.step, f)))
    }

    /// The last step's result: for a flow of one hook, the hook's.
    pub fn last_result(self) -> Result<HookEffect, HookFailure> {
        match self.steps.into_iter().last() {
            Some(s) => s.result,
            None => Err(HookFailure::Error(OAuthError::server_error("no step ran"))),
        }
    }

    /// Every step's console lines, in order.
    pub fn logs(&self) -> Vec<LogLine> {
        self.steps.iter().flat_map(|s| s.logs.clone()).collect()
    }

    /// The steps' effects, merged as the claim rules take them (`flow::Merged`).
    pub fn merged(&self) -> flow::Merged {
        let mut m = flow::Merged::default();
        for s in &self.steps {
            if let Ok(e) = &s.result {
                m.add(e.clone());
            }
        }
        m
    }
}

/// What the pool knows of one step of its flow.
struct StepInfo {
    name: String,
    timeout: Duration,
    form: Form,
    /// `tokenhook_hook_executions_total` handles for this step, set once by the app.
    counters: std::sync::OnceLock<HookCounters>,
}

/// A `Send + Sync` handle to the workers running one version of the flow: the enabled
/// Hook and the bound Actions, swapped whole by a reload.
pub struct HookPool {
    steps: Vec<StepInfo>,
    /// The steps' names joined, for log lines about the whole flow.
    label: String,
    /// A call's whole time: the flow's limit, or the sum of its steps' limits if that
    /// is less (then a single hook keeps exactly its own limit).
    limit: Duration,
    /// `hooks.flow_timeout_ms`, to tell a flow's timeout from a step's.
    flow_limit: Duration,
    pool: Pool,
    cache: Arc<cache::SharedCache>,
    /// Whether any step is an Action (only Actions get an `api.cache` snapshot).
    any_action: bool,
    /// Each step's egress policy, for its fetch metrics.
    policies: Vec<Arc<HookEgress>>,
}

impl HookPool {
    /// Starts the workers; fails if a step does not compile, exports nothing, or a
    /// bound Action is not in the Action form.
    pub fn start(
        spec: FlowSpec,
        cfg: &HooksConfig,
        command: WorkerCommand,
    ) -> Result<HookPool, String> {
        Self::start_with(
            spec,
            cfg,
            command,
            Default::default(),
            Default::default(),
            None,
        )
    }

    /// As `start`, sharing a cache and counters with earlier versions of the pool (a hot
    /// reload keeps `api.cache` contents and the replacement count).
    pub fn start_with(
        spec: FlowSpec,
        cfg: &HooksConfig,
        command: WorkerCommand,
        cache: Arc<cache::SharedCache>,
        stats: Arc<PoolStats>,
        egress: Option<Arc<Egress>>,
    ) -> Result<HookPool, String> {
        // Each step's `[hook.NAME.fetch]` policy; without an egress client every
        // request is refused (the worker still answers the hook).
        let mut policies = Vec::with_capacity(spec.steps.len());
        for s in &spec.steps {
            let p = HookEgress::new(&s.name, s.fetch.as_ref(), s.timeout).map_err(|problems| {
                problems
                    .into_iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            policies.push(Arc::new(p));
        }
        let fetcher = egress.map(|client| {
            Arc::new(FlowEgress {
                client,
                steps: policies.clone(),
            }) as Arc<dyn pool::Fetcher>
        });
        let pool = Pool::start(&spec, cfg, command, stats, fetcher)?;
        let first_action = usize::from(spec.has_hook);
        for (i, (s, form)) in spec.steps.iter().zip(&pool.forms).enumerate() {
            if i >= first_action && *form != Form::Action {
                return Err(format!(
                    "hook {:?} is bound in the flow but is a legacy Hook; only Actions \
                     (exports.onExecuteCredentialsExchange) can be bound",
                    s.name
                ));
            }
        }
        let sum: Duration = spec.steps.iter().map(|s| s.timeout).sum();
        Ok(HookPool {
            label: spec.label(),
            limit: sum.min(cfg.flow_timeout),
            flow_limit: cfg.flow_timeout,
            any_action: pool.forms.contains(&Form::Action),
            steps: spec
                .steps
                .into_iter()
                .zip(pool.forms.iter().copied())
                .map(|(s, form)| StepInfo {
                    name: s.name,
                    timeout: s.timeout,
                    form,
                    counters: std::sync::OnceLock::new(),
                })
                .collect(),
            pool,
            cache,
            policies,
        })
    }

    /// The flow's steps joined (`seed > enrich`), for log lines.
    pub fn name(&self) -> &str {
        &self.label
    }

    /// The name of step `i`.
    pub fn step(&self, i: usize) -> &str {
        self.steps.get(i).map_or("", |s| s.name.as_str())
    }

    /// The form of step `i`.
    pub fn form(&self, i: usize) -> Form {
        self.steps.get(i).map_or(Form::Legacy, |s| s.form)
    }

    /// Resolves the per-outcome counters of each step once, so requests only increment.
    pub fn attach_counters(&self, vec: &prometheus::IntCounterVec) {
        for s in &self.steps {
            let _ = s.counters.set(HookCounters::new(vec, &s.name));
        }
    }

    /// Resolves each step's `fetch` metric handles once.
    pub fn attach_fetch_metrics(
        &self,
        fetches: &prometheus::IntCounterVec,
        durations: &prometheus::HistogramVec,
    ) {
        for p in &self.policies {
            p.attach_metrics(fetches, durations);
        }
    }

    /// Counts one run of step `i`.
    pub fn count(&self, i: usize, outcome: HookOutcome) {
        if let Some(c) = self.steps.get(i).and_then(|s| s.counters.get()) {
            c.get(outcome).inc();
        }
    }

    pub fn stats(&self) -> &PoolStats {
        &self.pool.stats
    }

    pub fn queue_len(&self) -> usize {
        self.pool.queue_len()
    }

    pub fn cache(&self) -> &Arc<cache::SharedCache> {
        &self.cache
    }

    /// Workers are up and the queue has room; a saturated pool is reported not ready so
    /// a load balancer can send traffic elsewhere.
    pub fn can_serve(&self) -> bool {
        self.pool
            .stats
            .up
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
            && !self.pool.is_full()
    }

    /// What a client reads when the worker could not answer its call. The process's
    /// exit reason (signal, status, protocol detail) goes to the log; only running out
    /// of memory or stack, which the hook's own code causes, is named to the client.
    fn worker_failure(&self, request_id: &str, step: usize, reason: &str) -> &'static str {
        let hook = self
            .steps
            .get(step)
            .map_or(self.label.as_str(), |s| s.name.as_str());
        let flow = self.label.as_str();
        tracing::warn!(flow, hook, request_id, reason, "hook worker failed");
        if reason.starts_with(pool::OUT_OF_MEMORY) {
            "hook ran out of memory (hooks.memory_limit_mb) or stack (data nested too deeply)"
        } else {
            "hook failed: its worker process stopped (the sidecar's log says why)"
        }
    }

    /// Runs the flow once, in one worker call; each step's console lines come back
    /// with its result.
    pub async fn invoke(&self, call: &HookCall) -> Invocation {
        let snapshot = self
            .any_action
            .then(|| self.cache.snapshot(cache::now_ms()));
        let started = Instant::now();
        let deadline = started + self.limit;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = pool::Job {
            frame: protocol::call_frame(&Input::new(call, snapshot.as_ref()), deadline),
            deadline,
            reply,
        };
        if let Err(e) = self.pool.submit(job) {
            return Invocation::failed(0, HookFailure::Rejected(e));
        }
        // A call the pool runs is answered by its deadline (plus the kill grace); one
        // still queued is answered when a worker takes it. This outer bound covers a
        // queue that no worker reaches in time (every worker stuck and
        // `hooks.max_stuck_workers` reached) and a pool that stopped.
        let done = match tokio::time::timeout(self.limit + Duration::from_secs(2), rx).await {
            Ok(Ok(d)) => d,
            Ok(Err(_)) => Err(protocol::Lost::from("hook worker stopped".to_owned())),
            Err(_) => Ok(protocol::Done::ended(RawOutcome::TimedOut)),
        };
        // The step a lost call was in, as its worker marked it (`progress`); one past
        // the flow's end (a mark gone wrong) is the last step's.
        let in_flow = |step: usize| step.min(self.steps.len().saturating_sub(1));
        let done = match done {
            Ok(d) => d,
            Err(lost) => {
                let step = in_flow(lost.step);
                return Invocation::failed(
                    step,
                    HookFailure::Error(OAuthError::server_error(self.worker_failure(
                        &call.request_id,
                        step,
                        &lost.reason,
                    ))),
                );
            }
        };
        let first = in_flow(done.first);
        let mut inv = Invocation {
            steps: Vec::with_capacity(done.steps.len()),
        };
        for (k, d) in done.steps.into_iter().enumerate() {
            let i = first + k;
            let Some(info) = self.steps.get(i) else { break };
            let flow_out = matches!(d.outcome, RawOutcome::TimedOut)
                && self.limit == self.flow_limit
                && started.elapsed() + Duration::from_millis(5) >= self.flow_limit;
            let (mut result, ops) = interpret(info.form, &info.name, d.outcome, info.timeout);
            if flow_out {
                result = Err(HookFailure::Timeout(OAuthError::server_error(format!(
                    "the flow timed out after {} ms (hooks.flow_timeout_ms), in hook {:?}",
                    self.flow_limit.as_millis(),
                    info.name
                ))));
            }
            if !ops.is_empty() {
                self.cache.apply(ops, cache::now_ms());
            }
            let failed = result.is_err();
            inv.steps.push(StepRun {
                step: i,
                result,
                logs: d.logs,
            });
            if failed {
                return inv;
            }
        }
        if first + inv.steps.len() < self.steps.len() {
            // The worker stops only at a failure, which the same rules would show here.
            let next = first + inv.steps.len();
            inv.steps.push(StepRun {
                step: next,
                result: Err(HookFailure::Error(OAuthError::server_error(
                    "hook failed: its worker ended the flow early (the sidecar's log says why)",
                ))),
                logs: Vec::new(),
            });
            tracing::warn!(hook = %self.label, request_id = %call.request_id, step = next,
                "hook worker answered fewer steps than the flow has");
        }
        inv
    }
}

/// The egress of one flow: the process's client and each step's policy, performing the
/// requests the pool's workers send (`pool::Fetcher`).
pub struct FlowEgress {
    pub client: Arc<Egress>,
    pub steps: Vec<Arc<HookEgress>>,
}

impl pool::Fetcher for FlowEgress {
    fn fetch(
        &self,
        step: usize,
        request: serde_json::Value,
        deadline: Instant,
        nth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>> {
        let client = self.client.clone();
        let hook = self.steps.get(step).cloned();
        Box::pin(async move {
            let result = match (hook, serde_json::from_value::<FetchRequest>(request)) {
                (Some(hook), Ok(req)) => {
                    client
                        .session_after(&hook, nth.saturating_sub(1))
                        .fetch(req, deadline)
                        .await
                }
                (None, _) => FetchResult::Error {
                    reason: FetchErrorKind::Refused,
                    message: "no such hook in this flow".into(),
                },
                (_, Err(e)) => FetchResult::Error {
                    reason: FetchErrorKind::Error,
                    message: format!("bad fetch request: {e}"),
                },
            };
            serde_json::to_value(result).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// Writes a hook's console lines to the sidecar's log, with the hook's name.
pub fn emit_logs(hook: &str, request_id: &str, lines: &[LogLine]) {
    for l in lines {
        match l.level.as_str() {
            "error" => tracing::error!(hook, request_id, "{}", l.line),
            "warn" => tracing::warn!(hook, request_id, "{}", l.line),
            "debug" => tracing::debug!(hook, request_id, "{}", l.line),
            _ => tracing::info!(hook, request_id, "{}", l.line),
        }
    }
}

/// The JSON the JS driver receives, borrowed from the call and serialized straight into
/// the worker's call frame (no `Value` tree per request). Secrets are not in it: each
/// worker holds them. Field order is the order the hook sees in `Object.keys`.
#[derive(serde::Serialize)]
pub struct Input<'a> {
    client: ClientInput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_scope: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
    request: RequestInput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<&'a BTreeMap<String, cache::Entry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<u64>,
}

#[derive(serde::Serialize)]
struct ClientInput<'a> {
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    metadata: &'a BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
struct RequestInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    method: &'a str,
    body: &'a Map<String, Value>,
}

impl<'a> Input<'a> {
    /// `cache` is the Action's `api.cache` snapshot (legacy hooks have none).
    pub fn new(call: &'a HookCall, cache: Option<&'a BTreeMap<String, cache::Entry>>) -> Self {
        Input {
            client: ClientInput {
                id: &call.client.id,
                name: &call.client.name,
                tenant: call.client.tenant.as_deref(),
                metadata: &call.client.metadata,
            },
            scope: call.scope.as_deref(),
            requested_scope: call.requested_scope.as_deref(),
            audience: call.audience.as_deref(),
            request: RequestInput {
                ip: call.ip.as_deref(),
                user_agent: call.user_agent.as_deref(),
                hostname: call.hostname.as_deref(),
                language: call.language.as_deref(),
                method: if call.method.is_empty() {
                    "POST"
                } else {
                    &call.method
                },
                body: &call.body,
            },
            cache,
            now: cache.map(|_| cache::now_ms()),
        }
    }
}

/// The driver's input as a JSON value, for running a hook in this process.
pub fn input_json(call: &HookCall, cache: Option<&BTreeMap<String, cache::Entry>>) -> Value {
    serde_json::to_value(Input::new(call, cache)).unwrap_or(Value::Null)
}

fn timeout_failure(limit: Duration) -> HookFailure {
    HookFailure::Timeout(OAuthError::server_error(format!(
        "hook timed out after {} ms",
        limit.as_millis()
    )))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Applies Auth0's rules to what the worker reports; also returns the cache writes.
pub fn interpret(
    form: Form,
    hook: &str,
    outcome: RawOutcome,
    limit: Duration,
) -> (Result<HookEffect, HookFailure>, Vec<cache::CacheOp>) {
    match outcome {
        RawOutcome::TimedOut => (Err(timeout_failure(limit)), Vec::new()),
        RawOutcome::Aborted { message } => (
            Err(HookFailure::Error(OAuthError::server_error(format!(
                "hook aborted: {}",
                first_line(&message)
            )))),
            Vec::new(),
        ),
        RawOutcome::Finished { mut state } => {
            let ops = std::mem::take(&mut state.cache_ops);
            let r = match form {
                Form::Legacy => legacy_result(hook, *state),
                Form::Action => action_result(*state),
            };
            (r, ops)
        }
    }
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
    let value = state.result.filter(|v| !v.is_null());
    claims::legacy_effect(value)
        .map_err(|e| HookFailure::Error(OAuthError::server_error(e.to_string())))
}

/// The injected error classes pick the OAuth error (D1).
fn map_error(err: JsErrorInfo) -> HookFailure {
    match err.name.as_str() {
        "InvalidScopeError" => {
            HookFailure::Denied(OAuthError::new(ErrorCode::InvalidScope, err.message))
        }
        "InvalidRequestError" => HookFailure::Denied(OAuthError::invalid_request(err.message)),
        _ => HookFailure::Error(OAuthError::server_error(err.message)),
    }
}

/// D2 for `api.access.deny`.
fn deny_error(d: Deny) -> HookFailure {
    match ErrorCode::from_deny(&d.code) {
        Some(code) => HookFailure::Denied(OAuthError::new(code, d.reason)),
        None => HookFailure::Error(OAuthError::server_error(format!(
            "hook denied with code {:?}, which is not allowed (use invalid_scope, invalid_request or server_error)",
            d.code
        ))),
    }
}

/// Actions: deny wins, then errors, then claims and target scopes (D2, D6, D8).
fn action_result(state: State) -> Result<HookEffect, HookFailure> {
    if let Some(d) = state.deny {
        return Err(deny_error(d));
    }
    if let Some(err) = state.error {
        return Err(HookFailure::Error(OAuthError::server_error(err.message)));
    }
    if !state.done {
        return Err(HookFailure::Error(OAuthError::server_error(
            "hook completed without finishing: its promise never settled",
        )));
    }
    let claims = state.claims;
    Ok(HookEffect {
        claims,
        scope: state.target_changed.then_some(state.target_scopes),
        form: claims::EffectForm::Action,
    })
}

#[cfg(test)]
mod tests;
