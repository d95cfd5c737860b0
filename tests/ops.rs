//! Operations as an SRE meets them: metrics that promtool accepts, logs that never carry
//! a secret, key rotation under load with no failed verification, and SIGTERM draining.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn promtool_accepts_live_metrics_after_real_traffic() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    token_request(&sidecar.url("/oauth/token"), "svc-basic", "wrong", true);
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/elsewhere",
    ] {
        raw_request(
            sidecar.port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .unwrap();
    }
    let text = sidecar.metrics();
    for name in [
        "tokenhook_requests_total{outcome=\"ok\",route=\"discovery\"} 1",
        "tokenhook_requests_total{outcome=\"passthrough\",route=\"passthrough\"}",
        "tokenhook_stage_duration_seconds_bucket{stage=\"hook\",le=\"0.00005\"}",
        "tokenhook_hook_workers_up 2",
        "tokenhook_signing_key_info{alg=\"RS256\"",
        "tokenhook_signing_key_age_seconds{",
        "tokenhook_upstream_jwks_age_seconds ",
        "tokenhook_build_info{version=",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed: apt-get install prometheus");
    use std::io::Write;
    let mut promtool = promtool;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[test]
fn no_secret_reaches_a_log_line_in_a_full_run() {
    let idp = Idp::start();
    const HOOK_SECRET: &str = "hs-9f8e7d6c5b4a-hook-secret";
    fn layout(hooks: &std::path::Path) {
        std::fs::write(
            hooks.join("loud.js"),
            "module.exports = function (client, scope, audience, context, cb) { \
               console.log('running for', client.id, 'with', Object.keys(context.webtask.secrets).length, 'secrets'); \
               if (client.id === 'svc-post') return cb(new Error('denied ' + client.id)); \
               cb(null, {scope: scope, 'https://x/k': context.webtask.secrets.K.length}); };",
        )
        .unwrap();
        std::fs::write(
            hooks.join("hooks.toml"),
            "enabled = \"loud\"\n[hook.loud.secrets]\nK = { env = \"LOUD_SECRET\" }\n",
        )
        .unwrap();
    }
    // trace, and pingora's own crates named too: its debug and trace lines print
    // upstream request heads, bodies and malformed request buffers; the cap in
    // `telemetry::init` must hold whatever the filter says (removing it breaks this).
    let opts = SidecarOpts::new(&idp.url())
        .layout(layout)
        .env("LOUD_SECRET", HOOK_SECRET)
        .log_level("trace,pingora_core=trace,pingora_proxy=trace")
        .env("TOKENHOOK_LOG_FORMAT", "json");
    let sidecar = Sidecar::start(opts);
    let mut tokens = Vec::new();
    let (s, body, _) = token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(s, 200);
    tokens.push(body["access_token"].as_str().unwrap().to_owned());
    token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    token_request(
        &sidecar.url("/oauth/token"),
        "svc-basic",
        "svc-basic-wrong-secret",
        true,
    );
    // The IdP's own token for the same client, to look for it too.
    let (_, direct, _) = token_request(
        &format!("{}/oauth/token", idp.url()),
        BASIC.id,
        BASIC.secret,
        true,
    );
    tokens.push(direct["access_token"].as_str().unwrap().to_owned());
    raw_request(sidecar.port, "GET /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer opaque-bearer-credential\r\nConnection: close\r\n\r\n").unwrap();
    // Pass-through with a secret in a header and in the body: pingora's proxy prints
    // both at debug/trace ("Sending header to upstream", body chunks).
    raw_request(
        sidecar.port,
        &form_post(
            "/elsewhere",
            "x",
            "Authorization: Bearer passthrough-bearer-credential\r\n",
            "client_secret=passthrough-body-secret",
        ),
    )
    .unwrap();
    // A broken head (space in a header name) carrying a client_secret: pingora answers
    // 400 and, at debug, logs the raw buffer ("Fail to proxy: ... buf: ...").
    let broken = "POST /oauth/token HTTP/1.1\r\nHost: x\r\nBad Header: y\r\nContent-Length: 43\r\n\r\nclient_secret=malformed-head-secret-0000000";
    let r = raw_request(sidecar.port, broken).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    std::thread::sleep(Duration::from_millis(200));
    let mut logs = sidecar.logs();
    logs.push_str(&failed_exchange_logs());
    assert!(logs.lines().count() > 5, "expected a real log:\n{logs}");
    assert!(
        logs.contains("\"route\":\"token\""),
        "one JSON line per request:\n{logs}"
    );
    let key_pem = std::fs::read_to_string(sidecar.dir.path().join("key.pem")).unwrap();
    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut secrets: Vec<String> = vec![
        BASIC.secret.into(),
        POST.secret.into(),
        "svc-basic-wrong-secret".into(),
        HOOK_SECRET.into(),
        "opaque-bearer-credential".into(),
        "passthrough-bearer-credential".into(),
        "passthrough-body-secret".into(),
        "malformed-head-secret".into(),
        GARBAGE_TOKEN_PART.into(),
        basic(BASIC.id, BASIC.secret)
            .trim_start_matches("Basic ")
            .to_owned(),
        "PRIVATE KEY".into(),
    ];
    secrets.extend(key_body.iter().map(|s| s.to_string()));
    for t in &tokens {
        secrets.extend(t.split('.').map(str::to_owned));
    }
    for (n, line) in logs.lines().enumerate() {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "log line {n} carries a secret ({secret}):\n{line}"
            );
        }
        assert!(
            !line.contains("eyJ"),
            "log line {n} carries something JWT-like:\n{line}"
        );
    }
}

