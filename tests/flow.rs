//! The flow (D19, docs/decisions.md): the enabled Hook, then the bound Actions in order,
//! through `tokenhook hooks run --dir` and through the sidecar in front of the real
//! test IdP, compared; denials at each position; accumulation; per-Action limits,
//! secrets and metrics; the `hooks flow` CLI; hot reload of a whole flow.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `tokenhook hooks run --dir DIR --event …` and returns (exit code, JSON, stderr).
fn run_dir(dir: &Path, event: &Value, extra: &[&str]) -> (i32, Value, String) {
    let ev = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ev.path(), event.to_string()).unwrap();
    let mut args = vec![
        "hooks",
        "--dir",
        dir.to_str().unwrap(),
        "run",
        "--event",
        ev.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run_cli(&args, &[]);
    (
        code,
        serde_json::from_str(out.trim()).unwrap_or(Value::Null),
        err,
    )
}

/// A hooks folder with these files and this `hooks.toml`.
fn folder(files: &[(&str, &str)], manifest: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, src) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, src).unwrap();
    }
    std::fs::write(d.path().join("hooks.toml"), manifest).unwrap();
    d
}

fn names(out: &Value) -> Vec<String> {
    out["steps"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn event(id: &str, scope: &[&str], metadata: Value) -> Value {
    json!({"client": {"id": id, "metadata": metadata}, "audience": "https://api.example.com",
           "scope": scope, "request": {"ip": "203.0.113.7", "body": {"grant_type": "client_credentials"}}})
}

// The example flow of `hooks/flow` gives the same token through both paths. Breaks if
// the runner and the sidecar ran different steps, in a different order, or applied
// their effects differently (a claim, a scope, a denial that differs).
#[test]
fn the_example_flow_is_the_same_through_the_runner_and_the_sidecar() {
    let example = repo().join("hooks/flow");
    let idp = Idp::start();
    let sidecar = Sidecar::start(
        SidecarOpts::new(&idp.url())
            .hooks_folder(&example)
            .config("\n[clients.\"svc-post\"]\nmetadata = { suspended = \"true\" }\n"),
    );
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 200, "{body}");
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    let (code, ran, err) = run_dir(
        &example,
        &event(
            BASIC.id,
            &["read:data", "write:data"],
            json!({"region": "eu"}),
        ),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(&ran), ["tier", "region", "guard"]);
    assert_eq!(ran["outcome"], "token", "{ran}");
    // The Hook said standard; the first Action dropped write:data for it; the second
    // saw the region and overrode the Hook's tier (a later claim of a name wins).
    let want = json!({"https://example.com/tier": "standard-eu", "https://example.com/region": "eu",
                      "https://example.com/scopes": "read:data"});
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&claims[k], v, "sidecar token, {k}");
        assert_eq!(&ran["claims"][k], v, "runner, {k}");
    }
    assert_eq!(claims["scope"], "read:data");
    assert_eq!(ran["scope"], json!(["read:data"]));
    assert_eq!(
        body["scope"], "read:data",
        "the response says the new scopes"
    );

    // A suspended client: the first Action clears its scopes and the second denies.
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    let (_, ran, _) = run_dir(
        &example,
        &event(POST.id, &["read:data"], json!({"suspended": "true"})),
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(body["error_description"], "no scopes left for this client");
    assert_eq!(ran["status"], 400);
    assert_eq!(ran["error"], body["error"]);
    assert_eq!(ran["error_description"], body["error_description"]);
    assert_eq!(names(&ran), ["tier", "region", "guard"]);
    assert_eq!(ran["steps"][2]["outcome"], "denied");

    // Each step is counted under its own name.
    let m = sidecar.metrics();
    for line in [
        r#"tokenhook_hook_executions_total{hook="tier",outcome="ok"} 2"#,
        r#"tokenhook_hook_executions_total{hook="region",outcome="ok"} 2"#,
        r#"tokenhook_hook_executions_total{hook="guard",outcome="ok"} 1"#,
        r#"tokenhook_hook_executions_total{hook="guard",outcome="denied"} 1"#,
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
}

const LEGACY_STEP: &str = r#"module.exports = function (client, scope, audience, context, cb) {
  console.log('ran h');
  if (client.metadata.deny_at === 'h') return cb(new InvalidScopeError('h says no'));
  if (client.metadata.throw_at === 'h') throw new Error('h threw');
  cb(null, {'https://x/h': 'h', 'https://x/who': 'h', scope: scope.concat(['admin'])});
};"#;

