//! One Boa context with the hook compiled once: the JS side of a hook worker process
//! (`worker`). Not `Send` (Boa's `Context` is not), so it lives and dies on that
//! process's main thread, and tests run it in place.
//!
//! Every value crosses the JS/Rust boundary as a JSON string made by JS's own
//! `JSON.stringify`, which gives exactly D11's conversions (docs/decisions.md) (functions and `undefined`
//! dropped, `NaN` → null, `Date` → ISO string) and keeps integers integral, avoiding the
//! pitfalls of Boa's `to_json` (cycles reported for functions, `Date` as `{}`).

use boa_engine::object::FunctionObjectBuilder;
use boa_engine::object::builtins::JsArray;
use boa_engine::{Context, JsObject, JsString, JsValue, NativeFunction, Source, js_string};
use serde::Deserialize;
use std::time::{Duration, Instant};

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
    /// Hands over a batch of requests (the driver's outbox JSON). False if it cannot.
    fn send(&mut self, requests: &str) -> bool;
    /// Waits up to `max` for one answer (`{"id": …, "result": …}`).
    fn wait(&mut self, max: Duration) -> Option<String>;
}

/// The request ids of a driver outbox batch.
#[derive(Deserialize)]
struct Outgoing {
    id: u64,
}

pub struct Engine {
    ctx: Context,
    form: Form,
    hook_fn: JsValue,
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
        let mut ctx = Context::default();
        ctx.runtime_limits_mut()
            .set_loop_iteration_limit(limits.loop_iterations);
        ctx.runtime_limits_mut()
            .set_recursion_limit(limits.recursion);
        // The prelude's completion value is the driver; it is never a global.
        let driver = ctx
            .eval(Source::from_bytes(PRELUDE))
            .map_err(|e| CompileError::Internal(describe(e)))?
            .as_object()
            .ok_or_else(|| CompileError::Internal("the prelude returned no driver".into()))?;
        call_method(
            &mut ctx,
            &driver,
            "setSecrets",
            &[JsValue::from(JsString::from(secrets_json))],
        )
        .map_err(CompileError::Internal)?;
        let notify =
            FunctionObjectBuilder::new(ctx.realm(), NativeFunction::from_fn_ptr(note_fetch))
                .name(js_string!("noteFetch"))
                .build();
        call_method(&mut ctx, &driver, "setNotify", &[notify.into()])
            .map_err(CompileError::Internal)?;
        // The built-ins load once per context, never per call. Compiling them is most of
        // a worker's start, which a replacement worker's first calls wait for, so they
        // load now only for a hook whose source names one, and otherwise on first use
        // (a computed `globalThis[name]` still finds them).
        let load =
            FunctionObjectBuilder::new(ctx.realm(), NativeFunction::from_fn_ptr(load_builtins))
                .name(js_string!("load"))
                .build();
        let names = JsArray::from_iter(
            BUILTIN_GLOBALS.map(|n| JsValue::from(JsString::from(n))),
            &mut ctx,
        );
        let eager = BUILTIN_GLOBALS.iter().any(|n| source.contains(n));
        call_method(
            &mut ctx,
            &driver,
            "builtins",
            &[load.into(), names.into(), JsValue::from(eager)],
        )
        .map_err(CompileError::Internal)?;
        ctx.eval(Source::from_bytes(source))
            .map_err(|e| CompileError::Syntax(describe(e)))?;
        let _ = ctx.run_jobs();
        let found = call_method(&mut ctx, &driver, "hook", &[]).map_err(CompileError::Internal)?;
        let Some(found) = found.as_object() else {
            return Err(CompileError::NoExport);
        };
        let form = found
            .get(js_string!("form"), &mut ctx)
            .ok()
            .and_then(|v| v.as_string().map(|s| s.to_std_string_escaped()));
        let hook_fn = found
            .get(js_string!("fn"), &mut ctx)
            .map_err(|e| CompileError::Internal(describe(e)))?;
        let form = match form.as_deref() {
            Some("legacy") => Form::Legacy,
            Some("action") => Form::Action,
            _ => return Err(CompileError::NoExport),
        };
        let method = |ctx: &mut Context, name: &str| -> Result<JsObject, CompileError> {
            driver
                .get(JsString::from(name), ctx)
                .ok()
                .and_then(|v| v.as_object())
                .filter(JsObject::is_callable)
                .ok_or_else(|| CompileError::Internal(format!("driver has no {name}")))
        };
        let entry = method(
            &mut ctx,
            match form {
                Form::Legacy => "legacy",
                Form::Action => "action",
            },
        )?;
        let poll = method(&mut ctx, "poll")?;
        let finish = method(&mut ctx, "finish")?;
        let fire = method(&mut ctx, "fireTimers")?;
        let reset = method(&mut ctx, "reset")?;
        let outbox = method(&mut ctx, "outbox")?;
        let fetch_done = method(&mut ctx, "fetchDone")?;
        // Whatever the hook's top level queued or printed belongs to no request.
        let _ = reset.call(&JsValue::from(driver.clone()), &[], &mut ctx);
        Ok(Engine {
            ctx,
            form,
            hook_fn,
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
            Some(h) => h.send(&text),
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
    /// to run, or `deadline` passes. Returns the outcome and the console lines.
    pub fn call(
        &mut self,
        input: &serde_json::Value,
        deadline: Instant,
    ) -> (RawOutcome, Vec<LogLine>) {
        match self.call_raw(input, deadline) {
            Reply::Finished(text) => parse_finished(&text),
            Reply::Ended(outcome, logs) => (outcome, logs),
        }
    }

    /// As `call`, but a settled invocation comes back as the driver's JSON text,
    /// unparsed: a worker process forwards it as is and the pool parses it once.
    pub fn call_raw(&mut self, input: &serde_json::Value, deadline: Instant) -> Reply {
        self.pending.clear();
        let args = self.arguments(input);
        let state = match self.entry.call(&self.driver, &args, &mut self.ctx) {
            Ok(state) => state,
            Err(e) => {
                return self.end(RawOutcome::Aborted {
                    message: describe(e),
                });
            }
        };
        loop {
            if let Err(e) = self.ctx.run_jobs() {
                return self.end(RawOutcome::Aborted {
                    message: describe(e),
                });
            }
            match self.flush_outbox() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(message) => return self.end(RawOutcome::Aborted { message }),
            }
            let polled =
                match self
                    .poll
                    .call(&self.driver, std::slice::from_ref(&state), &mut self.ctx)
                {
                    Ok(v) => v,
                    Err(e) => {
                        return self.end(RawOutcome::Aborted {
                            message: describe(e),
                        });
                    }
                };
            // The driver answers the milliseconds to the next timer while timers are
            // pending; else the invocation is over (settled, or nothing queued and
            // nothing pending, D8) and it answers the console lines (null for none).
            if polled.is_object() || polled.is_null() {
                return self.finished(state, polled);
            }
            let Some(next) = polled.as_number() else {
                return self.end(RawOutcome::Aborted {
                    message: "driver returned no state".into(),
                });
            };
            let wait = Duration::from_millis(next.max(0.0) as u64);
            let now = Instant::now();
            if !self.pending.is_empty() {
                // Requests are out: an answer may come before the next timer.
                let until = (now + wait).min(deadline);
                match self.await_answer(until) {
                    Ok(true) => continue,
                    Ok(false) if Instant::now() >= deadline => {
                        return self.end(RawOutcome::TimedOut);
                    }
                    Ok(false) => {}
                    Err(message) => return self.end(RawOutcome::Aborted { message }),
                }
            } else {
                if now + wait > deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return self.end(RawOutcome::TimedOut);
                }
                std::thread::sleep(wait);
            }
            if let Err(e) =
                self.fire
                    .call(&self.driver, std::slice::from_ref(&state), &mut self.ctx)
            {
                return self.end(RawOutcome::Aborted {
                    message: describe(e),
                });
            }
        }
    }