/// In the upstream's garbage answers; it must not reach a log line.
const GARBAGE_TOKEN_PART: &str = "garbage-token-payload-7d1e";

/// The logs of failed IdP exchanges, at trace: one sidecar whose IdP answers garbage
/// around a token-like string (a JSON body whose JWT does not verify, then a body that
/// is not JSON), one whose IdP is down. Their JWKS comes from a working stub, so they
/// get ready. Breaks if a warning quotes what the IdP sent, or pingora's client logs it.
fn failed_exchange_logs() -> String {
    use std::io::{Read, Write};
    let jwks = StubIdp::start(StubBehaviour::honest(Algorithm::RS256));
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_port = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let bodies = [
            format!(
                r#"{{"access_token":"eyJhbGciOiJSUzI1NiJ9.{GARBAGE_TOKEN_PART}.c2ln","token_type":"Bearer"}}"#
            ),
            format!("<html>not json: eyJhbGciOiJSUzI1NiJ9.{GARBAGE_TOKEN_PART}.c2ln</html>"),
        ];
        for (n, conn) in garbage.incoming().take(8).enumerate() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 8192];
            let _ = c.read(&mut buf);
            let body = &bodies[n % 2];
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let down = free_port();
    let mut logs = String::new();
    for upstream in [
        format!("http://127.0.0.1:{garbage_port}"),
        format!("http://127.0.0.1:{down}"),
    ] {
        let opts = SidecarOpts::new(&upstream).log_level("trace").env(
            "TOKENHOOK_UPSTREAM_JWKS_URL",
            &format!("{}/.well-known/jwks.json", jwks.url()),
        );
        let sidecar = Sidecar::start(opts);
        for _ in 0..2 {
            // A body it cannot take for a JWT is relayed as the IdP's (opaque tokens
            // pass through); either way nothing of it may be logged.
            token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
        }
        std::thread::sleep(Duration::from_millis(200));
        let l = sidecar.logs();
        assert!(
            l.contains("route=\"token\"") || l.contains("route=token"),
            "{l}"
        );
        logs.push_str(&l);
    }
    logs
}

/// What a resource server does: cache the JWKS, refetch it when a token names an
/// unknown kid, and verify.
struct Verifier {
    jwks_url: String,
    issuer: String,
    cache: std::sync::Mutex<jsonwebtoken::jwk::JwkSet>,
}

