//! Fault injection through the sidecar (issue 11 item 7): a misbehaving IdP
//! (`common::FaultIdp`, real TCP on 127.0.0.1) breaks one path at a time, and each test
//! checks what the client gets (HTTP status and OAuth `error`), that it gets it within
//! `upstream.timeout_ms` plus a margin, that other clients are unaffected (a concurrent
//! request on a healthy route, then a good token once the fault is off), and that
//! nothing leaks: the open file descriptors of the sidecar and of its hook workers, and
//! the number of workers, are the same after a short settle as before the fault.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::time::{Duration, Instant};

/// `upstream.timeout_ms`, small so that slow faults are quick to test.
const TIMEOUT: Duration = Duration::from_millis(500);
/// What an answer may take beyond the timeout: a debug build on two shared cores
/// starting a connection, running the hook and signing.
const MARGIN: Duration = Duration::from_millis(1000);
/// `upstream.max_body_bytes`.
const MAX_BODY: usize = 64 * 1024;
/// How far fd counts may differ after the settle: a pooled connection to the IdP may be
/// open or not depending on which request last used it.
const FD_SLACK: usize = 2;

const TOKEN: &str = "/oauth/token";
const JWKS: &str = "/.well-known/jwks.json";
const DISCOVERY: &str = "/.well-known/openid-configuration";

fn opts(upstream: &str) -> SidecarOpts {
    SidecarOpts::new(upstream)
        .env(
            "TOKENHOOK_UPSTREAM_TIMEOUT_MS",
            &TIMEOUT.as_millis().to_string(),
        )
        .env("TOKENHOOK_UPSTREAM_CONNECT_TIMEOUT_MS", "300")
        .env("TOKENHOOK_UPSTREAM_MAX_BODY_BYTES", &MAX_BODY.to_string())
        .env("TOKENHOOK_UPSTREAM_JWKS_REFRESH_SECONDS", "1")
}

/// One misbehaving IdP serving tokens, discovery and JWKS, and a ready sidecar in front.
fn rig() -> (FaultIdp, Sidecar) {
    let idp = FaultIdp::start(StubBehaviour::honest(Algorithm::RS256));
    let sidecar = Sidecar::start(opts(&idp.url()));
    (idp, sidecar)
}

/// The token endpoint and discovery on one IdP, the JWKS on another (sharing its key),
/// so the JWKS can fail alone; the sidecar is started but not waited for.
fn split_rig() -> (FaultIdp, FaultIdp, SidecarOpts) {
    let behaviour = StubBehaviour::honest(Algorithm::RS256);
    let idp = FaultIdp::start(behaviour.clone());
    let jwks = FaultIdp::start(behaviour);
    let o = opts(&idp.url()).env(
        "TOKENHOOK_UPSTREAM_JWKS_URL",
        &format!("{}{JWKS}", jwks.url()),
    );
    (idp, jwks, o)
}

/// A client_credentials request from `svc-basic`: status, JSON body, and how long the
/// answer took.
fn token(s: &Sidecar) -> (u16, Value, Duration) {
    let (r, took) = token_raw(s);
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body, took)
}

/// The same request, the answer's bytes as they came.
fn token_raw(s: &Sidecar) -> (RawResponse, Duration) {
    let auth = format!("Authorization: {}\r\n", basic(BASIC.id, BASIC.secret));
    let req = form_post(TOKEN, "x", &auth, "grant_type=client_credentials");
    let t = Instant::now();
    let r = raw_request(s.port, &req).expect("the sidecar answers");
    (r, t.elapsed())
}

/// A good token, verified against the sidecar's JWKS.
fn good_token(s: &Sidecar) {
    let (status, body, _) = token(s);
    assert_eq!(status, 200, "{body}");
    s.verify(body["access_token"].as_str().expect("access_token"));
}

fn get(port: u16, path: &str) -> RawResponse {
    raw_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .expect("the sidecar answers")
}

/// Discovery goes to the IdP through the same client and pool as the token route: its
/// 200 shows that pool is not poisoned by the fault.
fn discovery_ok(s: &Sidecar) {
    let r = get(s.port, DISCOVERY);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["issuer"], s.url(""));
}

/// The sidecar's own JWKS, served without the IdP.
fn own_jwks_ok(s: &Sidecar) {
    let r = get(s.port, JWKS);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["keys"].as_array().unwrap().is_empty());
}

