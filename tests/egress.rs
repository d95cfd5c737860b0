//! `fetch` from hooks behind the egress allow-list, end to end: the examples
//! `hooks/fetch-enrich.js` (HMAC-signed fetch) and `hooks/axios-audit.js` (axios) against
//! loopback services, through `tokenhook hooks run --dir` and through the sidecar in front
//! of the test IdP; and the refusals (loopback by name, link-local and metadata addresses,
//! by redirect, no allow-list) as a hook meets them.

mod common;

use common::service::{Received, Reply, Service};
use common::*;
use serde_json::{Value, json};
use std::path::Path;

/// A hooks folder with `files` and this `hooks.toml`.
fn folder(files: &[(&str, &str)], manifest: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, src) in files {
        std::fs::write(d.path().join(name), src).unwrap();
    }
    std::fs::write(d.path().join("hooks.toml"), manifest).unwrap();
    d
}

/// An example's source, by its path in the repository.
fn example(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

fn run_dir(dir: &Path, event: &Value) -> Value {
    run_dir_with(dir, event, &[])
}

/// `run_dir` with more arguments for `hooks` (`--config FILE`).
fn run_dir_with(dir: &Path, event: &Value, extra: &[&str]) -> Value {
    let ev = dir.join("event.json");
    std::fs::write(&ev, event.to_string()).unwrap();
    let mut args = vec!["hooks", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["run", "--event", ev.to_str().unwrap()]);
    let (code, out, err) = run_cli(&args, &[]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("not JSON: {out} {err}"))
}

fn event(id: &str) -> Value {
    json!({"client": {"id": id}, "audience": "https://api.example.com", "scope": ["read:data"],
           "requested_scope": ["read:data"], "request": {"body": {"grant_type": "client_credentials"}}})
}

const ENRICH_KEY: &str = "enricher-hmac-key-0123";

/// The enricher: checks the HMAC the hook signs with, then answers for known clients.
fn enricher() -> Service {
    Service::start(|r: &Received| {
        use aws_lc_rs::hmac;
        let (ts, sig) = (
            r.header("x-timestamp").unwrap_or(""),
            r.header("x-signature").unwrap_or(""),
        );
        let path = r.target.clone();
        let key = hmac::Key::new(hmac::HMAC_SHA256, ENRICH_KEY.as_bytes());
        let want = hmac::sign(&key, format!("GET\n{path}\n{ts}").as_bytes());
        let hex: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if sig != hex {
            return Reply::json(401, json!({"error": "bad signature"}));
        }
        match path.as_str() {
            "/clients/svc-basic" => Reply::json(200, json!({"org": "acme", "roles": ["billing"]})),
            "/clients/broken" => Reply::json(503, json!({})),
            _ => Reply::json(404, json!({"error": "unknown"})),
        }
    })
}

fn enrich_manifest(svc: &Service, allow: &str) -> String {
    format!(
        "enabled = \"fetch-enrich\"\n[hook.fetch-enrich.secrets]\nENRICHER_URL = {{ file = \"url\" }}\nENRICHER_KEY = {{ file = \"key\" }}\n[hook.fetch-enrich.fetch]\nallow = [\"{allow}\"]\ntimeout_ms = 1000\n",
    )
    .replace("PORT", &svc.port.to_string())
}

// The HMAC-signed fetch example: the service checks the signature (a wrong one answers
// 401 and the hook denies), its JSON becomes claims, a 404 denies, and nothing reaches
// the service unless its origin is allowed. Breaks if the request did not reach the
// service as the hook made it (headers, path), or if a refused origin still connected.
#[test]
fn the_fetch_example_signs_calls_and_turns_answers_into_claims() {
    let svc = enricher();
    let d = folder(
        &[
            ("fetch-enrich.js", &example("hooks/fetch-enrich.js")),
            ("url", &svc.url()),
            ("key", ENRICH_KEY),
        ],
        &enrich_manifest(&svc, "http://127.0.0.1:PORT"),
    );
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(out["outcome"], "token", "{out}");
    assert_eq!(out["claims"]["https://example.com/org"], "acme");
    assert_eq!(
        out["claims"]["https://example.com/roles"],
        json!(["billing"])
    );
    let seen = svc.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/clients/svc-basic");
    assert_eq!(seen[0].header("accept"), Some("application/json"));
    let out = run_dir(d.path(), &event("nobody"));
    assert_eq!(
        (out["status"].clone(), out["error_description"].clone()),
        (json!(400), json!("unknown client"))
    );
    let out = run_dir(d.path(), &event("broken"));
    assert_eq!(out["error_description"], "client data service answered 503");
    // A wrong key: the service refuses the signature.
    std::fs::write(d.path().join("key"), "not-the-key").unwrap();
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(out["error_description"], "client data service answered 401");

    // Allowed by name, `localhost` resolves to loopback: refused before any connection.
    std::fs::write(d.path().join("key"), ENRICH_KEY).unwrap();
    std::fs::write(
        d.path().join("url"),
        format!("http://localhost:{}", svc.port),
    )
    .unwrap();
    std::fs::write(
        d.path().join("hooks.toml"),
        enrich_manifest(&svc, "http://localhost:PORT"),
    )
    .unwrap();
    let before = svc.requests().len();
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(
        out["error_description"], "client data service unavailable",
        "{out}"
    );
    let logs = out["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("enricher unreachable: fetch failed")),
        "{logs:?}"
    );
    assert_eq!(svc.requests().len(), before, "nothing reached the service");
}

/// An audit service: records events, refuses an unknown token with 403.
fn audit() -> Service {
    Service::start(|r: &Received| {
        if r.header("authorization") != Some("Bearer audit-token-xyz") {
            return Reply::json(403, json!({"error": "bad token"}));
        }
        let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        if body["client_id"] == "crash" {
            return Reply::json(500, json!({}));
        }
        Reply::json(
            201,
            json!({"id": format!("evt-{}", body["client_id"].as_str().unwrap_or(""))}),
        )
    })
}

fn audit_manifest(svc: &Service) -> String {
    format!(
        "enabled = \"axios-audit\"\n[hook.axios-audit.secrets]\nAUDIT_URL = {{ file = \"url\" }}\nAUDIT_TOKEN = {{ file = \"token\" }}\n[hook.axios-audit.fetch]\nallow = [\"http://127.0.0.1:{}\"]\n",
        svc.port
    )
}

// The axios example: a JSON POST with a bearer token and a query parameter, the answer's
// id as a claim; a 5xx is logged and the token still issued, a 4xx denies. Breaks if
// axios sent another body, headers or query than the hook asked for, or mapped statuses
// to errors differently (error.response missing on a 4xx).
#[test]
fn the_axios_example_posts_json_and_maps_errors() {
    let svc = audit();
    let d = folder(
        &[
            ("axios-audit.js", &example("hooks/axios-audit.js")),
            ("url", &svc.url()),
            ("token", "audit-token-xyz"),
        ],
        &audit_manifest(&svc),
    );
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(out["outcome"], "token", "{out}");
    assert_eq!(
        out["claims"]["https://example.com/audit_id"],
        "evt-svc-basic"
    );
    let r = &svc.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/events?source=tokenhook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("accept"),
        Some("application/json, text/plain, */*")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"type": "token_issued", "client_id": "svc-basic", "audience": "https://api.example.com", "scopes": ["read:data"]})
    );
    let out = run_dir(d.path(), &event("crash"));
    assert_eq!(out["outcome"], "token", "a 5xx does not stop tokens: {out}");
    assert!(out["claims"].get("https://example.com/audit_id").is_none());
    assert_eq!(out["logs"], json!(["audit not recorded: ERR_BAD_RESPONSE"]));
    std::fs::write(d.path().join("token"), "wrong").unwrap();
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(out["status"], 400);
    assert_eq!(out["error_description"], "audit refused: bad token");
}