impl Verifier {
    fn verify(&self, token: &str) -> Result<(), String> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|e| e.to_string())?
            .kid
            .unwrap_or_default();
        if self.cache.lock().unwrap().find(&kid).is_none() {
            let fresh: jsonwebtoken::jwk::JwkSet = agent()
                .get(&self.jwks_url)
                .call()
                .map_err(|e| e.to_string())?
                .body_mut()
                .read_json()
                .map_err(|e| e.to_string())?;
            *self.cache.lock().unwrap() = fresh;
        }
        let set = self.cache.lock().unwrap().clone();
        let jwk = set.find(&kid).ok_or(format!("kid {kid} not published"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.validate_aud = false;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn write_keys(dir: &std::path::Path, generation: &str, active: &str, next: &str, retired: &str) {
    // The kubelet's Secret update: a new timestamped folder, then ..data swapped.
    let d = dir.join(generation);
    std::fs::create_dir_all(&d).unwrap();
    for (name, pem) in [
        ("active.pem", active),
        ("next.pem", next),
        ("retired.pem", retired),
    ] {
        std::fs::write(d.join(name), pem).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(generation, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[test]
fn keys_rotate_under_load_without_a_failed_verification() {
    let idp = Idp::start();
    let pems: Vec<String> = (0..4)
        .map(|_| tokenhook::keys::generate_pem(Algorithm::ES256).unwrap())
        .collect();
    let (p0, p1, p2, p3) = (
        pems[0].clone(),
        pems[1].clone(),
        pems[2].clone(),
        pems[3].clone(),
    );
    let opts = SidecarOpts::new(&idp.url()).algorithm(Algorithm::ES256).signing(
        "active = \"keys/active.pem\"\nnext = [\"keys/next.pem\"]\nretired = [\"keys/retired.pem\"]",
        Box::new({
            let (p0, p1, p2) = (p0.clone(), p1.clone(), p2.clone());
            move |root: &std::path::Path| {
            let keys = root.join("keys");
            std::fs::create_dir(&keys).unwrap();
            write_keys(&keys, "..gen1", &p1, &p2, &p0);
            for f in ["active.pem", "next.pem", "retired.pem"] {
                std::os::unix::fs::symlink(format!("..data/{f}"), keys.join(f)).unwrap();
            }
        }}),
    );
    let sidecar = Arc::new(Sidecar::start(opts));
    let verifier = Arc::new(Verifier {
        jwks_url: sidecar.url("/.well-known/jwks.json"),
        issuer: sidecar.url(""),
        cache: Default::default(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (s, v, stop) = (sidecar.clone(), verifier.clone(), stop.clone());
        clients.push(std::thread::spawn(move || {
            let (mut ok, mut failures, mut kids, mut held) =
                (0, Vec::new(), Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let (status, body, _) =
                    token_request(&s.url("/oauth/token"), BASIC.id, BASIC.secret, true);
                if status != 200 {
                    failures.push(format!("token request: {status} {body}"));
                    continue;
                }
                let t = body["access_token"].as_str().unwrap().to_owned();
                let kid = jsonwebtoken::decode_header(&t).unwrap().kid.unwrap();
                if kids.last() != Some(&kid) {
                    kids.push(kid);
                    held.push(t.clone());
                }
                // A token is used for a while after it was issued: check old ones too.
                for h in held.iter().chain(std::iter::once(&t)) {
                    match v.verify(h) {
                        Ok(()) => ok += 1,
                        Err(e) => failures.push(e),
                    }
                }
            }
            (ok, failures, kids)
        }));
    }
    let keys = sidecar.dir.path().join("keys");
    std::thread::sleep(Duration::from_millis(600));
    // Promote next to active, retire the old active, bring in a new next.
    write_keys(&keys, "..gen2", &p2, &p3, &p1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_kid = tokenhook::keys::SigningKey::from_pem(
        p2.as_bytes(),
        std::path::Path::new("k"),
        Algorithm::ES256,
    )
    .unwrap()
    .kid;
    loop {
        let (_, body, _) =
            token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
        let kid = jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap();
        if kid == new_kid {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rotation never took effect:\n{}",
            sidecar.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, failures, kids) = c.join().unwrap();
        assert!(failures.is_empty(), "verification failures: {failures:?}");
        assert!(kids.len() >= 2, "each client saw the rotation: {kids:?}");
        total += ok;
    }
    assert!(total > 20, "only {total} verifications");
    // The JWKS now publishes active (gen2 active), next and retired keys, in that order.
    let jwks = sidecar.jwks();
    assert_eq!(jwks.keys.len(), 3);
    assert_eq!(
        jwks.keys[0].common.key_id.as_deref(),
        Some(new_kid.as_str())
    );
    let m = sidecar.metrics();
    assert!(
        m.contains("tokenhook_signing_key_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("state=\"retired\""), "{m}");
    // A broken key file is refused; the current keys keep signing.
    write_keys(&keys, "..gen3", "not a key", &p3, &p1);
    std::thread::sleep(Duration::from_millis(500));
    let (s, body, _) = token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(s, 200);
    assert_eq!(
        jsonwebtoken::decode_header(body["access_token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap(),
        new_kid
    );
    assert!(
        sidecar
            .metrics()
            .contains("tokenhook_signing_key_reloads_total{result=\"error\"} 1")
    );
}

#[test]
fn sigterm_fails_readiness_first_lets_in_flight_requests_finish_then_exits() {
    let idp = Idp::start();
    let slow = "module.exports = function (client, scope, audience, context, cb) { setTimeout(function () { cb(null, {scope: scope}); }, 1500); };";
    let opts = SidecarOpts::new(&idp.url())
        .hook("slow", slow)
        .env("TOKENHOOK_SERVER_DRAIN_DELAY_SECONDS", "1")
        .env("TOKENHOOK_SERVER_GRACE_PERIOD_SECONDS", "3");
    let mut sidecar = Sidecar::start(opts);
    let url = sidecar.url("/oauth/token");
    let in_flight: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || token_request(&url, BASIC.id, BASIC.secret, true))
        })
        .collect();
    let jwks = sidecar.jwks();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    sidecar.signal("TERM");
    let deadline = Instant::now() + Duration::from_millis(800);
    while sidecar.ready() {
        assert!(
            Instant::now() < deadline,
            "readiness still passing after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in in_flight {
        let (s, body, _) = h.join().unwrap();
        assert_eq!(s, 200, "in-flight request cut off: {body}");
        verify_with(
            &jwks,
            body["access_token"].as_str().unwrap(),
            &sidecar.url(""),
        );
    }
    let status = sidecar
        .wait_exit(Duration::from_secs(10))
        .expect("exited within the grace period");
    assert!(status.success(), "{status:?}");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(sidecar.logs().contains("shutting down"));
}