    /// The driver entry's arguments (see `legacy` and `action` in prelude.js): the hook
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
            Form::Action => &[
                (false, "client"),
                (false, "scope"),
                (false, "requested_scope"),
                (false, "audience"),
                (true, "body"),
                (true, "ip"),
                (true, "method"),
                (true, "hostname"),
                (true, "user_agent"),
                (true, "language"),
                (false, "cache"),
                (false, "now"),
                // What earlier steps of the flow did (D19, `flow::View`).
                (false, "custom_claims"),
                (false, "target_scopes"),
            ],
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

    /// The final JSON text of an invocation that is over.
    fn finished(&mut self, state: JsValue, lines: JsValue) -> Reply {
        if let Ok(text) = json::final_text(&state, lines.as_object().as_ref(), &mut self.ctx) {
            // No JS ran and `poll` already dropped the console lines and timers.
            return Reply::Finished(text);
        }
        let lines = if lines.is_null() {
            JsValue::undefined()
        } else {
            lines
        };
        let text = match self.driver_text(&self.finish.clone(), &[state, lines]) {
            Ok(t) => t,
            Err(message) => return self.end(RawOutcome::Aborted { message }),
        };
        // Jobs that serializing the result queued (a toJSON method) run now and are
        // dropped, so nothing of this request reaches the next.
        let _ = self.ctx.run_jobs();
        let _ = self.reset.call(&self.driver, &[], &mut self.ctx);
        Reply::Finished(text)
    }

    /// Ends an invocation that did not settle: collects its console lines and drops
    /// its leftover timers.
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