fn assert_oauth_error(got: &(u16, Value, Duration), status: u16, code: &str, what: &str) {
    let (s, body, took) = got;
    assert_eq!(
        (*s, body["error"].as_str()),
        (status, Some(code)),
        "{what}: {body}"
    );
    assert!(
        *took < TIMEOUT + MARGIN,
        "{what}: answered after {took:?}, beyond {TIMEOUT:?} + {MARGIN:?}"
    );
}

/// Waits (at most 5 s) until the fd counts are back within `FD_SLACK` of `before` with
/// as many workers, and asserts they are.
fn assert_no_leak(s: &Sidecar, before: FdCount, what: &str) {
    let close = |a: usize, b: usize| a.abs_diff(b) <= FD_SLACK;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = s.open_fds();
    while Instant::now() < deadline
        && !(close(now.sidecar, before.sidecar)
            && now.workers == before.workers
            && close(now.worker_fds, before.worker_fds))
    {
        std::thread::sleep(Duration::from_millis(100));
        now = s.open_fds();
    }
    assert!(
        close(now.sidecar, before.sidecar)
            && now.workers == before.workers
            && close(now.worker_fds, before.worker_fds),
        "{what}: fds before {before:?}, after {now:?}"
    );
    eprintln!("{what}: fds before {before:?}, after {now:?}");
    let logs = s.logs();
    assert!(!logs.contains("panicked"), "{what}: a panic\n{logs}");
}

/// The common shape of a token-endpoint fault: warm up, break `/oauth/token`, check the
/// client's answer and a concurrent healthy request, mend, get a good token, no leak.
fn token_fault(fault: Fault, status: u16, code: &str) {
    let what = format!("{fault:?}");
    let (idp, sidecar) = rig();
    good_token(&sidecar);
    discovery_ok(&sidecar);
    let before = sidecar.open_fds();
    idp.set(TOKEN, fault);
    let got = std::thread::scope(|sc| {
        let other = sc.spawn(|| {
            // While the faulty exchange is in progress.
            std::thread::sleep(Duration::from_millis(100));
            discovery_ok(&sidecar);
            own_jwks_ok(&sidecar);
        });
        let got = token(&sidecar);
        other
            .join()
            .expect("healthy routes answer during the fault");
        got
    });
    assert_oauth_error(&got, status, code, &what);
    // Twice more: a second faulty exchange may go out on a connection the first left.
    for _ in 0..2 {
        assert_oauth_error(&token(&sidecar), status, code, &what);
    }
    idp.clear(TOKEN);
    good_token(&sidecar);
    discovery_ok(&sidecar);
    assert_no_leak(&sidecar, before, &what);
}

// Breaks if an unreachable IdP maps to anything but 502 `temporarily_unavailable`
// (`upstream_failure`'s Connect arm), or if a refused connect is retried without bound
// (the answer would come late), or if listening again is not picked up (no 200 after).
#[test]
fn refused_connection_is_502_temporarily_unavailable() {
    let (idp, sidecar) = rig();
    good_token(&sidecar);
    let before = sidecar.open_fds();
    idp.refuse();
    for _ in 0..3 {
        assert_oauth_error(&token(&sidecar), 502, "temporarily_unavailable", "refused");
    }
    let r = get(sidecar.port, DISCOVERY);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (502, Some("temporarily_unavailable"))
    );
    own_jwks_ok(&sidecar);
    assert!(sidecar.ready(), "the JWKS was fetched once: stale-if-error");
    idp.listen_again();
    good_token(&sidecar);
    assert_no_leak(&sidecar, before, "refused");
}

// Breaks if `upstream.timeout_ms` stops bounding the exchange (the client would wait
// the IdP's 5 s), or if a timeout maps to anything but 504 `temporarily_unavailable`.
#[test]
fn slow_idp_is_504_within_the_timeout() {
    let (idp, sidecar) = rig();
    good_token(&sidecar);
    let before = sidecar.open_fds();
    idp.set(TOKEN, Fault::Slow(Duration::from_secs(5)));
    let got = std::thread::scope(|sc| {
        let other = sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            discovery_ok(&sidecar);
        });
        let got = token(&sidecar);
        other.join().unwrap();
        got
    });
    assert_oauth_error(&got, 504, "temporarily_unavailable", "slow");
    assert!(got.2 >= TIMEOUT, "answered before the timeout: {:?}", got.2);
    idp.clear(TOKEN);
    good_token(&sidecar);
    // The stub's sleeping threads hold their ends until they wake; the sidecar's must
    // already be closed.
    assert_no_leak(&sidecar, before, "slow");
}

