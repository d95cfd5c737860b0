//! Hooks as hook authors and operators meet them: every example in `hooks/` through the
//! local runner, the runner's JSON contract, the `hooks` CLI, the sandbox limits of the
//! worker processes, and hot reload, through the real sidecar.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn run_hook(file: &str, event: Value, extra: &[&str]) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("event.json");
    std::fs::write(&ev, event.to_string()).unwrap();
    let path = if file.starts_with('/') {
        file.to_owned()
    } else {
        repo().join(file).display().to_string()
    };
    let mut args = vec!["hooks", "run", &path, "--event", ev.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = run_cli(&args, &[]);
    let mut v: Value = serde_json::from_str(out.trim()).unwrap_or(Value::Null);
    // One file is a flow of one step, named after the file; the step's own account is
    // checked here once, so the cases below compare the result alone.
    if let Some(steps) = v.as_object_mut().and_then(|o| o.remove("steps")) {
        let stem = std::path::Path::new(file)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap();
        let steps = steps.as_array().cloned().unwrap_or_default();
        assert_eq!(steps.len(), 1, "{file}: {steps:?}");
        assert_eq!(steps[0]["name"], stem, "{file}");
        let want = if v["outcome"] == "token" { "ok" } else { "" };
        if !want.is_empty() {
            assert_eq!(steps[0]["outcome"], want, "{file}");
        }
    }
    (code, v, err)
}

fn hook_file(src: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("h.js");
    std::fs::write(&p, src).unwrap();
    let s = p.display().to_string();
    (dir, s)
}

fn base_event() -> Value {
    json!({
        "client": {"id": "svc-basic", "name": "Billing sync", "tenant": "acme",
                   "metadata": {"region": "eu", "plan": "enterprise", "team": "payments", "billing_account": "BA-7"}},
        "audience": "https://api.example.com",
        "scope": ["read:data", "write:data"],
        "requested_scope": ["read:data"],
        "request": {"ip": "203.0.113.7", "body": {"grant_type": "client_credentials"}}
    })
}

