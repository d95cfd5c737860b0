//! Hook semantics, both forms, run on the real engine and rules in this thread (the
//! worker process adds isolation, tested in `tests/hooks.rs`): decisions D1, D2, D5–D8,
//! D11, D13–D15 of docs/decisions.md (D12 is tested with the rules in `token::claims`).

use super::*;
use engine::{Engine, Limits};
use serde_json::json;
use std::cell::RefCell;

/// One step's result, as `StepRun` has it.
struct Invocation {
    result: Result<HookEffect, HookFailure>,
    logs: Vec<LogLine>,
}

/// One engine with the hook compiled, driven like a worker drives it.
struct Inline {
    engine: RefCell<Engine>,
    timeout: Duration,
    cache: cache::SharedCache,
}

impl Inline {
    fn invoke(&self, call: &HookCall) -> Invocation {
        let mut engine = self.engine.borrow_mut();
        let form = engine.form();
        let snapshot = (form == Form::Action).then(|| self.cache.snapshot(cache::now_ms()));
        let input = std::rc::Rc::new(input_json(call, snapshot.as_ref()));
        let (outcome, logs) = engine.call(&input, Instant::now() + self.timeout);
        let (result, ops) = interpret(form, "t", outcome, self.timeout);
        self.cache.apply(ops, cache::now_ms());
        Invocation { result, logs }
    }
}