// Breaks if a head cut short is taken as a response, or if the cut connection is
// pooled (the next exchange would fail).
#[test]
fn close_mid_head_is_502_server_error() {
    token_fault(Fault::CloseMidHead, 502, "server_error");
}

// Breaks if a body cut short is relayed or parsed as complete.
#[test]
fn close_mid_body_is_502_server_error() {
    token_fault(Fault::CloseMidBody, 502, "server_error");
}

// Breaks if bytes that are not HTTP are relayed, or make the sidecar wait for more.
#[test]
fn garbage_instead_of_http_is_502_server_error() {
    token_fault(Fault::Garbage, 502, "server_error");
}

// A Content-Length shorter than the body: the body the IdP framed is truncated JSON.
// Breaks if that 200 is relayed to the client (it would carry the IdP's own token,
// neither verified nor passed through the hook), or if the bytes left on the
// connection are read as the next exchange's response.
#[test]
fn shorter_content_length_is_502_server_error() {
    token_fault(Fault::ShortLength(20), 502, "server_error");
}

// A Content-Length longer than the body, then close. Breaks if the short body is taken
// as complete.
#[test]
fn longer_content_length_is_502_server_error() {
    token_fault(Fault::LongLength(100), 502, "server_error");
}

// Breaks if the sidecar reads a chunked body past `upstream.max_body_bytes` (memory
// would grow until the IdP stopped) or maps the cap to anything but 502.
#[test]
fn endless_chunked_body_is_502_server_error() {
    token_fault(Fault::EndlessChunked, 502, "server_error");
}

// Breaks if a Content-Length body beyond `upstream.max_body_bytes` is read whole.
#[test]
fn huge_body_is_502_server_error() {
    token_fault(Fault::Huge(16 * MAX_BODY), 502, "server_error");
}

// Breaks if `decode_content` inflates without the cap (8 MiB from a few KiB here; a
// real bomb would take the process), or relays the compressed bytes.
#[test]
fn gzip_bomb_is_502_server_error() {
    token_fault(Fault::GzipBomb(128 * MAX_BODY), 502, "server_error");
}

// Two different Content-Length values (RFC 9112 §6.3: unrecoverable). Breaks if either
// value is picked and the response used.
#[test]
fn duplicate_content_length_is_502_server_error() {
    token_fault(Fault::DoubleLength, 502, "server_error");
}

// Content-Length and Transfer-Encoding together, the smuggling shape: RFC 9112 §6.3
// has Transfer-Encoding override the length, which is how pingora reads it, and the
// sidecar frames its own answer. Breaks if the (wrong, 7-byte) length frames the body
// (the token would be cut: 502), or if the client's answer carries the IdP's framing
// headers instead of exactly one Content-Length of its own.
#[test]
fn content_length_with_chunked_is_read_as_chunked_and_reframed() {
    let (idp, sidecar) = rig();
    good_token(&sidecar);
    let before = sidecar.open_fds();
    idp.set(TOKEN, Fault::LengthAndChunked);
    for _ in 0..3 {
        let (r, took) = token_raw(&sidecar);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(took < TIMEOUT + MARGIN, "took {took:?}");
        let framing: Vec<_> = r
            .headers
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case("content-length")
                    || k.eq_ignore_ascii_case("transfer-encoding")
            })
            .collect();
        assert_eq!(framing.len(), 1, "{:?}", r.headers);
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        sidecar.verify(r.json()["access_token"].as_str().unwrap());
    }
    discovery_ok(&sidecar);
    idp.clear(TOKEN);
    good_token(&sidecar);
    assert_no_leak(&sidecar, before, "content-length with chunked");
}

// ---- The IdP's JWKS at start: the sidecar must not become ready ----

