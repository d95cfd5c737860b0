//! One Boa context with a hook, or the Actions of a flow (D21), compiled once: the JS
//! side of a hook worker process (`worker`). Not `Send` (Boa's `Context` is not), so it
//! lives and dies on that process's main thread, and tests run it in place.
//!
//! Every value crosses the JS/Rust boundary as a JSON string made by JS's own
//! `JSON.stringify`, which gives exactly D11's conversions (docs/decisions.md) (functions and `undefined`
//! dropped, `NaN` → null, `Date` → ISO string) and keeps integers integral, avoiding the
//! pitfalls of Boa's `to_json` (cycles reported for functions, `Date` as `{}`).

use boa_engine::builtins::promise::PromiseState;
use boa_engine::object::FunctionObjectBuilder;
use boa_engine::object::builtins::JsArray;
use boa_engine::object::builtins::{JsFunction, JsPromise};
use boa_engine::{Context, JsObject, JsString, JsValue, NativeFunction, Source, js_string};
use serde::Deserialize;
use std::rc::Rc;
use std::time::{Duration, Instant};

mod event;
mod json;
mod native;

const PRELUDE: &str = include_str!("prelude.js");
/// Node's and the web's built-ins (D13); its completion value takes the natives.
const BUILTINS: &str = include_str!("builtins.js");
/// The globals `builtins.js` defines, which load it on first use (see `Engine::compile`).
const BUILTIN_GLOBALS: [&str; 11] = [
    "Buffer",
    "atob",
    "btoa",
    "TextEncoder",
    "TextDecoder",
    "URL",
    "URLSearchParams",
    "structuredClone",
    "DOMException",
    "crypto",
    "require",
];

thread_local! {
    /// Set by the prelude's `fetch` when it queues a request: the engine loop looks at
    /// the outbox only then, so hooks that never fetch pay no call for it.
    static FETCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note_fetch(_: &JsValue, _: &[JsValue], _: &mut Context) -> boa_engine::JsResult<JsValue> {
    FETCHED.with(|f| f.set(true));
    Ok(JsValue::undefined())
}

/// Whether the token will carry a claim an Action sets (the claim rules decide, D19):
/// the driver shows later steps only those.
fn claim_carried(_: &JsValue, args: &[JsValue], _: &mut Context) -> boa_engine::JsResult<JsValue> {
    use crate::token::claims::{ClaimPolicy, EffectForm, rejection};
    let name = args
        .first()
        .and_then(JsValue::as_string)
        .map(|s| s.to_std_string_escaped())
        .unwrap_or_default();
    // The policy only matters for the legacy form's unnamespaced names.
    let policy = ClaimPolicy {
        allow_unnamespaced: false,
    };
    Ok(JsValue::from(
        rejection(&name, policy, EffectForm::Action).is_none(),
    ))
}

/// The Node modules `require` gives (with or without `node:`), as `builtins.js`'s
/// `modules`; `hooks::tests` checks the two agree.
pub const BUILTIN_MODULES: &[&str] = &["buffer", "crypto", "querystring", "url", "util"];
/// npm modules given as built-ins (by their bare name), as `builtins.js`'s `packages`.
pub const BUILTIN_PACKAGES: &[&str] = &["axios"];

/// Evaluates `builtins.js` and hands it the natives; the driver calls it at most once.
fn load_builtins(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> boa_engine::JsResult<JsValue> {
    let install = ctx.eval(Source::from_bytes(BUILTINS))?;
    let natives = native::natives(ctx);
    install
        .as_callable()
        .ok_or_else(|| {
            boa_engine::JsNativeError::typ().with_message("the built-ins returned no installer")
        })?
        .call(&JsValue::undefined(), &[natives.into()], ctx)
}

/// Bounds that stop runaway plain-JS code with an uncatchable error.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub loop_iterations: u64,
    pub recursion: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            loop_iterations: 10_000_000,
            recursion: 512,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("hook failed to compile: {0}")]
    Syntax(String),
    #[error(
        "hook does not export a function: use `module.exports = function (client, scope, audience, context, cb)` or `exports.onExecuteCredentialsExchange = async (event, api) => …`"
    )]
    NoExport,
    #[error(
        "a bound Action must export `onExecuteCredentialsExchange`; only the enabled Hook may use the legacy form"
    )]
    NotAnAction,
    #[error("internal error preparing the hook engine: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Legacy,
    Action,
}

