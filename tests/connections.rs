//! Client connections are bounded: slow heads and bodies are cut off, idle keep-alive
//! connections closed, the number of connections capped with an answer, pipelined
//! requests each answered, and SIGTERM with nothing in flight exits after the drain
//! delay. Real TCP on 127.0.0.1; every wait is bounded.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn sidecar(env: &[(&str, &str)]) -> (StubIdp, Sidecar) {
    let idp = StubIdp::start(StubBehaviour::honest(Algorithm::RS256));
    let opts = env
        .iter()
        .fold(SidecarOpts::new(&idp.url()), |o, (k, v)| o.env(k, v));
    let s = Sidecar::start(opts);
    (idp, s)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes (EOF or reset) and returns when that was, with what
/// it sent. Bounded by the socket's 10 s read timeout.
fn until_closed(mut s: TcpStream) -> (Instant, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("still open after 10 s")
            }
            Err(_) => break,
        }
    }
    (Instant::now(), got)
}

/// Writes `prefix`, then one byte of `trickle` every 300 ms (faster than any per-read
/// timeout would notice) until the server closes; returns how long that took.
fn trickle(port: u16, prefix: &str, trickle: &str) -> (Duration, Vec<u8>) {
    let mut s = connect(port);
    let started = Instant::now();
    s.write_all(prefix.as_bytes()).unwrap();
    let reader = std::thread::spawn({
        let s = s.try_clone().unwrap();
        move || until_closed(s)
    });
    for b in trickle.bytes().cycle().take(40) {
        std::thread::sleep(Duration::from_millis(300));
        if reader.is_finished() || s.write_all(&[b]).is_err() {
            break;
        }
    }
    let (closed, got) = reader.join().unwrap();
    (closed - started, got)
}

/// Breaks if the read deadline is per read (pingora's own) rather than for the whole
/// head: the trickle would then keep the connection open for the 12 s it lasts.
#[test]
fn a_slow_request_head_is_cut_off_after_the_read_timeout() {
    let (_idp, s) = sidecar(&[("TOKENHOOK_SERVER_READ_TIMEOUT_MS", "1000")]);
    let (took, got) = trickle(
        s.port,
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\n",
        "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?}"
    );
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

/// Breaks if the deadline stops at the end of the head (the body read then only has
/// pingora's per-read timeout, which a trickle never trips).
#[test]
fn a_slow_token_request_body_is_cut_off_after_the_read_timeout() {
    let (_idp, s) = sidecar(&[("TOKENHOOK_SERVER_READ_TIMEOUT_MS", "1000")]);
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ngrant_type=client_credentials",
        basic(BASIC.id, BASIC.secret)
    );
    let (took, got) = trickle(s.port, &head, "&x=y");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed after {took:?}"
    );
    // The token route answers the failed read before the connection closes.
    let text = String::from_utf8_lossy(&got);
    assert!(got.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
    // The same for a body on the pass-through path.
    let head = "POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\nabc";
    let (took, _) = trickle(s.port, head, "d");
    assert!(took < Duration::from_millis(2500), "closed after {took:?}");
}

/// Breaks if nothing ends the idle wait between keep-alive requests: pingora's own
/// keep-alive timeout is `Infinite` after an HTTP/1.1 request without `Keep-Alive`.
#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_idp, s) = sidecar(&[
        ("TOKENHOOK_SERVER_IDLE_TIMEOUT_MS", "1000"),
        ("TOKENHOOK_SERVER_READ_TIMEOUT_MS", "5000"),
    ]);
    let mut c = connect(s.port);
    c.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let resp = read_response(&mut r).unwrap();
    assert_eq!(resp.status, 200, "{}", resp.status_line);
    let answered = Instant::now();
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    let idle = answered.elapsed();
    assert!(rest.is_empty());
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_millis(2500),
        "closed after {idle:?} idle"
    );
}

/// Breaks if connections beyond `server.max_connections` are served (no cap), or are
/// dropped without the 503 a client can act on.
#[test]
fn connections_beyond_the_cap_get_a_503_and_are_closed() {
    let (_idp, s) = sidecar(&[("TOKENHOOK_SERVER_MAX_CONNECTIONS", "2")]);
    let held: Vec<TcpStream> = (0..2).map(|_| connect(s.port)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = raw_request(
        s.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("1"));
    // A closed connection frees its place.
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let r = raw_request(
        s.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(s.logs().contains("connection refused"));
}

/// Reads one response (status line, headers, Content-Length body) off `r`.
/// The next answer on a connection as (status, body), None once it is closed.
fn next_answer(r: &mut BufReader<TcpStream>) -> Option<(u16, String)> {
    let resp = read_response(r).ok()?;
    (resp.status != 0).then(|| (resp.status, resp.text()))
}

/// Breaks if pipelining is not enabled on the session: pingora's `reuse` then refuses
/// the connection because bytes past the first body were read, and closes it after
/// answering the first request with keep-alive; the second is never answered.
#[test]
fn pipelined_requests_in_one_write_are_each_answered() {
    let (_idp, s) = sidecar(&[]);
    let body = "grant_type=client_credentials";
    let token = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        basic(BASIC.id, BASIC.secret),
        body.len()
    );
    // Two token requests, then one that passes through, in a single write.
    let all =
        format!("{token}{token}GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut c = connect(s.port);
    c.write_all(all.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    for n in 0..2 {
        let (code, body) =
            next_answer(&mut r).unwrap_or_else(|| panic!("token request {n} not answered"));
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        s.verify(v["access_token"].as_str().unwrap());
    }
    let (code, body) = next_answer(&mut r).expect("pass-through request not answered");
    assert_eq!(code, 404, "the stub's answer: {body}");
}

/// Breaks if the process waits out `server.grace_period_seconds` (pingora's
/// unconditional sleep) with nothing in flight.
#[test]
fn sigterm_with_nothing_in_flight_exits_after_the_drain_delay() {
    let (_idp, mut s) = sidecar(&[
        ("TOKENHOOK_SERVER_DRAIN_DELAY_SECONDS", "1"),
        ("TOKENHOOK_SERVER_GRACE_PERIOD_SECONDS", "8"),
    ]);
    // Traffic before, and an idle keep-alive connection left open, which is not in
    // flight.
    let (status, _, _) = token_request(&s.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 200);
    let mut idle = connect(s.port);
    idle.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(idle.try_clone().unwrap());
    assert_eq!(next_answer(&mut r).map(|r| r.0), Some(200));
    let sent = Instant::now();
    s.signal("TERM");
    let status = s
        .wait_exit(Duration::from_secs(12))
        .expect("exits within the grace period");
    let took = sent.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "exited after {took:?}:\n{}",
        s.logs()
    );
}