fn pool_with(source: &str, timeout_ms: u64, secrets: &[(&str, &str)]) -> Inline {
    let secrets: BTreeMap<String, String> = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let engine = Engine::compile(
        source,
        &serde_json::to_string(&secrets).unwrap(),
        Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Inline {
        engine: RefCell::new(engine),
        timeout: Duration::from_millis(timeout_ms),
        cache: Default::default(),
    }
}

fn legacy(body: &str) -> String {
    format!("module.exports = function (client, scope, audience, context, cb) {{ {body} }};")
}

fn call() -> HookCall {
    HookCall {
        client: HookClient {
            id: "svc".into(),
            name: "Svc".into(),
            tenant: Some("acme".into()),
            metadata: [("region".to_string(), "eu".to_string())].into(),
        },
        scope: Some(vec!["read".into()]),
        audience: Some("https://api".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("curl/8".into()),
        body: json!({"grant_type": "client_credentials"})
            .as_object()
            .cloned()
            .unwrap(),
        ..Default::default()
    }
}

fn run(source: &str) -> Invocation {
    pool_with(source, 2000, &[]).invoke(&call())
}

fn claims_of(inv: &Invocation) -> serde_json::Map<String, Value> {
    inv.result.as_ref().expect("hook succeeded").claims.clone()
}

#[test]
fn seed_hook_file_runs_as_shipped() {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/seed.js")).unwrap();
    let inv = run(&src);
    let effect = inv.result.unwrap();
    assert_eq!(effect.scope, Some(vec!["read".into(), "extra".into()]));
    assert_eq!(effect.claims["https://foo.com/claim"], "bar");
}

#[test]
fn arguments_match_auth0() {
    let inv = run(&legacy(
        "cb(null, {'https://x/args': {client: client, scope: scope, audience: audience, ip: context.ip, ua: context.userAgent, body: context.body, wt: Object.keys(context.webtask).sort()}})",
    ));
    assert_eq!(
        claims_of(&inv)["https://x/args"],
        json!({"client": {"id": "svc", "name": "Svc", "tenant": "acme", "metadata": {"region": "eu"}},
               "scope": ["read"], "audience": "https://api", "ip": "203.0.113.7", "ua": "curl/8",
               "body": {"grant_type": "client_credentials"}, "wt": ["body", "secrets"]})
    );
}

#[test]
fn scope_is_undefined_when_none_granted() {
    let pool = pool_with(
        &legacy("cb(null, {'https://x/t': typeof scope})"),
        2000,
        &[],
    );
    let mut c = call();
    c.scope = None;
    let inv = pool.invoke(&c);
    assert_eq!(claims_of(&inv)["https://x/t"], "undefined");
}

#[test]
fn secrets_are_visible_to_the_hook_only_d15() {
    let pool = pool_with(
        &legacy("cb(null, {'https://x/s': context.webtask.secrets.API_KEY})"),
        2000,
        &[("API_KEY", "s3cr3t")],
    );
    let inv = pool.invoke(&call());
    assert_eq!(claims_of(&inv)["https://x/s"], "s3cr3t");
    // A hook mutating its secrets does not leak into the next run.
    let pool = pool_with(
        &legacy(
            "var before = context.webtask.secrets.K; context.webtask.secrets.K = 'changed'; cb(null, {'https://x/k': before})",
        ),
        2000,
        &[("K", "orig")],
    );
    for _ in 0..2 {
        assert_eq!(claims_of(&pool.invoke(&call()))["https://x/k"], "orig");
    }
}

#[test]
fn error_classes_map_to_oauth_errors_d1() {
    for (body, status, code, desc) in [
        ("cb(new InvalidScopeError('s'))", 400, "invalid_scope", "s"),
        (
            "cb(new InvalidRequestError('r'))",
            400,
            "invalid_request",
            "r",
        ),
        ("cb(new ServerError('e'))", 500, "server_error", "e"),
        ("cb(new TypeError('t'))", 500, "server_error", "t"),
        ("cb('just a string')", 500, "server_error", "just a string"),
        ("null.x", 500, "server_error", "null"),
        (
            "throw new InvalidScopeError('thrown denial')",
            400,
            "invalid_scope",
            "thrown denial",
        ),
    ] {
        let inv = run(&legacy(body));
        let err = inv.result.unwrap_err();
        let e = err.error();
        assert_eq!(
            (e.http_status(), e.code().as_str()),
            (status, code),
            "{body}: {e}"
        );
        assert!(e.description().contains(desc), "{body}: {e}");
    }
}

#[test]
fn error_subclass_name_is_kept() {
    let inv = run(&legacy(
        "class Mine extends InvalidScopeError {}; cb(new Mine('sub'))",
    ));
    // Auth0 picks the OAuth error by `name`, which is the subclass's.
    assert_eq!(inv.result.unwrap_err().error().http_status(), 500);
}

#[test]
fn first_callback_wins_d7() {
    let inv = run(&legacy(
        "cb(null, {'https://x/n': 1}); cb(null, {'https://x/n': 2}); cb(new Error('late'))",
    ));
    assert_eq!(claims_of(&inv)["https://x/n"], 1);
}

#[test]
fn no_callback_and_rejections_d8() {
    let inv = run(&legacy("var x = 1;"));
    assert_eq!(
        inv.result.unwrap_err().error().description(),
        "hook completed without calling back"
    );
    let src = "module.exports = async function (client, scope, audience, context, cb) { throw new Error('async boom'); };";
    assert_eq!(
        run(src).result.unwrap_err().error().description(),
        "async boom"
    );
    // An async hook that calls back after awaiting is fine.
    let src = "module.exports = async function (c, scope, a, ctx, cb) { await null; cb(null, {scope: scope}); };";
    assert_eq!(run(src).result.unwrap().scope, Some(vec!["read".into()]));
}

#[test]
fn timers_work_and_the_limit_holds_d9() {
    let inv = run(&legacy(
        "setTimeout(function () { cb(null, {'https://x/t': 'late'}); }, 20);",
    ));
    assert_eq!(claims_of(&inv)["https://x/t"], "late");
    let inv = run(&legacy(
        "var t = setTimeout(function () { cb(new Error('cleared?')); }, 10); clearTimeout(t); setTimeout(function () { cb(null, {}); }, 20);",
    ));
    assert!(inv.result.is_ok());
    let pool = pool_with(
        &legacy("setTimeout(function () { cb(null, {}); }, 60000);"),
        200,
        &[],
    );
    let started = Instant::now();
    let inv = pool.invoke(&call());
    assert_eq!(
        inv.result.unwrap_err().error().description(),
        "hook timed out after 200 ms"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Leftover timers never fire during the next run.
    let pool = pool_with(
        &legacy(
            "if (!globalThis.n) { globalThis.n = 1; setTimeout(function () { globalThis.leak = true; }, 1000); cb(null, {}); } else { cb(null, {'https://x/leak': !!globalThis.leak}); }",
        ),
        2000,
        &[],
    );
    pool.invoke(&call()).result.unwrap();
    assert_eq!(claims_of(&pool.invoke(&call()))["https://x/leak"], false);
}

#[test]
fn runaway_loops_and_recursion_end_with_an_error_and_the_worker_survives() {
    let pool = pool_with(
        &legacy(
            "if (context.body.mode === 'loop') { for (;;) {} } if (context.body.mode === 'rec') { (function f() { return f() + 1; })(); } cb(null, {'https://x/ok': true});",
        ),
        5000,
        &[],
    );
    for mode in ["loop", "rec"] {
        let mut c = call();
        c.body.insert("mode".into(), mode.into());
        let err = pool.invoke(&c).result.unwrap_err();
        assert_eq!(err.error().http_status(), 500, "{mode}");
        assert!(
            err.error().description().starts_with("hook aborted"),
            "{mode}: {}",
            err.error().description()
        );
    }
    assert_eq!(claims_of(&pool.invoke(&call()))["https://x/ok"], true);
}

#[test]
fn values_convert_like_json_stringify_d11() {
    let inv = run(&legacy(
        "cb(null, {'https://x/v': {f: function () {}, u: undefined, n: NaN, i: Infinity, d: new Date(0), big: 1700000000, neg: -5, arr: [1, undefined, function () {}]}})",
    ));
    let v = &claims_of(&inv)["https://x/v"];
    assert_eq!(
        v,
        &json!({"n": null, "i": null, "d": "1970-01-01T00:00:00.000Z", "big": 1700000000, "neg": -5, "arr": [1, null, null]})
    );
    assert!(v["big"].is_u64(), "1700000000 must stay an integer");
}

#[test]
fn unserializable_result_is_a_server_error() {
    let inv = run(&legacy(
        "var o = {}; o.self = o; cb(null, {'https://x/o': o})",
    ));
    let err = inv.result.unwrap_err();
    assert!(
        err.error()
            .description()
            .starts_with("hook result is not serializable"),
        "{}",
        err.error().description()
    );
}

#[test]
fn require_gives_the_built_ins_and_fails_naming_any_other_module_d13() {
    // `axios` is an npm module given as a built-in by its bare name only.
    for name in ["request", "node:fs", "node:axios", "aws-sdk"] {
        let inv = run(&legacy(&format!(
            "var r = require('{name}'); cb(null, {{}})"
        )));
        let err = inv.result.unwrap_err();
        assert_eq!(err.error().http_status(), 500, "{name}");
        assert_eq!(
            err.error().description(),
            format!(
                "Cannot find module '{name}': tokenhook hooks can load only the Node built-ins \
                 buffer, crypto, querystring, url, util (with or without node:) and the npm \
                 module axios, no other npm modules"
            ),
        );
    }
    let inv = run(&legacy(
        "var a = require('axios'); cb(null, {'https://x/a': typeof a.get + typeof a.create + (a.default === a)})",
    ));
    assert_eq!(claims_of(&inv)["https://x/a"], "functionfunctiontrue");
    // The lists the rest of the crate trusts (the importer) are what `require` gives.
    for m in engine::BUILTIN_MODULES {
        let inv = run(&legacy(&format!(
            "cb(null, {{'https://x/m': typeof require('{m}') + typeof require('node:{m}')}})"
        )));
        assert_eq!(claims_of(&inv)["https://x/m"], "objectobject", "{m}");
    }
    for m in engine::BUILTIN_PACKAGES {
        let inv = run(&legacy(&format!(
            "cb(null, {{'https://x/m': typeof require('{m}')}})"
        )));
        assert_eq!(claims_of(&inv)["https://x/m"], "function", "{m}");
    }
    // Each built-in by both names is one and the same module object.
    let inv = run(&legacy(
        "var same = ['buffer', 'crypto', 'querystring', 'url', 'util'].every(function (m) { \
           return typeof require(m) === 'object' && require(m) === require('node:' + m); }); \
         cb(null, {'https://x/same': same, 'https://x/buf': require('buffer').Buffer === Buffer})",
    ));
    assert_eq!(claims_of(&inv)["https://x/same"], true);
    assert_eq!(claims_of(&inv)["https://x/buf"], true);
}

#[test]
fn built_ins_load_on_first_use_when_the_source_names_none_d13() {
    // Names built at run time: the source mentions no built-in, so they load lazily.
    let g = |name: &str| format!("globalThis['{}' + '{}']", &name[..2], &name[2..]);
    let pool = pool_with(
        &legacy(&format!(
            "var before = Object.getOwnPropertyDescriptor(globalThis, 'Bu' + 'ffer').get !== undefined; \
             {url} = 'mine'; \
             var hex = {buf}.from('hi').toString('hex'); \
             var sig = {req}('node:' + 'cry' + 'pto').createHmac('sha256', 'k').update('x').digest('hex'); \
             cb(null, {{'https://x/r': [before, hex, sig, {url}, typeof {b64}]}})",
            url = g("URL"),
            buf = g("Buffer"),
            req = g("require"),
            b64 = g("atob"),
        )),
        2000,
        &[],
    );
    for first in [true, false] {
        assert_eq!(
            claims_of(&pool.invoke(&call()))["https://x/r"],
            json!([
                first,
                "6869",
                "c38edc8815c8489f64738978f44008f8596345545f0baa68ef6fcf5c53e57189",
                "mine",
                "function"
            ]),
            "first call: {first}"
        );
    }
}

#[test]
fn built_ins_cannot_reach_the_natives_and_survive_a_hook_replacing_globals() {
    // The natives are in builtins.js's closure only; a hook that overwrites a global
    // built-in changes its own view, not the next call's modules.
    let pool = pool_with(
        &legacy(
            "var before = require('crypto').createHash('sha256').update('x').digest('hex'); \
             var leaked = Object.getOwnPropertyNames(globalThis).filter(function (k) { return /native|hmac|digest/i.test(k); }); \
             Buffer = null; cb(null, {'https://x/h': before, 'https://x/leaked': leaked})",
        ),
        2000,
        &[],
    );
    for _ in 0..2 {
        let claims = claims_of(&pool.invoke(&call()));
        assert_eq!(
            claims["https://x/h"],
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
        assert_eq!(claims["https://x/leaked"], json!([]));
    }
}

// The engine has no host APIs of its own; `fetch` exists but only the sidecar performs
// it, so an engine without that channel (run in place) refuses every request. Breaks if
// a host global appeared, or if `fetch` reached the network without the sidecar.
#[test]
fn sandbox_has_no_host_access() {
    let inv = run(&legacy(
        "cb(null, {'https://x/g': [typeof process, typeof fetch, typeof XMLHttpRequest, typeof Deno, typeof Bun].join(',')})",
    ));
    assert_eq!(
        claims_of(&inv)["https://x/g"],
        "undefined,function,undefined,undefined,undefined"
    );
    let inv = run(&legacy(
        "fetch('http://127.0.0.1:9/').then(function () { cb(null, {'https://x/f': 'reached'}); }, \
         function (e) { cb(null, {'https://x/f': e.name + ': ' + e.message, 'https://x/c': e.cause.code}); });",
    ));
    let claims = claims_of(&inv);
    assert_eq!(
        claims["https://x/f"],
        "TypeError: fetch failed: this hook has no network here (fetch runs only through the sidecar)"
    );
    assert_eq!(claims["https://x/c"], "refused");
}

#[test]
fn console_lines_are_captured_and_capped() {
    let inv = run(&legacy(
        "console.log('hello', {a: 1}); console.error('x'.repeat(5000)); cb(null, {})",
    ));
    assert_eq!(
        inv.logs[0],
        LogLine {
            level: "info".into(),
            line: "hello {\"a\":1}".into()
        }
    );
    assert_eq!(inv.logs[1].level, "error");
    assert!(inv.logs[1].line.chars().count() <= 1025);
}

fn action(body: &str) -> String {
    format!("exports.onExecuteCredentialsExchange = async (event, api) => {{ {body} }};")
}

#[test]
fn action_event_matches_auth0() {
    let pool = pool_with(
        &action(
            "api.accessToken.setCustomClaim('https://x/e', JSON.parse(JSON.stringify(event)));",
        ),
        2000,
        &[("K", "v")],
    );
    let mut c = call();
    c.requested_scope = Some(vec!["read".into()]);
    c.hostname = Some("auth.example.com".into());
    c.method = "POST".into();
    let inv = pool.invoke(&c);
    let e = &claims_of(&inv)["https://x/e"];
    assert_eq!(
        e["client"],
        json!({"client_id": "svc", "name": "Svc", "metadata": {"region": "eu"}})
    );
    assert_eq!(
        e["accessToken"],
        json!({"scope": ["read"], "customClaims": {}})
    );
    assert_eq!(e["request"]["ip"], "203.0.113.7");
    assert_eq!(e["request"]["user_agent"], "curl/8");
    assert_eq!(e["request"]["hostname"], "auth.example.com");
    assert_eq!(e["request"]["method"], "POST");
    assert_eq!(
        e["request"]["body"],
        json!({"grant_type": "client_credentials"})
    );
    assert_eq!(e["resource_server"], json!({"identifier": "https://api"}));
    assert_eq!(e["tenant"], json!({"id": "acme"}));
    assert_eq!(
        e["transaction"],
        json!({"requested_scopes": ["read"], "target_scopes": ["read"]})
    );
    assert_eq!(e["secrets"], json!({"K": "v"}));
    // D14: what the sidecar cannot know is absent, never invented.
    assert!(e["request"].get("geoip").is_none());
    assert!(e.get("organization").is_none());
}

#[test]
fn action_claims_are_chainable_and_plain_names_allowed() {
    let inv = run(&action(
        "api.accessToken.setCustomClaim('https://x/a', 1).accessToken.setCustomClaim('plain', {b: [1, 2]}); api.accessToken.setCustomClaim('https://x/a', 3);",
    ));
    let effect = inv.result.unwrap();
    assert_eq!(effect.form, claims::EffectForm::Action);
    assert_eq!(
        effect.claims,
        json!({"https://x/a": 3, "plain": {"b": [1, 2]}})
            .as_object()
            .cloned()
            .unwrap()
    );
    assert_eq!(effect.scope, None);
}

#[test]
fn action_deny_codes_d2() {
    for (code, status, want) in [
        ("invalid_scope", 400, "invalid_scope"),
        ("invalid_request", 400, "invalid_request"),
        ("server_error", 500, "server_error"),
        ("access_denied", 500, "server_error"),
    ] {
        let inv = run(&action(&format!(
            "api.access.deny('{code}', 'because'); api.accessToken.setCustomClaim('https://x/a', 1);"
        )));
        let e = inv.result.unwrap_err().into_error();
        assert_eq!(
            (e.http_status(), e.code().as_str()),
            (status, want),
            "{code}"
        );
        if code == "access_denied" {
            assert!(
                e.description().contains("not allowed"),
                "{}",
                e.description()
            );
        } else {
            assert_eq!(e.description(), "because");
        }
    }
}

#[test]
fn action_target_scopes_d6() {
    let inv = run(&action(
        "api.transaction.addTargetScope('write'); api.transaction.removeTargetScope('read'); api.transaction.addTargetScope('admin');",
    ));
    assert_eq!(
        inv.result.unwrap().scope,
        Some(vec!["write".into(), "admin".into()])
    );
    let inv = run(&action("api.transaction.setTargetScopes(['a', 'a', 'b']);"));
    assert_eq!(
        inv.result.unwrap().scope,
        Some(vec!["a".into(), "b".into()])
    );
    let inv = run(&action("api.transaction.clearTargetScopes();"));
    assert_eq!(inv.result.unwrap().scope, Some(vec![]));
    // Invalid scopes throw, and an uncaught throw fails the request.
    let inv = run(&action("api.transaction.addTargetScope('two words');"));
    assert!(
        inv.result
            .unwrap_err()
            .error()
            .description()
            .contains("invalid scope")
    );
    // Through the claim rules the result is intersected with the grant.
    let granted = json!({"scope": "read write"}).as_object().cloned().unwrap();
    let effect = run(&action("api.transaction.addTargetScope('admin');"))
        .result
        .unwrap();
    let out = claims::apply(
        granted,
        effect,
        claims::ClaimPolicy {
            allow_unnamespaced: false,
        },
    )
    .unwrap();
    assert_eq!(out.scopes, vec!["read"]);
}

#[test]
fn action_errors_and_unsettled_promises() {
    let inv = run(&action("throw new Error('boom');"));
    assert_eq!(inv.result.unwrap_err().error().description(), "boom");
    let inv = run("exports.onExecuteCredentialsExchange = (event, api) => new Promise(() => {});");
    assert!(
        inv.result
            .unwrap_err()
            .error()
            .description()
            .contains("never settled")
    );
    let inv = run(&action(
        "await new Promise(r => setTimeout(r, 10)); api.accessToken.setCustomClaim('https://x/t', 'after');",
    ));
    assert_eq!(claims_of(&inv)["https://x/t"], "after");
    let inv = run(
        "exports.onExecuteCredentialsExchange = (event, api) => { api.accessToken.setCustomClaim('https://x/sync', true); };",
    );
    assert_eq!(claims_of(&inv)["https://x/sync"], true);
}

#[test]
fn action_cache_is_shared_across_calls_with_auth0_limits() {
    let pool = pool_with(
        &action(
            "const hit = api.cache.get('token'); \
             if (!hit) { api.cache.set('token', 'cached-' + event.client.client_id, {ttl: 60000}); } \
             api.accessToken.setCustomClaim('https://x/hit', hit ? hit.value : null); \
             api.accessToken.setCustomClaim('https://x/big', api.cache.set('big', 'x'.repeat(5000))); \
             api.accessToken.setCustomClaim('https://x/long', api.cache.set('k'.repeat(65), 'v'));",
        ),
        2000,
        &[],
    );
    let first = claims_of(&pool.invoke(&call()));
    assert_eq!(first["https://x/hit"], Value::Null);
    assert_eq!(
        first["https://x/big"],
        json!({"type": "error", "code": "VALUE_TOO_LARGE"})
    );
    assert_eq!(
        first["https://x/long"],
        json!({"type": "error", "code": "KEY_TOO_LARGE"})
    );
    let second = claims_of(&pool.invoke(&call()));
    assert_eq!(second["https://x/hit"], "cached-svc");
    let pool2 = pool_with(
        &action(
            "api.cache.delete('token'); api.accessToken.setCustomClaim('https://x/after', api.cache.get('token') === undefined);",
        ),
        2000,
        &[],
    );
    assert_eq!(claims_of(&pool2.invoke(&call()))["https://x/after"], true);
}

#[test]
fn hooks_cannot_reach_the_driver_or_leak_into_the_next_call() {
    // The driver is not a global; replacing built-ins only affects the hook's own values.
    let inv = run(&legacy(
        "var seen = typeof __tokenhook; JSON.stringify = function () { return '{}'; }; \
         Array.prototype.filter = function () { return []; }; cb(null, {'https://x/t': seen, scope: scope});",
    ));
    assert_eq!(claims_of(&inv)["https://x/t"], "undefined");
    assert_eq!(inv.result.unwrap().scope, Some(vec!["read".into()]));
    // Top-level console lines and timers belong to no request; jobs queued while the
    // result is serialized do not reach the next call.
    let pool = pool_with(
        "console.log('top level'); setTimeout(function () { throw new Error('stray'); }, 0); \
         module.exports = function (client, scope, audience, context, cb) { \
           console.log('call for', context.body.who); \
           cb(null, {'https://x/r': {toJSON: function () { Promise.resolve().then(function () { console.log('leaked from', context.body.who); }); return 1; }}}); };",
        2000,
        &[],
    );
    for who in ["alice", "bob"] {
        let mut c = call();
        c.body.insert("who".into(), who.into());
        let inv = pool.invoke(&c);
        assert!(inv.result.is_ok(), "{who}: {:?}", inv.result);
        let lines: Vec<&str> = inv.logs.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, vec![format!("call for {who}").as_str()], "{who}");
    }
}

#[test]
fn odd_but_valid_values_do_not_break_the_driver() {
    let inv = run(&action(
        "api.cache.set('constructor', 'v', {ttl: 1500.5}); api.cache.set('__proto__', 'w'); \
         api.accessToken.setCustomClaim('https://x/c', api.cache.get('constructor').value); \
         api.accessToken.setCustomClaim('https://x/missing', api.cache.get('toString') === undefined); \
         await new Promise(function (r) { setTimeout(r, Infinity); });",
    ));
    let claims = claims_of(&inv);
    assert_eq!(claims["https://x/c"], "v");
    assert_eq!(claims["https://x/missing"], true);
}

/// The Node built-ins against Node's own results for the same expressions
/// (tests/fixtures/node-apis: `gen.mjs` ran them in Node into `expected.json`, and
/// `run.js` runs each one the same way in both).
#[test]
fn node_builtins_match_nodes_own_output_d13() {
    let fixtures: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/node-apis/expected.json")).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    let exprs: Vec<&str> = cases.iter().map(|c| c["expr"].as_str().unwrap()).collect();
    let src = format!(
        "const runCase = {};\nconst exprs = {};\n\
         exports.onExecuteCredentialsExchange = async (event, api) => {{ \
           const out = []; for (const e of exprs) out.push(await runCase(e, require)); \
           api.accessToken.setCustomClaim('https://x/r', out); }};",
        include_str!("../../tests/fixtures/node-apis/run.js"),
        serde_json::to_string(&exprs).unwrap()
    );
    let inv = pool_with(&src, 60_000, &[]).invoke(&call());
    let got = claims_of(&inv)["https://x/r"].as_array().unwrap().clone();
    assert_eq!(got.len(), cases.len());
    let differ: Vec<String> = cases
        .iter()
        .zip(&got)
        .filter(|(c, g)| &c["result"] != *g)
        .map(|(c, g)| {
            format!(
                "[{}] {}\n  node: {}\n  ours: {}",
                c["group"].as_str().unwrap_or(""),
                c["expr"].as_str().unwrap_or(""),
                c["result"],
                g
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} cases differ from Node {}:\n{}",
        differ.len(),
        cases.len(),
        fixtures["node"],
        differ.join("\n")
    );
}

// Every source is a CommonJS module (D21), checked alone before it is wrapped. Breaks if
// a source could close the wrapper and run code outside it (the first is valid JS only
// once wrapped), if a syntax error lost its own line number, if a bound Action in the
// legacy form were taken, or if one Action's module saw another's top-level names.
#[test]
fn sources_are_modules_of_their_own_d21() {
    let escape = "exports.onExecuteCredentialsExchange = async () => {}; }); globalThis.escaped = 1; (function () {";
    assert!(matches!(
        Engine::compile(escape, "{}", Limits::default()),
        Err(engine::CompileError::Syntax(_))
    ));
    let Err(engine::CompileError::Syntax(msg)) =
        Engine::compile("const a = 1;\nconst b = ;\n", "{}", Limits::default())
    else {
        panic!("a syntax error");
    };
    assert!(msg.contains("line 2"), "{msg}");
    let first = "const name = 'a'; exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('https://x/a', name + typeof other); };";
    let second = "const name = 'b'; const other = 1; exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('https://x/b', name); };";
    let legacy_step = legacy("cb(null, {});");
    assert!(matches!(
        Engine::compile_steps(&[(first, "{}"), (&legacy_step, "{}")], Limits::default()),
        Err((1, engine::CompileError::NotAnAction))
    ));
    let mut e = Engine::compile_steps(&[(first, "{}"), (second, "{}")], Limits::default())
        .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let input = std::rc::Rc::new(input_json(&call(), None));
    let replies = e.call_steps(&input, Instant::now() + Duration::from_secs(5), &[]);
    let claims: Vec<serde_json::Value> = replies
        .iter()
        .map(|r| match r {
            engine::Reply::Finished(text) => match engine::parse_finished(text).0 {
                RawOutcome::Finished { state } => serde_json::Value::Object(state.claims),
                other => panic!("{other:?}"),
            },
            engine::Reply::Ended(o, _) => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(
        claims,
        [
            json!({"https://x/a": "aundefined"}),
            json!({"https://x/b": "b"})
        ]
    );
}

/// Each step's claims from one call of `e`, whose client metadata `n` is `n`; every
/// step must settle.
fn steps_claims(e: &mut Engine, n: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let mut input = input_json(&call(), None);
    input["client"]["metadata"]["n"] = json!(n);
    let replies = e.call_steps(
        &std::rc::Rc::new(input),
        Instant::now() + Duration::from_secs(5),
        &[],
    );
    replies
        .iter()
        .map(|r| match r {
            engine::Reply::Finished(text) => match engine::parse_finished(text).0 {
                RawOutcome::Finished { state } => state.claims,
                other => panic!("{other:?}"),
            },
            engine::Reply::Ended(outcome, _) => panic!("{outcome:?}"),
        })
        .collect()
}

// A later step's `event.accessToken.customClaims` is made when first read (D21), from
// the steps before it in its own request. Breaks if it were made from whatever flow ran
// last: an event a hook kept and reads in the next request would show that request's
// claims instead of its own.
#[test]
fn a_kept_event_shows_its_own_requests_claims_d21() {
    let first = "exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('https://x/n', e.client.metadata.n); };";
    let second = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                  if (!globalThis.kept) { globalThis.kept = e; return; } \
                  api.accessToken.setCustomClaim('https://x/kept', globalThis.kept.accessToken.customClaims['https://x/n']); \
                  api.accessToken.setCustomClaim('https://x/now', e.accessToken.customClaims['https://x/n']); };";
    let mut e = Engine::compile_steps(&[(first, "{}"), (second, "{}")], Limits::default())
        .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let claims_of = |e: &mut Engine, n: &str| {
        serde_json::Value::Object(steps_claims(e, n).pop().unwrap_or_default())
    };
    assert_eq!(claims_of(&mut e, "1"), json!({}));
    assert_eq!(
        claims_of(&mut e, "2"),
        json!({"https://x/kept": "1", "https://x/now": "2"})
    );
}

// The event's parts are made when first read (engine/event.rs). Each check names what
// breaks it: parts made from the engine's current call rather than the event's own
// (`kept`); a part shared between the steps' events or made anew on each read (`fresh`,
// `same`); accessors that are not enumerable, out of Auth0's order or not writable
// (`keys`, `json`, `written`), or writable once the event is frozen (`frozen`);
// `util.inspect` showing "[Getter/Setter]" (`inspect`).
#[test]
fn an_events_parts_are_made_when_read_and_behave_as_data_d21() {
    let first = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                 const same = e.client === e.client && e.client.metadata === e.client.metadata; \
                 e.client.metadata.mine = 'step0'; \
                 e.request = 'written'; \
                 api.accessToken.setCustomClaim('https://x/same', same); \
                 api.accessToken.setCustomClaim('https://x/written', e.request); \
                 api.accessToken.setCustomClaim('https://x/keys', Object.keys({ ...e }).join()); \
                 api.accessToken.setCustomClaim('https://x/json', JSON.parse(JSON.stringify(e)).client.client_id); \
                 Object.freeze(e); e.tenant = 1; \
                 api.accessToken.setCustomClaim('https://x/frozen', typeof e.tenant === 'object' && e.secrets.s === 'one'); };";
    let second = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                  api.accessToken.setCustomClaim('https://x/fresh', e.client.metadata.mine === undefined && typeof e.request === 'object'); \
                  api.accessToken.setCustomClaim('https://x/inspect', require('util').inspect(e, { depth: 0 })); \
                  if (!globalThis.kept) { globalThis.kept = e; return; } \
                  api.accessToken.setCustomClaim('https://x/kept', globalThis.kept.client.metadata.n + '/' + globalThis.kept.secrets.s); };";
    let mut e = Engine::compile_steps(
        &[(first, r#"{"s":"one"}"#), (second, r#"{"s":"two"}"#)],
        Limits::default(),
    )
    .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let claims_of = |e: &mut Engine, n: &str| {
        let steps = steps_claims(e, n);
        assert_eq!(steps.len(), 2);
        steps
            .into_iter()
            .flatten()
            .collect::<serde_json::Map<_, _>>()
    };
    let one = claims_of(&mut e, "1");
    assert_eq!(one["https://x/same"], json!(true));
    assert_eq!(one["https://x/written"], json!("written"));
    assert_eq!(
        one["https://x/keys"],
        json!("accessToken,client,request,resource_server,tenant,transaction,secrets")
    );
    assert_eq!(one["https://x/json"], json!(call().client.id));
    assert_eq!(one["https://x/frozen"], json!(true));
    assert_eq!(one["https://x/fresh"], json!(true));
    let inspect = one["https://x/inspect"].as_str().unwrap_or_default();
    assert!(
        inspect.contains("client: [Object]") && !inspect.contains("Getter"),
        "{inspect}"
    );
    assert!(!one.contains_key("https://x/kept"));
    let two = claims_of(&mut e, "2");
    assert_eq!(two["https://x/kept"], json!("1/two"));
}

// However an Action's result comes (D21), the driver settles its step and ends the flow
// where it should. Breaks if a thenable that is no native promise were not followed
// (step 0 would never settle), if a result that is a plain object did not end its step
// (step 1), if a step that printed lost its lines or stopped the flow though it let the
// request go on (step 2 would not run, or would not see the steps before it), or if a
// rejected thenable let the flow go on (step 4 would run).
#[test]
fn a_steps_result_settles_it_however_it_comes_d21() {
    let steps = [
        "exports.onExecuteCredentialsExchange = (e, api) => ({ then: function (ok) { api.accessToken.setCustomClaim('https://x/thenable', 1); ok(); } });",
        "exports.onExecuteCredentialsExchange = (e, api) => { console.log('from step', 1); api.accessToken.setCustomClaim('https://x/plain', true); return { not: 'a promise' }; };",
        "exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('https://x/seen', Object.values(e.accessToken.customClaims).join()); };",
        "exports.onExecuteCredentialsExchange = (e, api) => ({ then: function (ok, fail) { fail(new Error('nope')); } });",
        "exports.onExecuteCredentialsExchange = async (e, api) => { api.accessToken.setCustomClaim('https://x/ran', true); };",
    ];
    let sources: Vec<(&str, &str)> = steps.iter().map(|s| (*s, "{}")).collect();
    let mut e = Engine::compile_steps(&sources, Limits::default())
        .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let input = std::rc::Rc::new(input_json(&call(), None));
    let replies = e.call_steps(&input, Instant::now() + Duration::from_secs(5), &[]);
    let steps: Vec<(engine::State, Vec<String>)> = replies
        .iter()
        .map(|r| match r {
            engine::Reply::Finished(text) => match engine::parse_finished(text) {
                (RawOutcome::Finished { state }, logs) => {
                    (*state, logs.into_iter().map(|l| l.line).collect())
                }
                other => panic!("{other:?}"),
            },
            engine::Reply::Ended(o, _) => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(steps.len(), 4, "the flow ends at the rejected thenable");
    let claims = |i: usize| serde_json::Value::Object(steps[i].0.claims.clone());
    assert!(steps[0].0.done && steps[0].0.error.is_none());
    assert_eq!(claims(0), json!({"https://x/thenable": 1}));
    assert!(steps[1].0.done);
    assert_eq!(claims(1), json!({"https://x/plain": true}));
    assert_eq!(steps[1].1, ["from step 1"]);
    assert_eq!(claims(2), json!({"https://x/seen": "1,true"}));
    assert!(steps[2].1.is_empty(), "{:?}", steps[2].1);
    assert_eq!(
        steps[3].0.error.as_ref().map(|e| e.message.as_str()),
        Some("nope")
    );
}

// A step's state is the driver's own (D21): its claims and cache writes are made when
// first set, so they must not be found on Object.prototype. Breaks if the state
// inherited from Object.prototype: the claim would go into the prototype's `claims`
// and vanish from the token, the cache write into its `cache_ops`, and the denial (or
// a legacy Hook's error) into its setter, letting the request through.
#[test]
fn a_steps_state_is_its_own_whatever_object_prototype_holds_d21() {
    let inv = run(&legacy(
        "Object.defineProperty(Object.prototype, 'error', { set: function () {}, get: function () { return undefined; }, configurable: true }); \
         cb(new InvalidRequestError('refused'));",
    ));
    let err = inv.result.unwrap_err();
    assert_eq!(
        err.error().code().as_str(),
        "invalid_request",
        "{}",
        err.error()
    );
    let first = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                 Object.prototype.claims = {}; Object.prototype.cache_ops = []; \
                 Object.defineProperty(Object.prototype, 'deny', { set: function () {}, get: function () { return undefined; }, configurable: true }); \
                 api.accessToken.setCustomClaim('https://x/a', 1); api.cache.set('k', 'v'); };";
    let second = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                  api.accessToken.setCustomClaim('https://x/b', Object.keys(e.accessToken.customClaims).join()); \
                  api.access.deny('invalid_request', 'no'); };";
    let mut e = Engine::compile_steps(&[(first, "{}"), (second, "{}")], Limits::default())
        .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let input = std::rc::Rc::new(input_json(&call(), None));
    let replies = e.call_steps(&input, Instant::now() + Duration::from_secs(5), &[]);
    let states: Vec<engine::State> = replies
        .iter()
        .map(|r| match r {
            engine::Reply::Finished(text) => match engine::parse_finished(text).0 {
                RawOutcome::Finished { state } => *state,
                other => panic!("{other:?}"),
            },
            engine::Reply::Ended(o, _) => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(states.len(), 2);
    assert_eq!(
        serde_json::Value::Object(states[0].claims.clone()),
        json!({"https://x/a": 1})
    );
    assert_eq!(states[0].cache_ops.len(), 1);
    assert_eq!(
        serde_json::Value::Object(states[1].claims.clone()),
        json!({"https://x/b": "https://x/a"})
    );
    assert_eq!(
        states[1].deny.as_ref().map(|d| d.code.as_str()),
        Some("invalid_request")
    );
}