/// A hook that fetches `event.secrets.URL` and reports what happened.
const PROBE: &str = r#"exports.onExecuteCredentialsExchange = async (event, api) => {
  try {
    const r = await fetch(event.secrets.URL);
    api.accessToken.setCustomClaim('https://x/got', r.status + ' ' + (await r.text()));
  } catch (e) {
    api.accessToken.setCustomClaim('https://x/got', e.message);
    api.accessToken.setCustomClaim('https://x/code', e.cause && e.cause.code);
  }
};"#;

// Egress attempts a hook must never get through: loopback by name, link-local and the
// metadata address, directly or by a redirect from an allowed origin, and any request
// from a hook without an allow-list. Breaks if any of them reached a connection (the
// redirect target's service would record it) or if the refusal's log line lost the hook
// or origin or carried the secret in the URL.
#[test]
fn refused_egress_through_the_sidecar() {
    let target = Service::start(|_| Reply::json(200, json!({"reached": true})));
    let tport = target.port;
    let bouncer = Service::start(move |r: &Received| match r.target.as_str() {
        "/to-metadata" => Reply::redirect(302, "http://169.254.169.254/latest/meta-data/"),
        "/to-localhost" => Reply::redirect(302, &format!("http://localhost:{tport}/")),
        "/to-allowed" => Reply::redirect(307, &format!("http://127.0.0.1:{tport}/ok")),
        _ => Reply::json(404, json!({})),
    });
    let idp = Idp::start();
    let allow = format!(
        "[\"http://127.0.0.1:{}\", \"http://127.0.0.1:{tport}\", \"http://localhost:{tport}\"]",
        bouncer.port
    );
    let sidecar = Sidecar::start(
        SidecarOpts::new(&idp.url())
            .hook("probe", PROBE)
            .env("TOKENHOOK_HOOKS_RELOAD_INTERVAL_MS", "50"),
    );
    let hooks = sidecar.hooks_dir();
    let reloads = || {
        sidecar
            .metrics()
            .lines()
            .find(|l| l.starts_with(r#"tokenhook_hook_reloads_total{result="ok"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Each change is a new hook version; the next request must run it.
    let n = std::cell::Cell::new(0);
    let set = |url: &str, with_fetch: bool| {
        let before = reloads();
        // A new secret file each time, then the manifest naming it, renamed into place:
        // one change, never seen half-written.
        n.set(n.get() + 1);
        let file = format!("url{}", n.get());
        std::fs::write(hooks.join(&file), url).unwrap();
        let fetch = if with_fetch {
            format!("[hook.probe.fetch]\nallow = {allow}\n")
        } else {
            String::new()
        };
        let tmp = hooks.join(".hooks.toml.tmp");
        std::fs::write(
            &tmp,
            format!(
                "enabled = \"probe\"\n[hook.probe.secrets]\nURL = {{ file = \"{file}\" }}\n{fetch}"
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, hooks.join("hooks.toml")).unwrap();
        let t0 = std::time::Instant::now();
        while reloads() == before {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "no reload"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let got = |what: &str| -> (String, Value) {
        let (status, body, _) =
            token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
        assert_eq!(status, 200, "{what}: {body}");
        let (_, c) = sidecar.verify(body["access_token"].as_str().unwrap());
        let got = c.get("https://x/got").and_then(Value::as_str);
        let got = got.unwrap_or_else(|| panic!("{what}: no claim in {c:?}\n{}", sidecar.logs()));
        (
            got.to_owned(),
            c.get("https://x/code").cloned().unwrap_or(Value::Null),
        )
    };
    // Allowed, by IP literal, through an allowed redirect: reached.
    set(
        &format!("http://127.0.0.1:{}/to-allowed", bouncer.port),
        true,
    );
    assert_eq!(
        got("redirect to an allowed origin").0,
        "200 {\"reached\":true}"
    );
    let reached = target.requests().len();
    assert_eq!(reached, 1);
    for (url, what) in [
        (
            format!("http://localhost:{tport}/?k=secret-in-query"),
            "loopback by name",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "metadata address",
        ),
        (
            format!("http://127.0.0.1:{}/to-metadata", bouncer.port),
            "redirect to metadata",
        ),
        (
            format!("http://127.0.0.1:{}/to-localhost", bouncer.port),
            "redirect to loopback by name",
        ),
        ("http://10.255.255.1:9/".to_owned(), "not in the allow-list"),
    ] {
        set(&url, true);
        let (msg, code) = got(what);
        assert!(msg.starts_with("fetch failed: "), "{what}: {msg}");
        assert_eq!(code, "refused", "{what}: {msg}");
    }
    assert_eq!(
        target.requests().len(),
        reached,
        "no refused request connected"
    );
    // No allow-list: no network at all.
    set(&format!("http://127.0.0.1:{tport}/"), false);
    let (msg, code) = got("no allow-list");
    assert_eq!(code, "refused", "{msg}");
    assert_eq!(target.requests().len(), reached);
    let logs = sidecar.logs();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("fetch refused"))
        .collect();
    assert!(refusals.len() >= 5, "a log line per refusal:\n{logs}");
    assert!(refusals.iter().all(|l| l.contains("probe")), "{refusals:?}");
    assert!(
        refusals.iter().any(|l| l.contains("169.254.169.254")),
        "{refusals:?}"
    );
    assert!(
        !logs.contains("secret-in-query"),
        "URLs' queries never logged"
    );
    let m = sidecar.metrics();
    assert!(
        m.contains(r#"tokenhook_hook_fetch_total{hook="probe",outcome="ok"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tokenhook_hook_fetch_total{hook="probe",outcome="refused"} 6"#),
        "{m}"
    );
}

// The two fetch examples as a flow through the sidecar, in front of the real IdP: both
// run in one request, their claims verify in the token. Breaks if the second step's
// requests went under the first step's policy (each allows only its own service).
#[test]
fn fetching_actions_in_a_flow_through_the_sidecar() {
    let (enr, aud) = (enricher(), audit());
    let (ep, ap, eu, au) = (enr.port, aud.port, enr.url(), aud.url());
    let idp = Idp::start();
    let lay = move |dir: &Path| {
        std::fs::write(
            dir.join("fetch-enrich.js"),
            example("hooks/fetch-enrich.js"),
        )
        .unwrap();
        std::fs::write(dir.join("axios-audit.js"), example("hooks/axios-audit.js")).unwrap();
        std::fs::write(dir.join("eurl"), &eu).unwrap();
        std::fs::write(dir.join("ekey"), ENRICH_KEY).unwrap();
        std::fs::write(dir.join("aurl"), &au).unwrap();
        std::fs::write(dir.join("atoken"), "audit-token-xyz").unwrap();
        std::fs::write(
            dir.join("hooks.toml"),
            format!(
                "flow = [\"fetch-enrich\", \"axios-audit\"]\n\
                 [hook.fetch-enrich.secrets]\nENRICHER_URL = {{ file = \"eurl\" }}\nENRICHER_KEY = {{ file = \"ekey\" }}\n\
                 [hook.fetch-enrich.fetch]\nallow = [\"http://127.0.0.1:{ep}\"]\n\
                 [hook.axios-audit.secrets]\nAUDIT_URL = {{ file = \"aurl\" }}\nAUDIT_TOKEN = {{ file = \"atoken\" }}\n\
                 [hook.axios-audit.fetch]\nallow = [\"http://127.0.0.1:{ap}\"]\n"
            ),
        )
        .unwrap();
    };
    let staged = tempfile::tempdir().unwrap();
    lay(staged.path());
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()).hooks_folder(staged.path()));
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 200, "{body}");
    let (_, c) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(c["https://example.com/org"], "acme");
    assert_eq!(c["https://example.com/audit_id"], "evt-svc-basic");
    assert_eq!(enr.requests().len(), 1);
    assert_eq!(aud.requests().len(), 1);
}

// A fetch counts against the hook's time limit, and a call that fails cancels its
// requests. A service that never answers: a hook that awaits it fails at its own 300 ms
// (not the fetch's 10 s); a hook that leaves a request running and then throws has it
// closed at once, while the sidecar keeps running, not at the call's 5 s deadline; a
// hook that leaves one running and finishes cleanly has it go on (a webhook it did not
// await, as in Node) until the call's deadline, not the fetch's. Breaks if the hook
// waited past its limit, a failed call's request stayed open, or a request outlived its
// call's deadline.
#[test]
fn a_call_that_fails_cancels_its_requests() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                // Read the request, then wait for the peer to close, never answering.
                let t0 = std::time::Instant::now();
                let mut buf = [0u8; 4096];
                s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                    .unwrap();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = tx.send(t0.elapsed());
            });
        }
    });
    let awaits = "exports.onExecuteCredentialsExchange = async (event, api) => { \
                  await fetch(event.secrets.URL); api.accessToken.setCustomClaim('https://x/late', 1); };";
    let leaves = "exports.onExecuteCredentialsExchange = async (event, api) => { \
                  fetch(event.secrets.URL).catch(() => {}); api.accessToken.setCustomClaim('https://x/left', 1); \
                  if (event.client.client_id === 'svc-basic') { await new Promise(r => setTimeout(r, 100)); throw new Error('after the fetch'); } };";
    let d = folder(
        &[
            ("awaits.js", awaits),
            ("leaves.js", leaves),
            ("url", &format!("http://127.0.0.1:{port}/")),
        ],
        &format!(
            "enabled = \"awaits\"\n[hook.awaits]\ntimeout_ms = 300\n[hook.awaits.secrets]\nURL = {{ file = \"url\" }}\n[hook.awaits.fetch]\nallow = [\"http://127.0.0.1:{port}\"]\ntimeout_ms = 10000\n\
             [hook.leaves]\ntimeout_ms = 1500\n[hook.leaves.secrets]\nURL = {{ file = \"url\" }}\n[hook.leaves.fetch]\nallow = [\"http://127.0.0.1:{port}\"]\ntimeout_ms = 10000\n"
        ),
    );
    let idp = Idp::start();
    let sidecar = Sidecar::start(
        SidecarOpts::new(&idp.url())
            .hooks_folder(d.path())
            .env("TOKENHOOK_HOOKS_RELOAD_INTERVAL_MS", "50"),
    );
    let t0 = std::time::Instant::now();
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 500, "{body}");
    // The fetch's deadline is the call's: whichever ends it first, the hook's 300 ms held.
    let said = body["error_description"].as_str().unwrap_or("");
    assert!(
        said == "hook timed out after 300 ms" || said.ends_with("no answer within the time limit"),
        "{body}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t0.elapsed()
    );
    let first = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(first < std::time::Duration::from_secs(3), "{first:?}");

    // Now the hook that leaves its request behind; no request runs until it serves.
    let reloads = || {
        sidecar
            .metrics()
            .lines()
            .find(|l| l.starts_with(r#"tokenhook_hook_reloads_total{result="ok"}"#))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = reloads();
    let manifest = std::fs::read_to_string(d.path().join("hooks.toml")).unwrap();
    let hooks = sidecar.hooks_dir();
    std::fs::write(
        hooks.join(".next"),
        manifest.replace("enabled = \"awaits\"", "enabled = \"leaves\""),
    )
    .unwrap();
    std::fs::rename(hooks.join(".next"), hooks.join("hooks.toml")).unwrap();
    let t0 = std::time::Instant::now();
    while reloads() == before {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "no reload"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // It throws after starting the request: the request is cancelled with the call.
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 500, "{body}");
    let open = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the request reached the service");
    assert!(
        open < std::time::Duration::from_millis(1000),
        "a failed call's request stayed open {open:?}"
    );
    // It finishes cleanly: the request goes on until the call's 1.5 s deadline.
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    assert_eq!(status, 200, "{body}");
    let open = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the request reached the service");
    assert!(
        open > std::time::Duration::from_millis(1000) && open < std::time::Duration::from_secs(5),
        "a finished call's request is bounded by the call's deadline: {open:?}"
    );
}

/// The service `tests/fixtures/axios/gen.mjs` runs real axios against, in Rust: the same
/// routes, answers and echo.
fn axios_fixture_service() -> Service {
    const KEPT: [&str; 6] = [
        "accept",
        "authorization",
        "content-type",
        "x-custom",
        "x-team",
        "x-added",
    ];
    Service::start(|r: &Received| {
        let mut headers = serde_json::Map::new();
        for k in KEPT {
            if let Some(v) = r.header(k) {
                headers.insert(k.into(), json!(v));
            }
        }
        let got = json!({"method": r.method, "url": r.target, "headers": headers, "body": r.body});
        let path = r.target.split('?').next().unwrap_or("");
        let mut parts = path.split('/').skip(1);
        let (route, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let text = |status, ty: &str, body: &str| Reply {
            status,
            headers: vec![("Content-Type".into(), ty.into())],
            body: body.into(),
        };
        match route {
            "echo" => Reply::json(200, got),
            "status" => Reply::json(
                arg.parse().unwrap_or(500),
                json!({"error": format!("status {arg}")}),
            ),
            "text" => text(200, "text/plain", "hello, text"),
            "json-text" => text(200, "application/json", r#"{"kept":"as text"}"#),
            "slow" => {
                std::thread::sleep(std::time::Duration::from_millis(1000));
                text(200, "text/plain", "late")
            }
            _ => text(404, "text/plain", ""),
        }
    })
}

// tokenhook's built-in axios against what real axios (captured once with Node, in
// tests/fixtures/axios/expected.json) sends and returns for the same calls: each
// request as the service received it (method, URL with the serialized params, the
// headers a hook controls, body) and each result (status, data, content type; or the
// error's name, code, message and response). Breaks on any difference, e.g. params
// serialized otherwise, a JSON body without its content type, a status mapped to the
// wrong error code.
#[test]
fn built_in_axios_behaves_as_real_axios() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/axios/expected.json")).unwrap(),
    )
    .unwrap();
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/axios/cases.json")).unwrap(),
    )
    .unwrap();
    let summarize =
        std::fs::read_to_string(repo().join("tests/fixtures/axios/summarize.js")).unwrap();
    let svc = axios_fixture_service();
    let mut runs = String::new();
    for c in cases.as_array().unwrap() {
        runs.push_str(&format!(
            "  out[{name:?}] = await summarize(Promise.resolve().then(() => ({code})(axios, base)));\n",
            name = c["name"].as_str().unwrap(),
            code = c["code"].as_str().unwrap()
        ));
    }
    let hook = format!(
        "const axios = require('axios');\nconst summarize = {summarize};\n\
         exports.onExecuteCredentialsExchange = async (event, api) => {{\n  const base = event.secrets.BASE;\n  const out = {{}};\n{runs}\
           api.accessToken.setCustomClaim('https://x/r', JSON.parse(JSON.stringify(out).split(base).join('BASE')));\n}};\n"
    );
    let d = folder(
        &[("ax.js", &hook), ("base", &svc.url())],
        &format!(
            "enabled = \"ax\"\n[hook.ax]\ntimeout_ms = 10000\n[hook.ax.secrets]\nBASE = {{ file = \"base\" }}\n[hook.ax.fetch]\nallow = [\"http://127.0.0.1:{}\"]\nmax_requests = 50\n",
            svc.port
        ),
    );
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(out["outcome"], "token", "{out}");
    let got = &out["claims"]["https://x/r"];
    let mut received = svc.requests().into_iter();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        assert_eq!(&got[name], &case["result"], "{name}: result");
        for want in case["requests"].as_array().unwrap() {
            let r = received
                .next()
                .unwrap_or_else(|| panic!("{name}: no request"));
            let mut headers = serde_json::Map::new();
            for (k, _) in want["headers"].as_object().unwrap() {
                if let Some(v) = r.header(k) {
                    headers.insert(k.clone(), json!(v));
                }
            }
            let seen =
                json!({"method": r.method, "url": r.target, "headers": headers, "body": r.body});
            assert_eq!(&seen, want, "{name}: request");
            // No header a hook controls that real axios did not send.
            for k in [
                "authorization",
                "content-type",
                "x-custom",
                "x-team",
                "x-added",
            ] {
                assert_eq!(
                    r.header(k).is_some(),
                    want["headers"].get(k).is_some(),
                    "{name}: header {k}"
                );
            }
        }
    }
    assert!(received.next().is_none(), "no extra requests");
}