fn action_step(name: &str) -> String {
    format!(
        r#"exports.onExecuteCredentialsExchange = async (event, api) => {{
  console.log('ran {name}');
  if (event.client.metadata.deny_at === '{name}') {{ api.access.deny('invalid_request', '{name} says no'); return; }}
  if (event.client.metadata.throw_at === '{name}') throw new Error('{name} threw');
  api.accessToken.setCustomClaim('https://x/{name}', Object.keys(event.accessToken.customClaims).join(','));
  api.accessToken.setCustomClaim('https://x/who', '{name}');
  api.accessToken.setCustomClaim('https://x/{name}_target', event.transaction.target_scopes.join(' '));
}};"#
    )
}

fn three_step_folder(extra_manifest: &str) -> tempfile::TempDir {
    folder(
        &[
            ("h.js", LEGACY_STEP),
            ("a1.js", &action_step("a1")),
            ("a2.js", &action_step("a2")),
        ],
        &format!("enabled = \"h\"\nflow = [\"a1\", \"a2\"]\n{extra_manifest}"),
    )
}

// A denial or a throw at each position ends the request there: the steps after it do
// not run (their console lines never appear) and the client gets that step's error.
// Breaks if a later Action still ran after a denial, or an earlier step's denial was
// lost.
#[test]
fn a_denial_or_throw_at_each_position_ends_the_flow_there() {
    let d = three_step_folder("");
    for (at, how, status, error, ran) in [
        ("h", "deny_at", 400, "invalid_scope", 1),
        ("a1", "deny_at", 400, "invalid_request", 2),
        ("a2", "deny_at", 400, "invalid_request", 3),
        ("h", "throw_at", 500, "server_error", 1),
        ("a1", "throw_at", 500, "server_error", 2),
        ("a2", "throw_at", 500, "server_error", 3),
    ] {
        let (code, out, err) = run_dir(d.path(), &event("c", &["read"], json!({how: at})), &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out["status"], status, "{how} {at}: {out}");
        assert_eq!(out["error"], error, "{how} {at}: {out}");
        let all = ["h", "a1", "a2"];
        assert_eq!(names(&out), all[..ran], "{how} {at}");
        let logs: Vec<&str> = out["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let want: Vec<String> = all[..ran].iter().map(|n| format!("ran {n}")).collect();
        assert_eq!(logs, want, "{how} {at}: only the steps up to it ran");
    }
}

// Claims and target scopes accumulate; a later Action sees the Hook's and earlier
// Actions' claims and the live target scopes; a later claim of a name wins; target
// scopes are bounded by the scopes the Hook left (which may exceed the IdP's grant).
// Breaks if customClaims hid earlier steps, showed a claim the rules drop (`sub`) or a
// value not as the token carries it (a Date), target_scopes were reset per Action, or
// the Hook's added scope were dropped by the Actions' intersection.
#[test]
fn claims_and_target_scopes_accumulate_across_the_flow() {
    let first = r#"exports.onExecuteCredentialsExchange = async (event, api) => {
  api.transaction.removeTargetScope('read');
  api.transaction.addTargetScope('not-granted');
  api.accessToken.setCustomClaim('https://x/a1', 1);
  api.accessToken.setCustomClaim('https://x/who', 'a1');
  api.accessToken.setCustomClaim('sub', 'evil');
  api.accessToken.setCustomClaim('plain', new Date(0));
  api.cache.set('seen', 'a1');
};"#;
    let second = r#"exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim('https://x/saw', {
    claims: event.accessToken.customClaims,
    target: event.transaction.target_scopes,
    granted: event.accessToken.scope,
    cache: (api.cache.get('seen') || {}).value,
  });
  api.accessToken.setCustomClaim('https://x/who', 'a2');
};"#;
    let d = folder(
        &[("h.js", LEGACY_STEP), ("a1.js", first), ("a2.js", second)],
        "enabled = \"h\"\nflow = [\"a1\", \"a2\"]\n",
    );
    let (code, out, err) = run_dir(d.path(), &event("c", &["read", "write"], json!({})), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["outcome"], "token", "{out}");
    let saw = &out["claims"]["https://x/saw"];
    assert_eq!(
        saw["claims"],
        json!({"https://x/h": "h", "https://x/who": "a1", "https://x/a1": 1,
               "plain": "1970-01-01T00:00:00.000Z"}),
        "a restricted claim the token will not carry is not shown; a value shows as JSON"
    );
    assert_eq!(saw["target"], json!(["write", "admin", "not-granted"]));
    assert_eq!(saw["granted"], json!(["read", "write", "admin"]));
    assert_eq!(saw["cache"], "a1", "Actions of one flow share the cache");
    assert_eq!(out["claims"]["https://x/who"], "a2");
    assert_eq!(out["claims"]["https://x/h"], "h");
    // The Hook added admin; the Actions removed read; not-granted never was.
    assert_eq!(out["scope"], json!(["write", "admin"]));
}