#[test]
fn every_example_hook_does_what_it_says() {
    let mut ev = base_event();
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "hooks/seed.js",
            ev.clone(),
            json!({"outcome": "token", "claims": {"https://foo.com/claim": "bar"},
            "scope": ["read:data", "write:data", "extra"], "ignored": [], "logs": []}),
        ),
        (
            "hooks/seed-action.js",
            ev.clone(),
            json!({"outcome": "token", "claims": {"https://foo.com/claim": "bar"},
            "scope": ["read:data", "write:data"], "ignored": [], "logs": []}),
        ),
        (
            "hooks/metadata-claims.js",
            ev.clone(),
            json!({"outcome": "token", "claims": {
            "https://example.com/region": "eu", "https://example.com/plan": "enterprise", "https://example.com/team": "payments",
            "https://example.com/client_name": "Billing sync", "https://example.com/tenant": "acme"},
            "scope": ["read:data", "write:data"], "ignored": [], "logs": []}),
        ),
        (
            "hooks/deny-by-client.js",
            ev.clone(),
            json!({"outcome": "token", "claims": {}, "scope": ["read:data", "write:data"], "ignored": [], "logs": []}),
        ),
    ];
    for (file, event, want) in cases {
        let (code, out, err) = run_hook(file, event, &[]);
        assert_eq!(code, 0, "{file}: {err}");
        assert_eq!(out, want, "{file}");
    }

    // audience branching
    ev["audience"] = json!("https://billing.example.com");
    let (_, out, _) = run_hook("hooks/audience-branching.js", ev.clone(), &[]);
    assert_eq!(out["scope"], json!(["read:data"]));
    assert_eq!(
        out["claims"],
        json!({"https://example.com/billing_account": "BA-7"})
    );
    ev["audience"] = json!("https://admin.example.com");
    let (_, out, _) = run_hook("hooks/audience-branching.js", ev.clone(), &[]);
    assert_eq!(
        out,
        json!({"outcome": "error", "status": 400, "error": "invalid_request",
        "error_description": "machine clients may not call the admin API", "logs": []})
    );
    ev["audience"] = json!("https://api.example.com");
    let (_, out, _) = run_hook("hooks/audience-branching.js", ev.clone(), &[]);
    assert_eq!(out["scope"], json!(["read:data", "write:data"]));

    // deny by client
    let mut blocked = base_event();
    blocked["client"]["metadata"]["blocked"] = json!("true");
    let (_, out, _) = run_hook("hooks/deny-by-client.js", blocked, &[]);
    assert_eq!(
        (out["status"].clone(), out["error"].clone()),
        (json!(400), json!("invalid_request"))
    );
    let mut free = base_event();
    free["client"]["metadata"]["plan"] = json!("free");
    free["request"]["body"]["scope"] = json!("read:data write:data");
    let (_, out, _) = run_hook("hooks/deny-by-client.js", free, &[]);
    assert_eq!(out["error"], "invalid_scope");
    assert_eq!(
        out["error_description"],
        "write:data needs the enterprise plan"
    );

    // secrets
    let mut with_secret = base_event();
    with_secret["secrets"] = json!({"API_KEY": "k42-very-secret"});
    let (_, out, _) = run_hook("hooks/secrets.js", with_secret, &[]);
    assert_eq!(
        out["claims"],
        json!({"https://example.com/key_generation": "k42"})
    );
    assert_eq!(
        out["logs"],
        json!(["checked client svc-basic with key generation k42"])
    );
    assert!(!out.to_string().contains("very-secret"));
    let (_, out, _) = run_hook("hooks/secrets.js", base_event(), &[]);
    assert_eq!(out["error_description"], "API_KEY secret is not configured");

    // Node's crypto and Buffer: an HMAC claim Node computes the same (the value is
    // Node's own for this key and input); the key itself is never printed.
    let mut signing = base_event();
    signing["secrets"] = json!({"SIGNING_KEY": "c2lnbmluZy1rZXktMzItYnl0ZXMtbG9uZyEhISEhIQ=="});
    let (_, out, _) = run_hook("hooks/hmac-signature.js", signing, &[]);
    assert_eq!(
        out,
        json!({"outcome": "token", "claims": {
            "https://example.com/sig": "SPwzwGAwinS_vgqQ2Er-D_vw9B5eZvojiagEMdFC3P8",
            "https://example.com/signed": "c3ZjLWJhc2ljfGh0dHBzOi8vYXBpLmV4YW1wbGUuY29t"},
        "scope": ["read:data", "write:data"], "ignored": [], "logs": []})
    );
    let (_, out, _) = run_hook("hooks/hmac-signature.js", base_event(), &[]);
    assert_eq!(
        (out["status"].clone(), out["error_description"].clone()),
        (json!(500), json!("SIGNING_KEY secret is not configured"))
    );

    // the heavier Action: ten claims, cache pre-seeded, write scope dropped off-network
    let mut ev = base_event();
    ev["cache"] = json!({"tier:svc-basic": "platinum"});
    let (_, out, _) = run_hook("hooks/action-metadata.js", ev, &[]);
    assert_eq!(out["claims"].as_object().unwrap().len(), 10, "{out}");
    assert_eq!(out["claims"]["https://example.com/tier"], "platinum");
    assert_eq!(out["claims"]["https://example.com/ip"], "203.0.113.7");
    assert_eq!(out["scope"], json!(["read:data"]));
    let mut inside = base_event();
    inside["request"]["ip"] = json!("10.1.2.3");
    let (_, out, _) = run_hook("hooks/action-metadata.js", inside, &[]);
    assert_eq!(out["claims"]["https://example.com/tier"], "gold");
    assert_eq!(out["scope"], json!(["read:data", "write:data"]));
}