/// An error as the hook produced it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct JsErrorInfo {
    pub name: String,
    pub message: String,
}

/// The driver's per-invocation state (see `prelude.js`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, Default, PartialEq)]
#[serde(default)]
pub struct State {
    pub done: bool,
    pub error: Option<JsErrorInfo>,
    /// Legacy: what the hook passed to `cb`, converted as `JSON.stringify` does.
    pub result: Option<serde_json::Value>,
    pub thrown: bool,
    pub rejected: Option<JsErrorInfo>,
    pub late: u32,
    /// Actions: claim name → value, in the order set.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Actions: the first `api.access.deny(code, reason)`.
    pub deny: Option<Deny>,
    /// Actions: whether `api.transaction.*` changed the target scopes, and to what.
    pub target_changed: bool,
    pub target_scopes: Vec<String>,
    /// Actions: `api.cache` writes to apply to the shared store.
    pub cache_ops: Vec<super::cache::CacheOp>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct Deny {
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: String,
    pub line: String,
}

/// What `finish` reports once the invocation is over: the state and console lines.
#[derive(Deserialize)]
struct Poll {
    #[serde(default)]
    state: Option<State>,
    #[serde(default)]
    logs: Vec<LogLine>,
}

/// How one invocation ended, before Auth0's rules are applied.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawOutcome {
    /// The driver ran to a stable point: look at the state.
    Finished { state: Box<State> },
    /// The deadline passed with timers still pending.
    TimedOut,
    /// An uncatchable engine error (loop or recursion limit) or an engine failure.
    Aborted { message: String },
}

/// Where a hook's `fetch` requests go: the worker's pipe to the sidecar, which performs
/// them under the hook's egress policy. Without one (an engine run in place), every
/// request is refused.
pub trait Host {
    /// Hands over a batch of requests (the driver's outbox JSON) made by the engine's
    /// step `step` (0 for its first). False if it cannot.
    fn send(&mut self, step: usize, requests: &str) -> bool;
    /// Waits up to `max` for one answer (`{"id": …, "result": …}`).
    fn wait(&mut self, max: Duration) -> Option<String>;
    /// The engine's step `step` (0 for its first) starts, so the pool can tell which
    /// step a call its worker lost was in (`hooks::progress`).
    fn step_started(&mut self, _step: usize) {}
}

/// The request ids of a driver outbox batch.
#[derive(Deserialize)]
struct Outgoing {
    id: u64,
}

pub struct Engine {
    ctx: Context,
    form: Form,
    /// The legacy hook's function, or the array of the Actions' functions in order.
    hook_fn: JsValue,
    /// The step running now (Actions: its index).
    current: usize,
    /// Each Action's secrets, for the events Rust makes (`event::Events`).
    secrets: Rc<Vec<serde_json::Value>>,
    /// `driver.step` and what makes each Action's event (Actions only).
    step: Option<(JsObject, event::Events)>,
    /// `driver.stepRejected`, and the current Action's promise until it settled.
    step_rejected: Option<JsObject>,
    /// `driver.follow`, for an Action's result that is an object but no native promise.
    follow: Option<JsObject>,
    /// The current Action's promise was fulfilled; the next poll tells the driver.
    fulfilled: bool,
    promise: Option<JsPromise>,
    driver: JsValue,
    // The driver's functions, looked up once.
    entry: JsObject,
    poll: JsObject,
    finish: JsObject,
    fire: JsObject,
    reset: JsObject,
    outbox: JsObject,
    fetch_done: JsObject,
    host: Option<Box<dyn Host>>,
    /// Requests of the current call still unanswered.
    pending: std::collections::HashSet<u64>,
}