// Each Action has its own secrets and its own time limit, and the flow as a whole has
// one. Breaks if secrets leaked between steps, a step ran on the flow's limit instead
// of its own, or the flow's limit were not enforced.
#[test]
fn each_step_keeps_its_own_secrets_and_time_limit() {
    let show = |name: &str| {
        format!(
            "exports.onExecuteCredentialsExchange = async (event, api) => {{ \
             api.accessToken.setCustomClaim('https://x/{name}', Object.keys(event.secrets).map(k => k + '=' + event.secrets[k]).join(',')); }};"
        )
    };
    let slow = "exports.onExecuteCredentialsExchange = async (event, api) => { \
                await new Promise(r => setTimeout(r, 2000)); api.accessToken.setCustomClaim('https://x/slow', 1); };";
    let d = folder(
        &[
            ("a1.js", &show("a1")),
            ("a2.js", &show("a2")),
            ("slow.js", slow),
            ("k1", "one\n"),
            ("k2", "two\n"),
        ],
        "flow = [\"a1\", \"a2\"]\n[hook.a1.secrets]\nK = { file = \"k1\" }\n[hook.a2.secrets]\nK = { file = \"k2\" }\nOTHER = { file = \"k1\" }\n[hook.slow]\ntimeout_ms = 200\n",
    );
    let (_, out, err) = run_dir(d.path(), &event("c", &["read"], json!({})), &[]);
    assert_eq!(out["claims"]["https://x/a1"], "K=one", "{out} {err}");
    assert_eq!(out["claims"]["https://x/a2"], "K=two,OTHER=one");

    std::fs::write(
        d.path().join("hooks.toml"),
        "flow = [\"a1\", \"slow\", \"a2\"]\n[hook.slow]\ntimeout_ms = 200\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let (_, out, _) = run_dir(d.path(), &event("c", &["read"], json!({})), &[]);
    assert_eq!(out["status"], 500, "{out}");
    assert_eq!(out["error_description"], "hook timed out after 200 ms");
    assert_eq!(names(&out), ["a1", "slow"]);
    assert_eq!(out["steps"][1]["outcome"], "timeout");
    assert!(
        t0.elapsed() < Duration::from_millis(1900),
        "its own 200 ms, not the 2 s wait"
    );

    // The whole flow's limit, below the sum of the steps' own.
    std::fs::write(
        d.path().join("hooks.toml"),
        "flow = [\"a1\", \"slow\"]\n[hook.slow]\ntimeout_ms = 5000\n",
    )
    .unwrap();
    let cfg = d.path().join("tokenhook.toml");
    let pem = tokenhook::keys::generate_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    tokenhook::keys::write_private_key(&d.path().join("key.pem"), &pem, false).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[signing]\nkeys = [\"key.pem\"]\nalgorithm = \"ES256\"\n[hooks]\ndir = \"{}\"\nflow_timeout_ms = 300\n",
            d.path().display()
        ),
    )
    .unwrap();
    let (_, out, err) = run_dir(
        d.path(),
        &event("c", &["read"], json!({})),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(out["status"], 500, "{out} {err}");
    assert!(
        out["error_description"]
            .as_str()
            .unwrap_or("")
            .starts_with("the flow timed out after 300 ms (hooks.flow_timeout_ms)"),
        "{out}"
    );
}

// A worker killed (a step Boa cannot interrupt) or dying (its native stack overflowed)
// in a later step of a flow is blamed on that step, through the runner and the sidecar:
// its name in the steps and the log, its label in the metrics. The worker marks each
// step after the first (src/hooks/progress.rs). Breaks if the step were not marked, or
// the mark not read: the first step, "a", would be blamed, as before.
#[test]
fn a_worker_lost_in_a_later_step_is_blamed_on_that_step() {
    let ok = |n: &str| {
        format!(
            "exports.onExecuteCredentialsExchange = async (e, api) => {{ api.accessToken.setCustomClaim('https://x/{n}', 1); }};"
        )
    };
    let runaway = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                   /(a+)+$/.test('a'.repeat(40) + 'b'); };";
    let overflow = "exports.onExecuteCredentialsExchange = async (e, api) => { \
                    var o = {}, c = o; for (var i = 0; i < 200000; i++) { c.a = {}; c = c.a; } JSON.stringify(o); };";
    // Short limits: a runaway step is killed past the call's whole limit (their sum).
    // Building the deep object takes a while in a debug build: the overflowing step has
    // time to reach its stack overflow.
    let manifest = |c_ms: u32| {
        format!(
            "flow = [\"a\", \"b\", \"c\"]\n[hook.a]\ntimeout_ms = 300\n\
             [hook.b]\ntimeout_ms = 300\n[hook.c]\ntimeout_ms = {c_ms}\n"
        )
    };
    for (bad, c_ms, outcome, says) in [
        (runaway, 300, "timeout", "hook timed out after 300 ms"),
        (overflow, 30_000, "error", "its worker process stopped"),
    ] {
        let d = folder(
            &[("a.js", &ok("a")), ("b.js", &ok("b")), ("c.js", bad)],
            &manifest(c_ms),
        );
        let (_, out, err) = run_dir(d.path(), &event("c", &["read"], json!({})), &[]);
        assert_eq!(out["status"], 500, "{out} {err}");
        assert!(
            out["error_description"]
                .as_str()
                .unwrap_or("")
                .contains(says),
            "{out}"
        );
        // The steps before it ran, but their answers went with the worker.
        assert_eq!(names(&out), ["c"], "{out}");
        assert_eq!(out["steps"][0]["outcome"], outcome, "{out}");
    }

    let idp = Idp::start();
    let d = folder(
        &[("a.js", &ok("a")), ("b.js", &ok("b")), ("c.js", overflow)],
        &manifest(30_000),
    );
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()).hooks_folder(d.path()));
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 500, "{body}");
    let m = sidecar.metrics();
    let count = |hook: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("tokenhook_hook_executions_total{")
                    && l.contains(&format!("hook=\"{hook}\""))
                    && l.contains("outcome=\"error\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(count("c").as_deref(), Some("1"), "{m}");
    assert_eq!(count("a").as_deref(), Some("0"), "{m}");
    assert!(
        sidecar
            .logs()
            .lines()
            .any(|l| l.contains("hook worker failed") && l.contains("hook=\"c\"")),
        "{}",
        sidecar.logs()
    );
}