#[test]
fn every_file_in_hooks_is_covered_by_the_example_test() {
    // The tests that run examples: this file, the flow's and the egress's.
    let src: String = ["tests/hooks.rs", "tests/flow.rs", "tests/egress.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(repo().join(f)).unwrap())
        .collect();
    for e in std::fs::read_dir(repo().join("hooks")).unwrap() {
        let p = e.unwrap().path();
        // A folder of hooks (a flow) is covered by a test that runs the folder.
        if p.is_dir() {
            let name = format!("hooks/{}", p.file_name().unwrap().to_str().unwrap());
            assert!(
                src.contains(&format!("\"{name}\"")),
                "{name} is run by no test"
            );
        }
        if p.extension().is_some_and(|x| x == "js") {
            let name = format!("hooks/{}", p.file_name().unwrap().to_str().unwrap());
            assert!(
                src.matches(&format!("\"{name}\"")).count() >= 1,
                "{name} is run by no test"
            );
        }
    }
}

#[test]
fn runner_contract_ignored_claims_scope_absent_and_usage_errors() {
    let (_d, f) = hook_file(
        "module.exports = function (client, scope, audience, context, cb) { console.log('scope is', typeof scope); \
         cb(null, {plain: 1, 'https://auth0.com/x': 2, iss: 'evil', 'https://ok.example/c': new Date(0)}); };",
    );
    let (code, out, _) = run_hook(&f, json!({"client": {"id": "c1"}}), &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        json!({"outcome": "token", "claims": {"https://ok.example/c": "1970-01-01T00:00:00.000Z"}, "scope": [],
               "ignored": [{"claim": "plain", "reason": "not namespaced (must be an http or https URL)"},
                           {"claim": "https://auth0.com/x", "reason": "namespace reserved by Auth0"},
                           {"claim": "iss", "reason": "restricted claim"}],
               "logs": ["scope is undefined"]})
    );
    // Usage errors: exit 2 with a message on stderr.
    let (code, _, err) = run_hook("/nonexistent/hook.js", json!({"client": {"id": "c"}}), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/hook.js"), "{err}");
    let (code, _, err) = run_hook(&f, json!({"audience": "x"}), &[]);
    assert_eq!(code, 2);
    assert!(err.contains("client"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let ev = dir.path().join("e.json");
    std::fs::write(&ev, "{not json").unwrap();
    let (code, _, err) = run_cli(&["hooks", "run", &f, "--event", ev.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("not a valid event"), "{err}");
    // A hook that does not compile is what a request would get: 500 (D1).
    let (_d2, bad) = hook_file("module.exports = function (");
    let (code, out, _) = run_hook(&bad, json!({"client": {"id": "c"}}), &[]);
    assert_eq!(code, 0);
    assert_eq!(out["status"], 500);
    assert!(
        out["error_description"]
            .as_str()
            .unwrap()
            .starts_with("hook \"h\": hook failed to compile"),
        "names the hook that failed: {out}"
    );
}

#[test]
fn runaway_hooks_are_stopped_within_their_limit() {
    // Each case names every description it may end with; where two are listed, which
    // bound ends it first depends on the machine's speed.
    const TIMED_OUT: &str = "hook timed out after 700 ms";
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "catastrophic regex",
            "/(a+)+$/.test('a'.repeat(32) + 'b'); cb(null, {});",
            &[TIMED_OUT],
        ),
        (
            "loop in a builtin callback",
            "[...Array(3000)].map(function () { var i = 0; while (true) { i++; } }); cb(null, {});",
            &[TIMED_OUT, "hook aborted"],
        ),
        // Boa's loop limit ends it, or (in a slow debug build) the time limit does first;
        // the loop limit itself is covered by the engine's unit tests.
        ("plain loop", "for (;;) {}", &[TIMED_OUT, "hook aborted"]),
        (
            "recursion",
            "(function f() { return f() + 1; })();",
            &["hook aborted"],
        ),
        (
            "never calls back",
            "var x = 1;",
            &["hook completed without calling back"],
        ),
        (
            "timer past the limit",
            "setTimeout(function () { cb(null, {}); }, 100000);",
            &[TIMED_OUT],
        ),
    ];
    for (what, body, want) in cases {
        let (_d, f) = hook_file(&format!(
            "module.exports = function (client, scope, audience, context, cb) {{ {body} }};"
        ));
        let started = Instant::now();
        let (code, out, err) =
            run_hook(&f, json!({"client": {"id": "c"}}), &["--timeout-ms", "700"]);
        let took = started.elapsed();
        assert_eq!(code, 0, "{what}: {err}");
        assert_eq!(out["outcome"], "error", "{what}: {out}");
        assert_eq!(out["status"], 500, "{what}");
        let description = out["error_description"].as_str().unwrap();
        assert!(
            want.iter().any(|w| description.starts_with(w)),
            "{what}: {out}"
        );
        assert!(took < Duration::from_secs(10), "{what} took {took:?}");
    }
}

#[test]
fn unbounded_allocation_kills_only_the_worker() {
    let (_d, f) = hook_file(
        "module.exports = function (client, scope, audience, context, cb) { var a = []; for (var i = 0; ; i++) { a.push({ n: i, s: 'item-' + i, list: [i, i + 1, i + 2] }); } };",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::create_dir(dir.path().join("hooks")).unwrap();
    std::fs::write(&cfg, "[upstream]\nurl = \"http://127.0.0.1:9\"\n[signing]\nkeys = [\"k.pem\"]\n[hooks]\nmemory_limit_mb = 128\ntimeout_ms = 60000\nflow_timeout_ms = 60000\n").unwrap();
    let pem = tokenhook::keys::generate_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    std::fs::write(dir.path().join("k.pem"), pem).unwrap();
    let ev = dir.path().join("e.json");
    std::fs::write(&ev, r#"{"client": {"id": "c"}}"#).unwrap();
    let started = Instant::now();
    let (code, out, err) = run_cli(
        &[
            "hooks",
            "--config",
            cfg.to_str().unwrap(),
            "run",
            &f,
            "--event",
            ev.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let out: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(out["status"], 500, "{out}");
    assert!(
        out["error_description"]
            .as_str()
            .unwrap()
            .contains("memory"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "bounded by memory, not the 60 s limit (a loaded debug build takes 15-25 s to fill 128 MiB)"
    );
}

#[test]
fn hooks_cli_manages_hooks_the_auth0_way() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(
        dir.path().join("a.js"),
        "module.exports = function (c, s, a, ctx, cb) { cb(null, {scope: s}); };",
    )
    .unwrap();
    std::fs::write(dir.path().join("hooks.toml"), "enabled = \"a\"\n").unwrap();
    let (_src_dir, b_src) =
        hook_file("exports.onExecuteCredentialsExchange = async (event, api) => {};");
    let (code, out, err) = run_cli(&["hooks", "--dir", d, "create", "b", "--file", &b_src], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("disabled"), "{out}");
    let (_, list, _) = run_cli(&["hooks", "--dir", d, "list"], &[]);
    assert!(
        list.contains("* a\t") && list.contains("  b\t"),
        "new hooks start disabled:\n{list}"
    );
    let (code, _, _) = run_cli(&["hooks", "--dir", d, "create", "b", "--file", &b_src], &[]);
    assert_eq!(code, 2, "names are unique");
    let (code, _, _) = run_cli(
        &[
            "hooks",
            "--dir",
            d,
            "create",
            "-bad name-",
            "--file",
            &b_src,
        ],
        &[],
    );
    assert_eq!(code, 2);
    let (code, _, err) = run_cli(&["hooks", "--dir", d, "enable", "b"], &[]);
    assert_eq!(code, 0, "{err}");
    let (_, list, _) = run_cli(&["hooks", "--dir", d, "list"], &[]);
    assert!(
        list.contains("  a\t") && list.contains("* b\t"),
        "enabling one disables the others:\n{list}"
    );
    // A hook that does not compile is never enabled.
    std::fs::write(dir.path().join("broken.js"), "module.exports = function (").unwrap();
    let (code, _, err) = run_cli(&["hooks", "--dir", d, "enable", "broken"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("failed to compile"), "{err}");
    let (_, list, _) = run_cli(&["hooks", "--dir", d, "list"], &[]);
    assert!(list.contains("* b\t"), "{list}");
    let (code, _, _) = run_cli(&["hooks", "--dir", d, "enable", "nope"], &[]);
    assert_eq!(code, 2);
    let (code, out, _) = run_cli(&["hooks", "--dir", d, "disable", "b"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("no hook is enabled"));
    let (_, list, _) = run_cli(&["hooks", "--dir", d, "list"], &[]);
    assert!(!list.contains('*'), "{list}");
}

/// `tokenhook hooks --dir DIR secrets set HOOK KEY` with `value` on stdin.
fn set_secret(dir: &str, key: &str, value: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .args(["hooks", "--dir", dir, "secrets", "set", "secrets", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn secrets_set_reads_stdin_stores_owner_only_and_never_prints_the_value() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::copy(
        repo().join("hooks/secrets.js"),
        dir.path().join("secrets.js"),
    )
    .unwrap();
    let out = set_secret(d, "API_KEY", b"k77-top-secret\n");
    assert!(out.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("top-secret"), "{printed}");
    let stored = dir.path().join("secrets/secrets/API_KEY");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "k77-top-secret");
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let manifest = std::fs::read_to_string(dir.path().join("hooks.toml")).unwrap();
    assert!(!manifest.contains("top-secret"), "{manifest}");
    let (_, list, _) = run_cli(&["hooks", "--dir", d, "list"], &[]);
    assert!(
        list.contains("secrets=[API_KEY]") && !list.contains("top-secret"),
        "{list}"
    );
    // 21st secret is refused.
    for i in 0..19 {
        assert!(set_secret(d, &format!("K{i}"), b"v").status.success());
    }
    assert_eq!(set_secret(d, "ONE_TOO_MANY", b"v").status.code(), Some(2));
}

// `hooks run` with a config runs the hook with what the sidecar would give it: the
// client registry of the config (the event's own client fields on top) and, for a hook
// of the hooks folder, its time limit from hooks.toml. Breaks if the runner went back
// to defaults the sidecar does not use.
#[test]
fn runner_takes_the_registry_and_the_hook_limit_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::write(
        hooks.join("who.js"),
        "module.exports = function (client, scope, audience, context, cb) { cb(null, {'https://x/name': client.name, 'https://x/region': client.metadata.region}); };",
    )
    .unwrap();
    std::fs::write(
        hooks.join("slow.js"),
        "module.exports = function (client, scope, audience, context, cb) { setTimeout(function () { cb(null, {}); }, 100000); };",
    )
    .unwrap();
    std::fs::write(hooks.join("hooks.toml"), "[hook.slow]\ntimeout_ms = 300\n").unwrap();
    let pem = tokenhook::keys::generate_pem(jsonwebtoken::Algorithm::ES256).unwrap();
    std::fs::write(dir.path().join("k.pem"), pem).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[signing]\nkeys = [\"k.pem\"]\n[clients.\"svc\"]\nname = \"Registered\"\nmetadata = { region = \"eu\" }\n",
    )
    .unwrap();
    let run = |file: &str, event: Value| {
        let ev = dir.path().join("e.json");
        std::fs::write(&ev, event.to_string()).unwrap();
        let f = hooks.join(file);
        let (code, out, err) = run_cli(
            &[
                "hooks",
                "--config",
                cfg.to_str().unwrap(),
                "run",
                f.to_str().unwrap(),
                "--event",
                ev.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    let out = run("who.js", json!({"client": {"id": "svc"}}));
    assert_eq!(
        out["claims"],
        json!({"https://x/name": "Registered", "https://x/region": "eu"}),
        "{out}"
    );
    let out = run(
        "who.js",
        json!({"client": {"id": "svc", "name": "From event"}}),
    );
    assert_eq!(out["claims"]["https://x/name"], "From event", "{out}");
    let started = Instant::now();
    let out = run("slow.js", json!({"client": {"id": "svc"}}));
    assert_eq!(
        out["error_description"], "hook timed out after 300 ms",
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}