fn describe(e: boa_engine::JsError) -> String {
    e.to_string()
}

impl Engine {
    /// Creates a context, evaluates the prelude and the hook once, and finds its export.
    pub fn compile(
        source: &str,
        secrets_json: &str,
        limits: Limits,
    ) -> Result<Engine, CompileError> {
        Engine::compile_steps(&[(source, secrets_json)], limits).map_err(|(_, e)| e)
    }

    /// One context for several steps of a flow, each `(source, secrets JSON)` evaluated
    /// once as its own CommonJS module: one legacy hook, or Actions only, which then run
    /// in one call (D21). A failure names the step (its index) that caused it.
    pub fn compile_steps(
        steps: &[(&str, &str)],
        limits: Limits,
    ) -> Result<Engine, (usize, CompileError)> {
        let internal = |e: String| (0, CompileError::Internal(e));
        let mut ctx = Context::default();
        ctx.runtime_limits_mut()
            .set_loop_iteration_limit(limits.loop_iterations);
        ctx.runtime_limits_mut()
            .set_recursion_limit(limits.recursion);
        // The prelude's completion value is the driver; it is never a global.
        let driver = ctx
            .eval(Source::from_bytes(PRELUDE))
            .map_err(|e| internal(describe(e)))?
            .as_object()
            .ok_or_else(|| internal("the prelude returned no driver".into()))?;
        let notify =
            FunctionObjectBuilder::new(ctx.realm(), NativeFunction::from_fn_ptr(note_fetch))
                .name(js_string!("noteFetch"))
                .build();
        call_method(&mut ctx, &driver, "setNotify", &[notify.into()]).map_err(internal)?;
        let rule =
            FunctionObjectBuilder::new(ctx.realm(), NativeFunction::from_fn_ptr(claim_carried))
                .name(js_string!("claimCarried"))
                .build();
        call_method(&mut ctx, &driver, "setClaimRule", &[rule.into()]).map_err(internal)?;
        // The built-ins load once per context, never per call. Compiling them is most of
        // a worker's start, which a replacement worker's first calls wait for, so they
        // load at start only for hooks whose source names one (once the sources loaded,
        // so a source refused first costs none), and otherwise on first use (a computed
        // `globalThis[name]` still finds them).
        let load =
            FunctionObjectBuilder::new(ctx.realm(), NativeFunction::from_fn_ptr(load_builtins))
                .name(js_string!("load"))
                .build();
        let names = JsArray::from_iter(
            BUILTIN_GLOBALS.map(|n| JsValue::from(JsString::from(n))),
            &mut ctx,
        );
        let eager = BUILTIN_GLOBALS
            .iter()
            .any(|n| steps.iter().any(|(source, _)| source.contains(n)));
        let ensure = call_method(
            &mut ctx,
            &driver,
            "builtins",
            &[load.into(), names.into(), JsValue::from(false)],
        )
        .map_err(internal)?;
        let mut found = Vec::with_capacity(steps.len());
        for (i, (source, _)) in steps.iter().enumerate() {
            let (form, f) = load_module(&mut ctx, &driver, source).map_err(|e| (i, e))?;
            if steps.len() > 1 && form == Form::Legacy {
                return Err((i, CompileError::NotAnAction));
            }
            found.push((form, f));
        }
        if eager && let Some(ensure) = ensure.as_callable() {
            ensure
                .call(&JsValue::undefined(), &[], &mut ctx)
                .map_err(|e| internal(describe(e)))?;
        }
        let form = found.first().map_or(Form::Action, |(f, _)| *f);
        // The legacy hook's secrets live in the driver (`context.webtask.secrets`); an
        // Action's event gets its secrets from Rust (`event`).
        if let (Form::Legacy, Some((_, secrets_json))) = (form, steps.first()) {
            call_method(
                &mut ctx,
                &driver,
                "setSecrets",
                &[JsValue::from(JsString::from(*secrets_json))],
            )
            .map_err(internal)?;
        }
        let hook_fn = match form {
            Form::Legacy => found[0].1.clone(),
            Form::Action => JsArray::from_iter(found.into_iter().map(|(_, f)| f), &mut ctx).into(),
        };
        let method = |ctx: &mut Context, name: &str| -> Result<JsObject, (usize, CompileError)> {
            driver
                .get(JsString::from(name), ctx)
                .ok()
                .and_then(|v| v.as_object())
                .filter(JsObject::is_callable)
                .ok_or_else(|| internal(format!("driver has no {name}")))
        };
        let (step_rejected, follow) = match form {
            Form::Legacy => (None, None),
            Form::Action => (
                Some(method(&mut ctx, "stepRejected")?),
                Some(method(&mut ctx, "follow")?),
            ),
        };
        let step = match form {
            Form::Legacy => None,
            Form::Action => {
                let mut function = |name: &str| {
                    method(&mut ctx, name).and_then(|f| {
                        JsFunction::from_object(f)
                            .ok_or_else(|| internal(format!("driver's {name} is not a function")))
                    })
                };
                let (target_scopes, view_claims, mark) = (
                    function("targetScopes")?,
                    function("viewClaims")?,
                    function("markParts")?,
                );
                let events = event::Events::new(target_scopes, view_claims, &mark, &mut ctx)
                    .map_err(|e| internal(describe(e)))?;
                Some((method(&mut ctx, "step")?, events))
            }
        };
        let secrets = Rc::new(
            steps
                .iter()
                .map(|(_, json)| serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
                .collect(),
        );
        let (entry, poll, fire) = match form {
            Form::Legacy => ("legacy", "poll", "fireTimers"),
            Form::Action => ("actions", "flowPoll", "flowFire"),
        };
        let entry = method(&mut ctx, entry)?;
        let poll = method(&mut ctx, poll)?;
        let fire = method(&mut ctx, fire)?;
        let finish = method(&mut ctx, "finish")?;
        let reset = method(&mut ctx, "reset")?;
        let outbox = method(&mut ctx, "outbox")?;
        let fetch_done = method(&mut ctx, "fetchDone")?;
        // Whatever the hooks' top level queued or printed belongs to no request.
        let _ = reset.call(&JsValue::from(driver.clone()), &[], &mut ctx);
        Ok(Engine {
            ctx,
            form,
            hook_fn,
            current: 0,
            secrets,
            step,
            step_rejected,
            follow,
            fulfilled: false,
            promise: None,
            driver: JsValue::from(driver),
            entry,
            poll,
            finish,
            fire,
            reset,
            outbox,
            fetch_done,
            host: None,
            pending: Default::default(),
        })
    }

    pub fn form(&self) -> Form {
        self.form
    }

    /// Where this engine's `fetch` requests go (see [`Host`]).
    pub fn set_host(&mut self, host: Box<dyn Host>) {
        self.host = Some(host);
    }

    /// Hands the requests the hook made since the last look to the host, or refuses
    /// them at once when there is none; true if it settled any (jobs to run).
    fn flush_outbox(&mut self) -> Result<bool, String> {
        if !FETCHED.with(|f| f.replace(false)) {
            return Ok(false);
        }
        let batch = self
            .outbox
            .call(&self.driver, &[], &mut self.ctx)
            .map_err(describe)?;
        let Some(text) = batch.as_string().map(|s| s.to_std_string_escaped()) else {
            return Ok(false);
        };
        let ids: Vec<Outgoing> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let sent = match self.host.as_mut() {
            Some(h) => h.send(self.current, &text),
            None => false,
        };
        for o in ids {
            if sent {
                self.pending.insert(o.id);
            } else {
                let refused = serde_json::json!({"id": o.id, "result": {"kind": "error", "reason": "refused",
                    "message": "this hook has no network here (fetch runs only through the sidecar)"}});
                self.deliver(&refused.to_string())?;
            }
        }
        Ok(!sent)
    }

    /// Settles one request's promise with the host's answer.
    fn deliver(&mut self, answer: &str) -> Result<(), String> {
        self.fetch_done
            .call(
                &self.driver,
                &[JsValue::from(JsString::from(answer))],
                &mut self.ctx,
            )
            .map(drop)
            .map_err(describe)
    }

    /// Waits until `until` for an answer to one of this call's requests; true if one
    /// came (and was delivered).
    fn await_answer(&mut self, until: Instant) -> Result<bool, String> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Some(answer) = self.host.as_mut().and_then(|h| h.wait(left)) else {
                return Ok(false);
            };
            let id = serde_json::from_str::<Outgoing>(&answer).map(|o| o.id);
            // An answer for a request of an earlier call is dropped.
            if id.is_ok_and(|id| self.pending.remove(&id)) {
                self.deliver(&answer)?;
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
        }
    }