// The same through one pool of one worker, whose calls the pool and the worker count
// alike (the ordinal the mark carries): good calls before a lost one, a lost one on a
// worker that served others, and on its replacement. Breaks if the two counts drifted
// apart (a lost call after good ones would read no mark of its own and blame step 0)
// or if a stale mark of an earlier call were taken for the lost call's.
#[test]
fn lost_calls_after_good_ones_on_one_worker_are_blamed_on_their_step() {
    let src = |n: &str, bad: &str| {
        format!(
            "exports.onExecuteCredentialsExchange = async (e, api) => {{ \
             if (e.client.client_id === 'bad-{n}') {{ {bad} }} \
             api.accessToken.setCustomClaim('https://x/{n}', 1); }};"
        )
    };
    let overflow = "var o = {}, c = o; for (var i = 0; i < 200000; i++) { c.a = {}; c = c.a; } JSON.stringify(o);";
    let runaway = "/(a+)+$/.test('a'.repeat(40) + 'b');";
    let step = |name: &str, source: String| tokenhook::hooks::manifest::HookSpec {
        name: name.into(),
        path: format!("{name}.js").into(),
        source,
        // The call's limit is their sum: a runaway is killed 2.6 s in. The overflow
        // has 2 s to build its object (a debug build is slow); should it time out
        // instead, the failure is still b's.
        timeout: Duration::from_millis(if name == "b" { 2000 } else { 300 }),
        secrets: Default::default(),
        fetch: None,
    };
    let spec = tokenhook::hooks::manifest::FlowSpec {
        steps: vec![
            step("a", src("a", "")),
            // Crashes for client bad-b, after a's mark-less first step.
            step("b", src("b", overflow)),
            // Runs away for client bad-c: killed past the call's limit.
            step("c", src("c", runaway)),
        ],
        has_hook: false,
    };
    let mut cfg = tokenhook::config::HooksConfig::defaults(".".into());
    cfg.workers = 1;
    let command = tokenhook::hooks::pool::WorkerCommand {
        program: env!("CARGO_BIN_EXE_tokenhook").into(),
        args: vec![tokenhook::hooks::WORKER_ARG.into()],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = tokenhook::hooks::HookPool::start(spec, &cfg, command).unwrap();
    rt.block_on(async {
        let failed_in = |inv: &tokenhook::hooks::Invocation| inv.failure().map(|(i, _)| i);
        for id in [
            "good", "bad-b", "good", "good", "bad-c", "good", "bad-b", "good",
        ] {
            let inv = pool.invoke(&client_call(id)).await;
            let want = match id {
                "bad-b" => Some(1),
                "bad-c" => Some(2),
                _ => None,
            };
            assert_eq!(failed_in(&inv), want, "{id}: {inv:?}");
        }
    });
}

// `hooks flow set` binds only Actions that compile, in the order given; `list` shows the
// execution order; `clear` unbinds. Breaks if a legacy Hook, a hook that does not
// compile, an unknown name, the enabled Hook or a name twice could be bound, or if a
// refused `set` changed the manifest.
// The Actions of a flow share one engine (D21), each source a module of its own, each
// event built fresh. Breaks if the sources ran as scripts of one context (the second
// `const helper` would not compile, or one step would call the other's), if an event
// object were shared (the second step would see the first one's writes to its client
// metadata, request body, scopes or custom claims), or if a step could read another's
// secrets; and if the legacy Hook before them were not a module either (`this` at its
// top level is its `module.exports` there, as in Node).
#[test]
fn steps_share_an_engine_but_not_their_names_events_or_secrets() {
    let first = "const helper = () => 'first';\n\
                 exports.onExecuteCredentialsExchange = async (event, api) => {\n\
                   event.client.metadata.region = 'changed';\n\
                   event.request.body.grant_type = 'changed';\n\
                   event.accessToken.scope.push('changed');\n\
                   event.accessToken.customClaims['https://x/hook'] = 'changed';\n\
                   event.transaction.requested_scopes.push('changed');\n\
                   api.accessToken.setCustomClaim('https://x/first', helper() + ':' + Object.keys(event.secrets).join(','));\n\
                 };";
    let second = "const helper = () => 'second';\n\
                  exports.onExecuteCredentialsExchange = async (event, api) => {\n\
                    api.accessToken.setCustomClaim('https://x/second', [helper(), event.client.metadata.region,\n\
                      event.request.body.grant_type, event.accessToken.scope.join(' '),\n\
                      event.transaction.requested_scopes.length, event.accessToken.customClaims['https://x/hook'],\n\
                      Object.keys(event.secrets).join(','), typeof module, module.exports === exports].join('|'));\n\
                  };";
    let hook = "const self = this, first = exports;\n\
                module.exports = function (client, scope, audience, context, cb) {\n\
                  cb(null, { 'https://x/hook': 'from-hook', 'https://x/this': self === first, scope: scope });\n\
                };";
    let d = folder(
        &[
            ("hook.js", hook),
            ("first.js", first),
            ("second.js", second),
            ("k1", "one\n"),
            ("k2", "two\n"),
        ],
        "enabled = \"hook\"\nflow = [\"first\", \"second\"]\n[hook.first.secrets]\nA = { file = \"k1\" }\n[hook.second.secrets]\nB = { file = \"k2\" }\n",
    );
    let (_, out, err) = run_dir(
        d.path(),
        &event("c", &["read"], json!({"region": "eu"})),
        &[],
    );
    assert_eq!(names(&out), ["hook", "first", "second"], "{out} {err}");
    assert_eq!(out["claims"]["https://x/this"], true, "{out}");
    assert_eq!(out["claims"]["https://x/first"], "first:A", "{out}");
    assert_eq!(
        out["claims"]["https://x/second"],
        "second|eu|client_credentials|read|0|from-hook|B|object|true",
        "{out}"
    );
}

#[test]
fn the_flow_cli_binds_actions_in_order() {
    let d = folder(
        &[
            ("h.js", LEGACY_STEP),
            ("a1.js", &action_step("a1")),
            ("a2.js", &action_step("a2")),
            (
                "broken.js",
                "exports.onExecuteCredentialsExchange = async (event, api) => {",
            ),
        ],
        "enabled = \"h\"\n",
    );
    let dir = d.path().to_str().unwrap();
    let hooks = |args: &[&str]| {
        let mut all = vec!["hooks", "--dir", dir];
        all.extend_from_slice(args);
        run_cli(&all, &[])
    };
    let (code, out, err) = hooks(&["flow", "set", "a2", "a1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a2 > a1"), "{out}");
    let (_, list, _) = hooks(&["list"]);
    assert!(
        list.contains("  1. h (Hook)\n  2. a2 (Action)\n  3. a1 (Action)\n"),
        "{list}"
    );
    let manifest = std::fs::read_to_string(d.path().join("hooks.toml")).unwrap();
    for (args, code_want, says) in [
        (vec!["flow", "set", "a1", "h"], 2, "enabled Hook"),
        (vec!["flow", "set", "a1", "a1"], 2, "bound twice"),
        (vec!["flow", "set", "a1", "nope"], 2, "no hook named"),
        (vec!["flow", "set", "a1", "broken"], 1, "failed to compile"),
    ] {
        let (code, _, err) = hooks(&args);
        assert_eq!(code, code_want, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(d.path().join("hooks.toml")).unwrap(),
            manifest,
            "{args:?} left the manifest alone"
        );
    }
    // A legacy Hook cannot be bound: only Actions.
    std::fs::write(d.path().join("hooks.toml"), "").unwrap();
    let (code, _, err) = hooks(&["flow", "set", "h"]);
    assert_eq!(code, 1);
    assert!(err.contains("only Actions"), "{err}");
    let too_many: Vec<String> = (0..21).map(|i| format!("x{i}")).collect();
    for n in &too_many {
        std::fs::write(d.path().join(format!("{n}.js")), action_step(n)).unwrap();
    }
    let mut args = vec!["flow", "set"];
    args.extend(too_many.iter().map(String::as_str));
    let (code, _, err) = hooks(&args);
    assert_eq!(code, 2);
    assert!(err.contains("at most 20"), "{err}");
    let (code, _, _) = hooks(&["flow", "set", "a1"]);
    assert_eq!(code, 0);
    let (code, out, _) = hooks(&["flow", "clear"]);
    assert_eq!(code, 0);
    assert!(out.contains("unbound 1 Action"), "{out}");
    let (_, list, _) = hooks(&["list"]);
    assert!(list.contains("runs: nothing"), "{list}");
}

// A hot reload swaps the whole flow at once: with requests running, every token carries
// the claims of one version's two Actions, never one of each; a version in which one
// Action does not compile is refused whole and the previous flow keeps serving.
// Breaks if a reload swapped steps one by one, or a broken version replaced a working
// one.
#[test]
fn a_reload_swaps_the_whole_flow_or_nothing() {
    fn lay_out(dir: &Path) {
        for (file, name, v) in [
            ("a-v1.js", "a", "1"),
            ("b-v1.js", "b", "1"),
            ("a-v2.js", "a", "2"),
            ("b-v2.js", "b", "2"),
        ] {
            std::fs::write(
                dir.join(file),
                format!("exports.onExecuteCredentialsExchange = async (event, api) => {{ api.accessToken.setCustomClaim('https://x/{name}', '{v}'); }};"),
            )
            .unwrap();
        }
        std::fs::write(dir.join("hooks.toml"), "flow = [\"a-v1\", \"b-v1\"]\n").unwrap();
    }
    let idp = Idp::start();
    let sidecar = Sidecar::start(
        SidecarOpts::new(&idp.url())
            .layout(lay_out)
            .env("TOKENHOOK_HOOKS_RELOAD_INTERVAL_MS", "50"),
    );
    let hooks = sidecar.hooks_dir();
    let write_manifest = |text: &str| {
        let tmp = hooks.join(".next.toml");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, hooks.join("hooks.toml")).unwrap();
    };
    let url = sidecar.url("/oauth/token");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (url, stop) = (url.clone(), stop.clone());
        let jwks = sidecar.jwks();
        let iss = sidecar.url("");
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && seen.len() < 5000 {
                let (status, body, _) = token_request(&url, BASIC.id, BASIC.secret, true);
                assert_eq!(status, 200, "{body}");
                let (_, c) = verify_with(&jwks, body["access_token"].as_str().unwrap(), &iss);
                seen.push((c["https://x/a"].clone(), c["https://x/b"].clone()));
            }
            seen
        })
    };
    // Waits (bounded) until the sidecar counted `n` reloads with this result.
    let reloads = |result: &str, n: u64| {
        let line = format!("tokenhook_hook_reloads_total{{result=\"{result}\"}} {n}");
        let t0 = Instant::now();
        while !sidecar.metrics().lines().any(|l| l == line) {
            assert!(t0.elapsed() < Duration::from_secs(30), "no {line}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    write_manifest("flow = [\"a-v2\", \"b-v2\"]\n");
    reloads("ok", 1);
    std::thread::sleep(Duration::from_millis(300));
    // One Action of the next version does not compile: refused whole.
    std::fs::write(
        hooks.join("b-v3.js"),
        "exports.onExecuteCredentialsExchange = (",
    )
    .unwrap();
    write_manifest("flow = [\"a-v1\", \"b-v3\"]\n");
    reloads("error", 1);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = worker.join().unwrap();
    let v1 = (json!("1"), json!("1"));
    let v2 = (json!("2"), json!("2"));
    assert!(
        seen.iter().all(|p| *p == v1 || *p == v2),
        "a mixed flow served: {seen:?}"
    );
    assert!(
        seen.contains(&v1) && seen.contains(&v2),
        "both versions served: {}",
        seen.len()
    );
    assert_eq!(
        seen.last(),
        Some(&v2),
        "the broken version never replaced v2"
    );
    let (_, body, _) = token_request(&url, BASIC.id, BASIC.secret, true);
    let (_, c) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!((c["https://x/a"].clone(), c["https://x/b"].clone()), v2);
    let logs = sidecar.logs();
    assert!(
        logs.contains("b-v3"),
        "the refusal names the Action: {logs}"
    );
    assert!(
        sidecar
            .metrics()
            .contains(r#"tokenhook_hook_reloads_total{result="error"} 1"#),
        "{}",
        sidecar.metrics()
    );
}