// HTTPS to a service whose certificate chains to `hooks.fetch_ca_file` (an internal CA):
// the fetch example over TLS, through `hooks run --config` and through the sidecar
// (the file given by its environment variable). Breaks if the runner or the sidecar
// built its client without the file's CA, or if a server of an unknown CA were trusted
// (without the file the same run must fail on the certificate, not reach the service).
#[test]
fn https_to_a_service_of_the_ca_file_through_the_runner_and_the_sidecar() {
    let svc = Service::start_tls(|r: &Received| match r.target.as_str() {
        "/clients/svc-basic" => Reply::json(200, json!({"org": "acme-tls", "roles": []})),
        _ => Reply::json(404, json!({})),
    });
    assert!(svc.url().starts_with("https://127.0.0.1:"));
    let ca = repo().join(common::service::TEST_CA);
    let d = folder(
        &[
            ("fetch-enrich.js", &example("hooks/fetch-enrich.js")),
            ("url", &svc.url()),
            ("key", ENRICH_KEY),
        ],
        &enrich_manifest(&svc, "https://127.0.0.1:PORT"),
    );
    // Without the CA: the handshake fails, the hook says so, nothing was served.
    let out = run_dir(d.path(), &event("svc-basic"));
    assert_eq!(
        out["error_description"], "client data service unavailable",
        "{out}"
    );
    assert!(out["logs"].to_string().contains("certificate"), "{out}");
    assert!(svc.requests().is_empty());

    let cfg = d.path().join("tokenhook.toml");
    std::fs::write(d.path().join("key.pem"), "unused by hooks run").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[signing]\nkeys = [\"key.pem\"]\n\
             [hooks]\ndir = \".\"\nfetch_ca_file = {:?}\n",
            ca.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run_dir_with(
        d.path(),
        &event("svc-basic"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(out["outcome"], "token", "{out}");
    assert_eq!(out["claims"]["https://example.com/org"], "acme-tls");
    assert_eq!(svc.requests().len(), 1);

    let idp = Idp::start();
    let sidecar = Sidecar::start(
        SidecarOpts::new(&idp.url())
            .hooks_folder(d.path())
            .env("TOKENHOOK_HOOKS_FETCH_CA_FILE", ca.to_str().unwrap()),
    );
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 200, "{body}");
    let (_, c) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(c["https://example.com/org"], "acme-tls");
    assert_eq!(svc.requests().len(), 2);
}