/// Errors counted by the JWKS refresher.
fn jwks_errors(s: &Sidecar) -> u64 {
    s.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(r#"tokenhook_upstream_jwks_refreshes_total{result="error"} "#))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `cond` every 50 ms for at most `within`.
fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// The JWKS broken by `break_it` before the sidecar starts: /readyz stays 503, token
/// requests get `status`/`code` in time, the sidecar's own routes answer, and once
/// `mend` runs the sidecar becomes ready and issues good tokens; no leak meanwhile.
fn jwks_fault_at_start(
    what: &str,
    break_it: impl Fn(&FaultIdp),
    mend: impl Fn(&FaultIdp),
    status: u16,
    code: &str,
) {
    let (_idp, jwks, o) = split_rig();
    break_it(&jwks);
    let sidecar = Sidecar::start_unready(o);
    assert!(
        wait_until(Duration::from_secs(10), || jwks_errors(&sidecar) >= 1),
        "{what}: no failed JWKS fetch counted"
    );
    let before = sidecar.open_fds();
    let r = get(sidecar.admin, "/readyz");
    assert_eq!(r.status, 503, "{what}: ready without the IdP's JWKS");
    for _ in 0..3 {
        assert_oauth_error(&token(&sidecar), status, code, what);
    }
    own_jwks_ok(&sidecar);
    discovery_ok(&sidecar);
    assert!(!sidecar.ready(), "{what}: ready without the IdP's JWKS");
    assert_no_leak(&sidecar, before, what);
    mend(&jwks);
    // The refresher backs off to at most 5 s between tries while failing.
    assert!(
        wait_until(Duration::from_secs(10), || sidecar.ready()),
        "{what}: not ready after the JWKS was mended"
    );
    good_token(&sidecar);
}

fn set_jwks(f: Fault) -> impl Fn(&FaultIdp) {
    move |j: &FaultIdp| j.set(JWKS, f.clone())
}

fn clear_jwks(j: &FaultIdp) {
    j.clear(JWKS)
}

// Breaks if readiness does not wait for the IdP's keys, if a token without keys to check
// it against is answered with anything but a retryable 502 `temporarily_unavailable`
// (the IdP is not to blame for a token we could not check), or if the refresher stops
// retrying after early failures.
#[test]
fn jwks_down_at_start() {
    jwks_fault_at_start(
        "jwks down at start",
        FaultIdp::refuse,
        FaultIdp::listen_again,
        502,
        "temporarily_unavailable",
    );
}

// Breaks if a slow JWKS fetch is not cut at `upstream.timeout_ms` (token requests wait
// for it when no keys are held).
#[test]
fn jwks_slow_at_start() {
    jwks_fault_at_start(
        "jwks slow at start",
        set_jwks(Fault::Slow(Duration::from_secs(5))),
        clear_jwks,
        502,
        "temporarily_unavailable",
    );
}

// Breaks if bytes that are not HTTP count as a JWKS.
#[test]
fn jwks_garbage_at_start() {
    jwks_fault_at_start(
        "jwks garbage at start",
        set_jwks(Fault::Garbage),
        clear_jwks,
        502,
        "temporarily_unavailable",
    );
}

// Breaks if an empty key set makes the sidecar ready (nothing could verify).
#[test]
fn jwks_empty_at_start() {
    jwks_fault_at_start(
        "jwks empty at start",
        set_jwks(Fault::Body(200, r#"{"keys":[]}"#.into())),
        clear_jwks,
        502,
        "temporarily_unavailable",
    );
}

// Breaks if a JWKS beyond `MAX_JWKS_BYTES` (256 KiB; 1 MiB here) is read and parsed.
#[test]
fn jwks_huge_at_start() {
    jwks_fault_at_start(
        "jwks huge at start",
        set_jwks(Fault::Huge(1024 * 1024)),
        clear_jwks,
        502,
        "temporarily_unavailable",
    );
}

// ---- The IdP's JWKS breaking after a good start: stale-if-error ----

/// A ready sidecar whose JWKS then breaks: refreshes fail (counted), tokens keep being
/// issued against the last good keys within the timeout, the sidecar stays ready, and
/// nothing leaks.
fn jwks_fault_later(what: &str, break_it: impl Fn(&FaultIdp)) {
    let (_idp, jwks, o) = split_rig();
    let sidecar = Sidecar::start(o);
    good_token(&sidecar);
    let before = sidecar.open_fds();
    let errors = jwks_errors(&sidecar);
    break_it(&jwks);
    // Two failed periodic refreshes (every second, quicker after a failure).
    assert!(
        wait_until(Duration::from_secs(10), || jwks_errors(&sidecar)
            >= errors + 2),
        "{what}: no failed refresh counted"
    );
    for _ in 0..3 {
        let (status, body, took) = token(&sidecar);
        assert_eq!(status, 200, "{what}: {body}");
        sidecar.verify(body["access_token"].as_str().unwrap());
        assert!(took < TIMEOUT + MARGIN, "{what}: took {took:?}");
    }
    assert!(sidecar.ready(), "{what}: /readyz went down");
    own_jwks_ok(&sidecar);
    assert_no_leak(&sidecar, before, what);
}

// Each of these breaks if a failed refresh replaces or empties the cached keys (tokens
// would get 502), or if a refresh in progress blocks token requests (they would take
// up to the timeout), or if a failing refresh leaks its connection.
#[test]
fn jwks_down_later_keeps_tokens_working() {
    jwks_fault_later("jwks down later", FaultIdp::refuse);
}

#[test]
fn jwks_slow_later_keeps_tokens_working() {
    jwks_fault_later(
        "jwks slow later",
        set_jwks(Fault::Slow(Duration::from_secs(5))),
    );
}

#[test]
fn jwks_garbage_later_keeps_tokens_working() {
    jwks_fault_later("jwks garbage later", set_jwks(Fault::Garbage));
}

#[test]
fn jwks_empty_later_keeps_tokens_working() {
    jwks_fault_later(
        "jwks empty later",
        set_jwks(Fault::Body(200, r#"{"keys":[]}"#.into())),
    );
}

#[test]
fn jwks_huge_later_keeps_tokens_working() {
    jwks_fault_later("jwks huge later", set_jwks(Fault::Huge(1024 * 1024)));
}

// A token answer in another form than JSON (RFC 6749 §5.1 asks for JSON) that carries
// the IdP's JWT is refused, on the token route and on any other path the guard covers,
// never relayed: the hook could not run on it, nor could it be re-signed in that shape.
// An opaque token in such an answer is relayed as before (D18). Breaks if the JWT
// reaches the client (form-encoded, as plain text, or on another path), or if the
// answer with an opaque token and a dotted scope is refused.
#[test]
fn a_jwt_in_a_token_answer_that_is_not_json_is_refused() {
    let behaviour = StubBehaviour::honest(Algorithm::RS256);
    let idp = FaultIdp::start(behaviour.clone());
    let sidecar = Sidecar::start(opts(&idp.url()));
    let (_, honest) = honest_answer(&behaviour, idp.port, TOKEN);
    let doc: Value = serde_json::from_str(&honest).unwrap();
    let jwt = doc["access_token"].as_str().unwrap().to_owned();
    let form = "application/x-www-form-urlencoded";
    for (media, body) in [
        (
            form,
            format!("access_token={jwt}&token_type=Bearer&expires_in=300"),
        ),
        ("text/plain", jwt.clone()),
        (
            "application/xml",
            format!("<r><access_token>{jwt}</access_token></r>"),
        ),
    ] {
        idp.set(TOKEN, Fault::Typed(200, media, body));
        let (r, _) = token_raw(&sidecar);
        assert_eq!(r.status, 502, "{media}: {}", r.text());
        assert_eq!(r.json()["error"], "server_error", "{media}");
        assert!(!r.text().contains(&jwt), "{media}");
    }
    let opaque = "access_token=opaque-2YotnFZFEjr1zCsicMWpAA&token_type=Bearer&scope=api.read.all";
    idp.set(TOKEN, Fault::Typed(200, form, opaque.into()));
    let (r, _) = token_raw(&sidecar);
    assert_eq!((r.status, r.text()), (200, opaque.to_owned()));
    idp.clear(TOKEN);

    idp.set(
        "/other",
        Fault::Typed(200, form, format!("access_token={jwt}&token_type=Bearer")),
    );
    // Not a client_credentials request, so not the token route: the guard's answer.
    let req = form_post(
        "/other",
        "x",
        "",
        "grant_type=refresh_token&refresh_token=r1",
    );
    let r = raw_request(sidecar.port, &req).expect("the sidecar answers");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains(&jwt));
    good_token(&sidecar);
    let m = sidecar.metrics();
    for blocked in [
        r#"tokenhook_requests_total{outcome="token_blocked",route="token"} 3"#,
        r#"tokenhook_requests_total{outcome="token_blocked",route="passthrough"} 1"#,
    ] {
        assert!(m.contains(blocked), "{blocked}\n{m}");
    }
}