    /// Runs one invocation with `input` until the hook settles, nothing is left
    /// to run, or `deadline` passes. Returns the outcome and the console lines (of the
    /// last step that ran, for an engine of several Actions).
    pub fn call(
        &mut self,
        input: &Rc<serde_json::Value>,
        deadline: Instant,
    ) -> (RawOutcome, Vec<LogLine>) {
        match self.call_steps(input, deadline, &[]).pop() {
            Some(Reply::Finished(text)) => parse_finished(&text),
            Some(Reply::Ended(outcome, logs)) => (outcome, logs),
            None => (
                RawOutcome::Aborted {
                    message: "no step ran".into(),
                },
                Vec::new(),
            ),
        }
    }

    /// Runs one invocation of the engine's steps in order, while each lets the request
    /// go on, and answers one reply per step that ran. A settled step comes back as the
    /// driver's JSON text, unparsed: a worker process forwards it as is and the pool
    /// parses it once. Step `i` runs until `limits[i]` after it started (none given:
    /// until `due`) or `due`, whichever is first.
    pub fn call_steps(
        &mut self,
        input: &Rc<serde_json::Value>,
        due: Instant,
        limits: &[Duration],
    ) -> Vec<Reply> {
        self.pending.clear();
        self.current = 0;
        self.promise = None;
        self.fulfilled = false;
        let deadline_of = |i: usize| {
            limits
                .get(i)
                .map_or(due, |l| (Instant::now() + *l).min(due))
        };
        let mut deadline = deadline_of(0);
        let mut replies = Vec::new();
        if let Some(h) = self.host.as_mut() {
            h.step_started(0);
        }
        let mut args = self.arguments(input);
        if self.form == Form::Action {
            args.push(self.target(input));
        }
        let state = match self.entry.call(&self.driver, &args, &mut self.ctx) {
            Ok(state) => state,
            Err(e) => {
                return vec![self.end(RawOutcome::Aborted {
                    message: describe(e),
                })];
            }
        };
        if self.form == Form::Action
            && let Err(message) = self.start_step(&state, input)
        {
            return vec![self.end(RawOutcome::Aborted { message })];
        }
        loop {
            if let Err(e) = self.ctx.run_jobs() {
                return self.ended(
                    replies,
                    RawOutcome::Aborted {
                        message: describe(e),
                    },
                );
            }
            match self.settle() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(message) => return self.ended(replies, RawOutcome::Aborted { message }),
            }
            match self.flush_outbox() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(message) => return self.ended(replies, RawOutcome::Aborted { message }),
            }
            // Legacy `poll` takes the state alone.
            let poll_args = [state.clone(), JsValue::from(self.fulfilled)];
            self.fulfilled = false;
            let polled = match self.poll.call(&self.driver, &poll_args, &mut self.ctx) {
                Ok(v) => v,
                Err(e) => {
                    return self.ended(
                        replies,
                        RawOutcome::Aborted {
                            message: describe(e),
                        },
                    );
                }
            };
            // The driver answers the milliseconds to the next timer while timers are
            // pending; else the step is over (settled, or nothing queued and nothing
            // pending, D8) and it answers the console lines (null for none), or for
            // Actions the step's state or the flow (see `finished`).
            if polled.is_object() || polled.is_null() {
                let (reply, goes_on) = self.finished(&state, polled);
                let go_on = self.current + 1 < self.step_count()
                    && goes_on
                    && matches!(&reply, Reply::Finished(_));
                replies.push(reply);
                if !go_on {
                    return replies;
                }
                // A late answer to the step before belongs to no one now.
                self.current += 1;
                self.pending.clear();
                deadline = deadline_of(self.current);
                if let Some(h) = self.host.as_mut() {
                    h.step_started(self.current);
                }
                if let Err(message) = self.start_step(&state, input) {
                    return self.ended(replies, RawOutcome::Aborted { message });
                }
                continue;
            }
            let Some(next) = polled.as_number() else {
                return self.ended(
                    replies,
                    RawOutcome::Aborted {
                        message: "driver returned no state".into(),
                    },
                );
            };
            let wait = Duration::from_millis(next.max(0.0) as u64);
            let now = Instant::now();
            if !self.pending.is_empty() {
                // Requests are out: an answer may come before the next timer.
                let until = (now + wait).min(deadline);
                match self.await_answer(until) {
                    Ok(true) => continue,
                    Ok(false) if Instant::now() >= deadline => {
                        return self.ended(replies, RawOutcome::TimedOut);
                    }
                    Ok(false) => {}
                    Err(message) => return self.ended(replies, RawOutcome::Aborted { message }),
                }
            } else {
                if now + wait > deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return self.ended(replies, RawOutcome::TimedOut);
                }
                std::thread::sleep(wait);
            }
            if let Err(e) =
                self.fire
                    .call(&self.driver, std::slice::from_ref(&state), &mut self.ctx)
            {
                return self.ended(
                    replies,
                    RawOutcome::Aborted {
                        message: describe(e),
                    },
                );
            }
        }
    }

    fn step_count(&self) -> usize {
        match self.form {
            Form::Legacy => 1,
            // One entry per Action.
            Form::Action => self.secrets.len(),
        }
    }

    /// Runs the current Action of `flow` with its event, made from `input`.
    fn start_step(&mut self, flow: &JsValue, input: &Rc<serde_json::Value>) -> Result<(), String> {
        let Some((step, events)) = &self.step else {
            return Err("not an engine of Actions".into());
        };
        let event = events.make(input, &self.secrets, self.current, flow, &mut self.ctx);
        let ret = step
            .call(
                &self.driver,
                &[JsValue::from(self.current as u32), event],
                &mut self.ctx,
            )
            .map_err(describe)?;
        self.promise = None;
        if let Some(o) = ret.as_object() {
            match JsPromise::from_object(o) {
                Ok(p) => self.promise = Some(p),
                // Some other object: a thenable is followed in JS.
                Err(_) => {
                    if let Some(f) = &self.follow {
                        f.call(&self.driver, &[ret], &mut self.ctx)
                            .map_err(describe)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands the driver how the current Action's promise settled, once it did; true if
    /// JS ran for it (a rejection's handler may have queued jobs). A fulfilment runs no
    /// JS of its own: the next poll carries it.
    fn settle(&mut self) -> Result<bool, String> {
        let state = match self.promise.as_ref().map(JsPromise::state) {
            None | Some(PromiseState::Pending) => return Ok(false),
            Some(s) => s,
        };
        self.promise = None;
        let PromiseState::Rejected(reason) = state else {
            self.fulfilled = true;
            return Ok(false);
        };
        if let Some(f) = &self.step_rejected {
            f.call(&self.driver, &[reason], &mut self.ctx)
                .map_err(describe)?;
        }
        Ok(true)
    }

    /// The target scopes the flow's Actions start from: the request's (or the Hook's,
    /// D19); the driver carries a step's changes to the next.
    fn target(&mut self, input: &serde_json::Value) -> JsValue {
        use serde_json::Value;
        match (input.get("target_scopes"), input.get("scope")) {
            (Some(t @ Value::Array(_)), _) | (_, Some(t @ Value::Array(_))) => {
                json::input(t, &mut self.ctx)
            }
            _ => json::input(&Value::Array(Vec::new()), &mut self.ctx),
        }
    }

    /// The driver entry's arguments (see `legacy` and `actions` in prelude.js): the hook
    /// and the fields of `input` it reads, built directly as JS values (Boa's JSON.parse
    /// costs ten times more). A missing field is undefined, as reading it was.
    fn arguments(&mut self, input: &serde_json::Value) -> Vec<JsValue> {
        let request = input.get("request");
        let names: &[(bool, &str)] = match self.form {
            Form::Legacy => &[
                (false, "client"),
                (false, "scope"),
                (false, "audience"),
                (true, "body"),
                (true, "ip"),
                (true, "user_agent"),
            ],
            // The flow's; each Action's event comes from `event`.
            Form::Action => &[(false, "cache"), (false, "now"), (false, "custom_claims")],
        };
        let mut args = Vec::with_capacity(names.len() + 1);
        args.push(self.hook_fn.clone());
        for &(in_request, name) in names {
            let from = if in_request { request } else { Some(input) };
            args.push(match from.and_then(|v| v.get(name)) {
                Some(v) => json::input(v, &mut self.ctx),
                None => JsValue::undefined(),
            });
        }
        args
    }

    /// The final JSON text of a step that is over. `entry` is what the driver's entry
    /// answered (the legacy state, or the flow); `polled` is the console lines, or for
    /// Actions the step's state or the flow, which then holds its state and lines.
    /// Also whether a next step may run: the text came without an error the writing
    /// itself found (a claim JSON cannot hold), and for Actions the step lets the
    /// request go on (`flowPoll` decides as `action_result` does).
    fn finished(&mut self, entry: &JsValue, polled: JsValue) -> (Reply, bool) {
        match self.form {
            Form::Legacy => self.step_text(entry, polled),
            Form::Action => {
                let is_flow = matches!((entry.as_object(), polled.as_object()),
                    (Some(f), Some(p)) if JsObject::equals(&f, &p));
                if !is_flow {
                    // The usual end: the request goes on and nothing was printed.
                    return self.step_text(&polled, JsValue::null());
                }
                let mut get = |name: JsString| -> JsValue {
                    polled
                        .as_object()
                        .and_then(|o| o.get(name, &mut self.ctx).ok())
                        .unwrap_or_default()
                };
                let (state, lines) = (get(js_string!("state")), get(js_string!("lines")));
                let goes_on = get(js_string!("goesOn")).to_boolean();
                let (reply, clean) = self.step_text(&state, lines);
                (reply, clean && goes_on)
            }
        }
    }

    /// One step's final JSON text from its state and console lines.
    fn step_text(&mut self, state: &JsValue, lines: JsValue) -> (Reply, bool) {
        if let Ok(text) = json::final_text(state, lines.as_object().as_ref(), &mut self.ctx) {
            // No JS ran and `poll` already dropped the console lines and timers.
            return (Reply::Finished(text), true);
        }
        let lines = if lines.is_null() {
            JsValue::undefined()
        } else {
            lines
        };
        let text = match self.driver_text(&self.finish.clone(), &[state.clone(), lines]) {
            Ok(t) => t,
            Err(message) => return (self.end(RawOutcome::Aborted { message }), false),
        };
        // Jobs that serializing the result queued (a toJSON method) run now and are
        // dropped, so nothing of this request reaches the next.
        let _ = self.ctx.run_jobs();
        let _ = self.reset.call(&self.driver, &[], &mut self.ctx);
        let clean = matches!(parse_finished(&text).0,
            RawOutcome::Finished { state } if state.error.is_none());
        (Reply::Finished(text), clean)
    }

    /// Ends an invocation whose current step did not settle: the steps before it as
    /// they finished, then this one's outcome.
    fn ended(&mut self, mut replies: Vec<Reply>, outcome: RawOutcome) -> Vec<Reply> {
        replies.push(self.end(outcome));
        replies
    }

    /// Ends a step that did not settle: collects its console lines and drops its
    /// leftover timers.
    fn end(&mut self, outcome: RawOutcome) -> Reply {
        let logs = self
            .driver_text(&self.finish.clone(), &[JsValue::undefined()])
            .ok()
            .and_then(|t| serde_json::from_str::<Poll>(&t).ok())
            .map(|p| p.logs)
            .unwrap_or_default();
        Reply::Ended(outcome, logs)
    }

    fn driver_text(&mut self, f: &JsObject, args: &[JsValue]) -> Result<String, String> {
        let out = f
            .call(&self.driver, args, &mut self.ctx)
            .map_err(describe)?;
        out.as_string()
            .map(|s| s.to_std_string_escaped())
            .ok_or_else(|| "driver returned no JSON".to_owned())
    }
}

/// How `call_raw` ended.
pub enum Reply {
    /// The driver's final JSON text (`{"state":…,"logs":[…]}`); see `parse_finished`.
    Finished(String),
    /// Timed out or aborted, with the console lines printed until then.
    Ended(RawOutcome, Vec<LogLine>),
}

/// Reads the driver's final JSON text into the outcome and console lines.
pub fn parse_finished(text: &str) -> (RawOutcome, Vec<LogLine>) {
    match serde_json::from_str::<Poll>(text) {
        Ok(Poll {
            state: Some(state),
            logs,
            ..
        }) => (
            RawOutcome::Finished {
                state: Box::new(state),
            },
            logs,
        ),
        Ok(_) => (
            RawOutcome::Aborted {
                message: "driver returned no state".into(),
            },
            Vec::new(),
        ),
        Err(e) => (
            RawOutcome::Aborted {
                message: format!("bad driver state: {e}"),
            },
            Vec::new(),
        ),
    }
}

/// Evaluates one hook source as Node evaluates a CommonJS module: inside a function of
/// `exports` and `module`, so its top-level names stay its own. The source is parsed
/// alone first, so a syntax error reads as in the file and no text can end the wrapper
/// early; the wrapper starts on the source's first line, so line numbers match it.
fn load_module(
    ctx: &mut Context,
    driver: &JsObject,
    source: &str,
) -> Result<(Form, JsValue), CompileError> {
    // The parser alone, on a scope of its own: a script compiled in `ctx` would claim
    // its top-level names in the shared global scope, clashing with the next step's.
    boa_engine::parser::Parser::new(Source::from_bytes(source))
        .parse_script(
            &boa_engine::ast::scope::Scope::new_global(),
            &mut boa_engine::interner::Interner::default(),
        )
        .map_err(|e| CompileError::Syntax(format!("SyntaxError: {e}")))?;
    let wrapped = format!("(function (exports, module) {{{source}\n}})");
    let wrapper = ctx
        .eval(Source::from_bytes(&wrapped))
        .map_err(|e| CompileError::Syntax(describe(e)))?;
    let module = call_method(ctx, driver, "load", &[wrapper]).map_err(CompileError::Syntax)?;
    let _ = ctx.run_jobs();
    let found = call_method(ctx, driver, "hook", &[module]).map_err(CompileError::Internal)?;
    let Some(found) = found.as_object() else {
        return Err(CompileError::NoExport);
    };
    let form = found
        .get(js_string!("form"), ctx)
        .ok()
        .and_then(|v| v.as_string().map(|s| s.to_std_string_escaped()));
    let hook_fn = found
        .get(js_string!("fn"), ctx)
        .map_err(|e| CompileError::Internal(describe(e)))?;
    match form.as_deref() {
        Some("legacy") => Ok((Form::Legacy, hook_fn)),
        Some("action") => Ok((Form::Action, hook_fn)),
        _ => Err(CompileError::NoExport),
    }
}

fn call_method(
    ctx: &mut Context,
    obj: &JsObject,
    name: &str,
    args: &[JsValue],
) -> Result<JsValue, String> {
    let f = obj.get(JsString::from(name), ctx).map_err(describe)?;
    let Some(f) = f.as_callable() else {
        return Err(format!("{name} is not a function"));
    };
    f.call(&JsValue::from(obj.clone()), args, ctx)
        .map_err(describe)
}
