//! Tests of the egress policy (origins, addresses, load problems) and of `fetch`
//! against HTTP servers on 127.0.0.1 written here: nothing leaves the machine.

use super::addr::{self, Refusal};
use super::policy::{self, parse_entry};
use super::*;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------- policy, unit

fn fetch_policy(allow: &[&str]) -> FetchPolicy {
    FetchPolicy {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        ..FetchPolicy::default()
    }
}

/// Breaks if default ports are not filled in, hosts are not lower-cased, or scheme or
/// port stop taking part in the comparison.
#[test]
fn origins_normalize_and_compare_exactly() {
    let o = |s: &str| parse_entry(s).unwrap();
    assert_eq!(
        o("https://api.example.com"),
        o("https://API.Example.com:443/")
    );
    assert_eq!(
        o("http://enricher.svc:8080"),
        o("http://enricher.svc:8080/")
    );
    assert_ne!(o("http://enricher.svc:8080"), o("http://enricher.svc"));
    assert_ne!(o("http://api.example.com"), o("https://api.example.com"));
    assert_ne!(
        o("https://api.example.com"),
        o("https://api.example.com:8443")
    );
    assert_eq!(o("http://enricher.svc").port, 80);
    assert_eq!(o("https://api.example.com").port, 443);
    // Shown as written by people: default ports left out.
    assert_eq!(
        o("https://api.example.com:443").to_string(),
        "https://api.example.com"
    );
    assert_eq!(o("http://[::1]:8080").to_string(), "http://[::1]:8080");
    assert_eq!(
        o("http://127.0.0.1:8080").ip(),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(o("http://[::1]:8080").ip(), Some("::1".parse().unwrap()));
    assert_eq!(o("http://localhost:8080").ip(), None);
    // A URL's origin, path and query aside.
    let url = Url::parse("https://API.example.com/v1/x?key=1#f").unwrap();
    assert_eq!(Origin::of(&url), Some(o("https://api.example.com")));
    assert_eq!(Origin::of(&Url::parse("ftp://x.example/").unwrap()), None);
}

/// Breaks if any of these entries is accepted, if a problem loses its key, or if an
/// entry's password shows in the message.
#[test]
fn bad_entries_and_zero_limits_are_load_problems() {
    let bad = [
        "https://api.example.com/v1",
        "https://api.example.com?x=1",
        "https://api.example.com/?",
        "https://api.example.com#top",
        "https://user:hunter2@api.example.com",
        "ftp://files.example.com",
        "api.example.com",
        "",
        "http://0.0.0.0:8080",
        "http://224.0.0.1",
        "http://255.255.255.255",
        "http://[::]",
        "http://[ff02::1]",
        "http://[::ffff:0.0.0.0]",
    ];
    let mut p = fetch_policy(&bad);
    p.allow.push("https://good.example.com".into());
    p.timeout_ms = Some(0);
    p.max_response_bytes = Some(0);
    p.max_requests = Some(0);
    let problems = HookEgress::from_policy("h", &p, Duration::from_secs(1)).unwrap_err();
    let allow: Vec<&str> = problems
        .iter()
        .filter(|(k, _)| k == "hooks.dir/hooks.toml: hook.h.fetch.allow")
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(allow.len(), bad.len(), "{problems:#?}");
    for (i, entry) in bad.iter().enumerate() {
        assert!(allow[i].starts_with(&format!("[{i}] ")), "{}", allow[i]);
        if !entry.contains('@') {
            assert!(allow[i].contains(&format!("{entry:?}")), "{}", allow[i]);
        }
    }
    let with_password = allow[4];
    assert!(
        !with_password.contains("hunter2") && !with_password.contains("user:"),
        "{with_password}"
    );
    assert!(
        with_password.contains("***@api.example.com"),
        "{with_password}"
    );
    for field in ["timeout_ms", "max_response_bytes", "max_requests"] {
        let key = format!("hooks.dir/hooks.toml: hook.h.fetch.{field}");
        assert!(
            problems.iter().any(|(k, _)| *k == key),
            "{field}: {problems:#?}"
        );
    }
    assert_eq!(problems.len(), bad.len() + 3);
}

/// Breaks if a default changes or `timeout_ms` stops overriding the hook's limit.
#[test]
fn limits_default_to_the_hook_limit_one_mib_and_ten_requests() {
    let c = policy::compile("h", &fetch_policy(&[]), Duration::from_millis(1500)).unwrap();
    assert_eq!(c.timeout, Duration::from_millis(1500));
    assert_eq!(c.max_response_bytes, 1024 * 1024);
    assert_eq!(c.max_requests, 10);
    let mut p = fetch_policy(&["http://127.0.0.1:1", "https://api.example.com"]);
    p.timeout_ms = Some(200);
    p.max_response_bytes = Some(5);
    p.max_requests = Some(2);
    let c = policy::compile("h", &p, Duration::from_millis(1500)).unwrap();
    assert_eq!(
        (c.timeout, c.max_response_bytes, c.max_requests),
        (Duration::from_millis(200), 5, 2)
    );
    assert_eq!(c.allow.len(), 2);
    // Literal entries for loopback and metadata addresses are the operator's to make.
    assert!(policy::compile("h", &fetch_policy(&["http://169.254.169.254"]), c.timeout).is_ok());
}

/// Breaks if any range loses its refusal (first list) or an allowed address, private
/// ranges and boundaries included, is refused (second list).
#[test]
fn addresses_are_classified_v4_v6_and_v4_mapped() {
    use Refusal::*;
    let refused = [
        ("127.0.0.1", Loopback),
        ("127.255.255.254", Loopback),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("64:ff9b::7f00:1", Loopback),
        ("169.254.0.1", LinkLocal),
        ("169.254.169.254", LinkLocal),
        ("::ffff:169.254.169.254", LinkLocal),
        ("fe80::1", LinkLocal),
        ("febf:ffff::1", LinkLocal),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("::", Unspecified),
        ("::ffff:0.0.0.0", Unspecified),
        ("224.0.0.1", Multicast),
        ("239.255.255.255", Multicast),
        ("ff02::1", Multicast),
        ("::ffff:224.0.0.251", Multicast),
        ("255.255.255.255", Broadcast),
        ("::ffff:255.255.255.255", Broadcast),
        ("fd00:ec2::254", Metadata),
        ("100.100.100.200", Metadata),
    ];
    for (ip, why) in refused {
        assert_eq!(addr::refused(ip.parse().unwrap()), Some(why), "{ip}");
    }
    let allowed = [
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "8.8.8.8",
        "1.0.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "223.255.255.255",
        "255.255.255.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2001:db8::1",
        "fd12:3456::1",
        "fec0::1",
        "fe7f::1",
    ];
    for ip in allowed {
        assert_eq!(addr::refused(ip.parse().unwrap()), None, "{ip}");
    }
}

/// Breaks if a name with one good address is refused whole, or one with only refused
/// addresses gets through.
#[test]
fn resolved_addresses_are_filtered() {
    let a = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
    assert_eq!(
        addr::filter([a("127.0.0.1"), a("10.1.2.3"), a("::1")]),
        Ok(vec![a("10.1.2.3")])
    );
    let err = addr::filter([a("169.254.169.254"), a("::1")]).unwrap_err();
    assert_eq!(err.why, Refusal::LinkLocal);
    assert_eq!(err.to_string(), "resolves to 169.254.169.254 (link-local)");
    assert_eq!(addr::filter([]), Ok(vec![]));
}

/// Breaks if the JSON shapes the worker pipe relies on change.
#[test]
fn requests_and_results_travel_as_json() {
    let r: FetchRequest = serde_json::from_str(r#"{"url": "http://x.example/"}"#).unwrap();
    assert_eq!(r, FetchRequest::get("http://x.example/"));
    let r: FetchRequest = serde_json::from_str(
        r#"{"url": "u", "method": "POST", "headers": [["a", "b"]], "body": "{}"}"#,
    )
    .unwrap();
    assert_eq!(r.headers, vec![("a".to_owned(), "b".to_owned())]);
    let e = FetchResult::Error {
        reason: FetchErrorKind::TooLarge,
        message: "m".into(),
    };
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        serde_json::json!({"kind": "error", "reason": "too_large", "message": "m"})
    );
    let ok = FetchResult::Response {
        status: 200,
        status_text: "OK".into(),
        headers: vec![("a".into(), "b".into())],
        body: "x".into(),
        url: "u".into(),
        redirected: false,
    };
    let v = serde_json::to_value(&ok).unwrap();
    assert_eq!(v["kind"], "response");
    assert_eq!(v["headers"], serde_json::json!([["a", "b"]]));
    assert_eq!(serde_json::from_value::<FetchResult>(v).unwrap(), ok);
}

/// Breaks if methods stop being normalized like `fetch`'s, a forbidden one is sent, a
/// bad header passes, a header value shows in an error, or a client-owned header is
/// passed on.
#[test]
fn methods_and_headers_are_checked() {
    let url = || Url::parse("http://127.0.0.1:1/").unwrap();
    let req = |method: &str, headers: &[(&str, &str)], body: Option<&str>| FetchRequest {
        url: String::new(),
        method: method.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.map(Into::into),
    };
    let err = |r: Result<Prepared, Fail>| match r {
        Err(Fail::Error(m)) => m,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("accepted"),
    };
    assert_eq!(
        prepare(req("post", &[], None), url()).ok().unwrap().method,
        Method::POST
    );
    assert_eq!(
        prepare(req("Patch", &[], None), url())
            .ok()
            .unwrap()
            .method
            .as_str(),
        "Patch"
    );
    for m in ["CONNECT", "trace", "Track"] {
        assert!(
            err(prepare(req(m, &[], None), url())).contains("not allowed"),
            "{m}"
        );
    }
    assert!(err(prepare(req("GE T", &[], None), url())).contains("invalid method"));
    assert!(err(prepare(req("GET", &[], Some("x")), url())).contains("no body"));
    assert!(err(prepare(req("HEAD", &[], Some("x")), url())).contains("no body"));
    let m = err(prepare(req("GET", &[("bad name", "v")], None), url()));
    assert_eq!(m, "invalid header name");
    let m = err(prepare(
        req(
            "GET",
            &[("authorization", "Bearer s3cret\r\nX-Injected: 1")],
            None,
        ),
        url(),
    ));
    assert!(m.contains("authorization") && !m.contains("s3cret"), "{m}");
    let p = prepare(
        req(
            "POST",
            &[
                ("Host", "admin.internal"),
                ("Content-Length", "1"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "upgrade"),
                ("Keep-Alive", "1"),
                ("Proxy-Authorization", "x"),
                ("Accept-Encoding", "gzip"),
                ("X-Kept", " padded\t"),
                ("X-Kept", "twice"),
            ],
            Some("{}"),
        ),
        url(),
    )
    .ok()
    .unwrap();
    let names: Vec<&str> = p.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-kept", "content-type"]);
    let kept: Vec<&[u8]> = p
        .headers
        .get_all("x-kept")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(kept, [b"padded".as_slice(), b"twice".as_slice()]);
    assert_eq!(p.headers["content-type"], "text/plain;charset=UTF-8");
    let big = "x".repeat(MAX_REQUEST_BODY + 1);
    assert!(matches!(
        prepare(req("POST", &[], Some(&big)), url()),
        Err(Fail::TooLarge(_))
    ));
    let many: Vec<(String, String)> = (0..100)
        .map(|i| (format!("x-h{i}"), "v".repeat(1000)))
        .collect();
    let r = FetchRequest {
        headers: many,
        ..FetchRequest::get("")
    };
    assert!(matches!(prepare(r, url()), Err(Fail::TooLarge(_))));
}

// ---------------------------------------------------------------- loopback servers

/// A request as the test server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the test server answers.
enum Reply {
    Now(Vec<u8>),
    After(Duration, Vec<u8>),
    /// A chunked body of `count` chunks of 1 KiB.
    Chunks(usize),
    /// Nothing: waits for the client to close the connection, and counts the close.
    Hold,
}

struct Server {
    /// As it stands in a URL (`127.0.0.1`, `[::1]`).
    host: String,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed_by_client: Arc<AtomicUsize>,
}

impl Server {
    fn origin(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// An answer with `Connection: close`, so the client never reuses a socket this
/// server is closing.
fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

fn redirect(status: u16, location: &str) -> Reply {
    Reply::Now(answer(
        &format!("{status} Redirect"),
        &[("Location", location)],
        "",
    ))
}

async fn serve(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
    serve_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler)
}

fn serve_on(
    listener: TcpListener,
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> Server {
    let local = listener.local_addr().unwrap();
    let (host, port) = match local {
        SocketAddr::V4(a) => (a.ip().to_string(), a.port()),
        SocketAddr::V6(a) => (format!("[{}]", a.ip()), a.port()),
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let (s, c) = (seen.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (handler, seen, closed) = (handler.clone(), s.clone(), c.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut sock).await else {
                    return;
                };
                seen.lock().unwrap().push(req.clone());
                match handler(&req) {
                    Reply::Now(bytes) => {
                        let _ = sock.write_all(&bytes).await;
                    }
                    Reply::After(wait, bytes) => {
                        tokio::time::sleep(wait).await;
                        let _ = sock.write_all(&bytes).await;
                    }
                    Reply::Chunks(count) => {
                        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = format!("400\r\n{}\r\n", "a".repeat(1024));
                        for _ in 0..count {
                            if sock.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    }
                    Reply::Hold => {
                        let mut b = [0u8; 64];
                        if let Ok(0) = sock.read(&mut b).await {
                            closed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    Server {
        host,
        port,
        seen,
        closed_by_client: closed,
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn egress() -> Egress {
    Egress::new(&[]).unwrap()
}

fn hook_allowing(allow: &[&str]) -> HookEgress {
    HookEgress::from_policy("h", &fetch_policy(allow), Duration::from_secs(10)).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// The error of a result that must be one.
fn error_of(r: &FetchResult) -> (FetchErrorKind, &str) {
    match r {
        FetchResult::Error { reason, message } => (*reason, message.as_str()),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn ok_of(r: &FetchResult) -> (u16, &str, &str, bool) {
    match r {
        FetchResult::Response {
            status,
            body,
            url,
            redirected,
            ..
        } => (*status, body.as_str(), url.as_str(), *redirected),
        other => panic!("expected a response, got {other:?}"),
    }
}

/// A port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- fetch

/// Breaks if an allowed IP literal is refused (the loopback rule applied to it), or
/// status, reason, headers, body, method or the POST body get lost on the way.
#[tokio::test]
async fn allowed_loopback_literal_answers_with_status_headers_and_body() {
    let s = serve(|_| {
        Reply::Now(answer(
            "201 Created",
            &[("Content-Type", "application/json"), ("X-Answer", "42")],
            r#"{"ok":true}"#,
        ))
    })
    .await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let r = e
        .session(&hook)
        .fetch(
            FetchRequest {
                url: s.url("/enrich?client=abc"),
                method: "post".into(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("X-Hook".into(), "yes".into()),
                ],
                body: Some(r#"{"client_id":"abc"}"#.into()),
            },
            soon(),
        )
        .await;
    let FetchResult::Response {
        status,
        status_text,
        headers,
        body,
        url,
        redirected,
    } = &r
    else {
        panic!("{r:?}")
    };
    assert_eq!((*status, status_text.as_str()), (201, "Created"));
    assert!(
        headers.contains(&("x-answer".into(), "42".into())),
        "{headers:?}"
    );
    assert_eq!(body, r#"{"ok":true}"#);
    assert_eq!(url, &s.url("/enrich?client=abc"));
    assert!(!redirected);
    let seen = s.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/enrich?client=abc");
    assert_eq!(seen[0].body, br#"{"client_id":"abc"}"#);
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].header("x-hook"), Some("yes"));
    assert!(
        seen[0]
            .header("user-agent")
            .unwrap()
            .starts_with("tokenhook/")
    );
    assert_eq!(seen[0].header("cookie"), None);
}

/// Breaks if an IPv6 literal entry stops matching its URL (brackets, normalization) or
/// is put through the address rules.
#[tokio::test]
async fn an_allowed_ipv6_literal_is_reached() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no ::1 on this machine; nothing to test");
        return;
    };
    let s = serve_on(listener, |_| Reply::Now(answer("200 OK", &[], "six")));
    let hook = hook_allowing(&[&format!("http://[0:0::1]:{}", s.port)]);
    let r = egress()
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/")), soon())
        .await;
    assert_eq!(ok_of(&r).1, "six");
}

/// The lead drives fetches from pingora's request tasks, which must be `Send`; this
/// fails to compile if a session or its fetch future stops being so.
#[test]
fn sessions_and_fetches_are_send() {
    fn send<T: Send>(_: &T) {}
    let e = egress();
    let hook = HookEgress::deny_all("h");
    let session = e.session(&hook);
    send(&session);
    send(&session.fetch(FetchRequest::get("http://x.example/"), soon()));
}

/// Breaks if a host name is connected to without checking what it resolved to:
/// `localhost` is allowed by name here, and resolves to loopback.
#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused() {
    let s = serve(|_| Reply::Now(answer("200 OK", &[], "reached"))).await;
    let origin = format!("http://localhost:{}", s.port);
    let hook = hook_allowing(&[&origin]);
    let r = egress()
        .session(&hook)
        .fetch(FetchRequest::get(format!("{origin}/")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert!(
        message.contains("address refused") && message.contains("loopback"),
        "{message}"
    );
    assert!(message.starts_with(&origin), "{message}");
    assert!(s.seen().is_empty());
}

/// Breaks if the origin check is skipped, or the port or the scheme leaves the
/// comparison.
#[tokio::test]
async fn unlisted_origin_port_or_scheme_is_refused() {
    let listed = serve(|_| Reply::Now(answer("200 OK", &[], "listed"))).await;
    let other = serve(|_| Reply::Now(answer("200 OK", &[], "other"))).await;
    let e = egress();
    let cases = [
        // Another port on the same address.
        (vec![listed.origin()], other.url("/")),
        // The default port (80) where the server's port is asked for.
        (vec!["http://127.0.0.1".to_owned()], other.url("/")),
        // The right port, the wrong scheme.
        (
            vec![format!("https://127.0.0.1:{}", other.port)],
            other.url("/"),
        ),
        // Another loopback address, same port.
        (
            vec![other.origin()],
            format!("http://127.0.0.2:{}/", other.port),
        ),
    ];
    for (allow, url) in cases {
        let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
        let hook = hook_allowing(&allow);
        let r = e
            .session(&hook)
            .fetch(FetchRequest::get(&url), soon())
            .await;
        let (kind, message) = error_of(&r);
        assert_eq!(kind, FetchErrorKind::Refused, "{url}");
        assert!(
            message.contains("is not in the allow-list of hook h"),
            "{message}"
        );
    }
    assert!(other.seen().is_empty());
    let hook = HookEgress::deny_all("plain");
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(listed.url("/")), soon())
        .await;
    assert_eq!(
        error_of(&r),
        (
            FetchErrorKind::Refused,
            "hook plain has no [hook.plain.fetch] allow-list"
        )
    );
    assert!(listed.seen().is_empty());
}

/// Breaks if a redirect's target is not checked against the allow-list.
#[tokio::test]
async fn redirects_to_metadata_or_unlisted_origins_are_refused() {
    let unlisted = serve(|_| Reply::Now(answer("200 OK", &[], "unlisted"))).await;
    let target = unlisted.url("/");
    let s = serve(move |req| match req.target.as_str() {
        "/metadata" => redirect(302, "http://169.254.169.254/latest/meta-data/"),
        _ => redirect(307, &target),
    })
    .await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/metadata")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert_eq!(
        message,
        "http://169.254.169.254 is not in the allow-list of hook h"
    );
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/other")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert!(message.starts_with(&unlisted.origin()), "{message}");
    assert!(unlisted.seen().is_empty());
}

/// Breaks if a redirect hop to an allowed host name skips the address check: the name
/// is allowed, but resolves (here by a fixed answer) to the metadata address. No packet
/// goes there: the resolver refuses before any connection.
#[tokio::test]
async fn redirect_to_an_allowed_name_on_a_refused_address_is_refused() {
    let e = Egress::with_hosts(vec![
        (
            "metadata.test".into(),
            vec!["169.254.169.254".parse().unwrap()],
        ),
        (
            "mapped.test".into(),
            vec!["::ffff:127.0.0.1".parse().unwrap()],
        ),
    ])
    .unwrap();
    let port = closed_port().await;
    let s = serve(move |_| redirect(302, &format!("http://metadata.test:{port}/"))).await;
    let meta = format!("http://metadata.test:{port}");
    let mapped = format!("http://mapped.test:{port}");
    let hook = hook_allowing(&[&s.origin(), &meta, &mapped]);
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert_eq!(
        message,
        format!("{meta}: address refused: resolves to 169.254.169.254 (link-local)")
    );
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(&mapped), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert!(message.contains("(loopback)"), "{message}");
}

/// Breaks if redirects stop being followed, or a fourth is followed.
#[tokio::test]
async fn three_redirects_are_followed_and_a_fourth_is_refused() {
    // `/r/N` redirects to `/r/N-1`; `/r/0` answers.
    let s = serve(|req| {
        let n: u32 = req.target.trim_start_matches("/r/").parse().unwrap();
        if n == 0 {
            Reply::Now(answer("200 OK", &[], "landed"))
        } else {
            redirect(301, &format!("/r/{}", n - 1))
        }
    })
    .await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/r/3")), soon())
        .await;
    assert_eq!(ok_of(&r), (200, "landed", s.url("/r/0").as_str(), true));
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/r/4")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Refused);
    assert!(message.contains("more than 3 redirects"), "{message}");
    // 4 hops of the first fetch, 4 of the second: the fifth (/r/0) is never asked.
    assert_eq!(s.seen().len(), 8);
}

/// Breaks if a redirect keeps a method `fetch` changes to GET, or changes one it keeps.
#[tokio::test]
async fn redirects_change_the_method_as_fetch_does() {
    let s = serve(|req| match req.target.split_once("/to/") {
        Some((_, status)) => redirect(status.parse().unwrap(), "/done"),
        None => Reply::Now(answer("200 OK", &[], "done")),
    })
    .await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let cases = [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (302, "PUT", "PUT"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
    ];
    for (i, (status, method, then)) in cases.into_iter().enumerate() {
        let r = e
            .session(&hook)
            .fetch(
                FetchRequest {
                    url: s.url(&format!("/to/{status}")),
                    method: method.into(),
                    headers: vec![("Content-Type".into(), "application/json".into())],
                    body: Some("{\"a\":1}".into()),
                },
                soon(),
            )
            .await;
        assert_eq!(ok_of(&r).0, 200, "{status} {method}");
        let seen = s.seen();
        let last = &seen[2 * i + 1];
        assert_eq!(last.target, "/done");
        assert_eq!(last.method, then, "{status} {method}");
        if then == "GET" {
            assert!(last.body.is_empty(), "{status} {method}");
            assert_eq!(last.header("content-type"), None, "{status} {method}");
        } else {
            assert_eq!(last.body, b"{\"a\":1}", "{status} {method}");
            assert_eq!(last.header("content-type"), Some("application/json"));
        }
    }
}

/// Breaks if `Authorization` or `Cookie` crosses to another origin (two ports are two
/// origins), or if they are dropped on a same-origin hop.
#[tokio::test]
async fn credentials_are_dropped_on_a_cross_origin_hop_only() {
    let b = serve(|_| Reply::Now(answer("200 OK", &[], "b"))).await;
    let to_b = b.url("/landing");
    let a = serve(move |req| match req.target.as_str() {
        "/cross" => redirect(302, &to_b),
        "/same" => redirect(302, "/landing"),
        _ => Reply::Now(answer("200 OK", &[], "a")),
    })
    .await;
    let e = egress();
    let hook = hook_allowing(&[&a.origin(), &b.origin()]);
    let with_credentials = |path: &str| FetchRequest {
        headers: vec![
            ("Authorization".into(), "Bearer s3cret".into()),
            ("Cookie".into(), "session=s3cret".into()),
            ("X-Trace".into(), "t1".into()),
        ],
        ..FetchRequest::get(a.url(path))
    };
    let r = e
        .session(&hook)
        .fetch(with_credentials("/cross"), soon())
        .await;
    assert_eq!(ok_of(&r).1, "b");
    let at_b = &b.seen()[0];
    assert_eq!(at_b.header("authorization"), None);
    assert_eq!(at_b.header("cookie"), None);
    assert_eq!(at_b.header("x-trace"), Some("t1"));
    let r = e
        .session(&hook)
        .fetch(with_credentials("/same"), soon())
        .await;
    assert_eq!(ok_of(&r).1, "a");
    let seen = a.seen();
    let landing = seen.iter().find(|s| s.target == "/landing").unwrap();
    assert_eq!(landing.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(landing.header("cookie"), Some("session=s3cret"));
}

/// Breaks if the response cap is not applied, to a declared length or to a streamed
/// body, or if a body of exactly the cap is refused.
#[tokio::test]
async fn a_response_over_max_response_bytes_is_too_large() {
    let s = serve(|req| match req.target.as_str() {
        "/declared" => Reply::Now(answer("200 OK", &[], &"x".repeat(2000))),
        "/exact" => Reply::Now(answer("200 OK", &[], &"x".repeat(1024))),
        // 1 GiB if read to the end; the fetch stops after the second KiB.
        _ => Reply::Chunks(1024 * 1024),
    })
    .await;
    let mut p = fetch_policy(&[&s.origin()]);
    p.max_response_bytes = Some(1024);
    let hook = HookEgress::from_policy("h", &p, Duration::from_secs(10)).unwrap();
    let e = egress();
    for path in ["/declared", "/streamed"] {
        let started = Instant::now();
        let r = e
            .session(&hook)
            .fetch(FetchRequest::get(s.url(path)), soon())
            .await;
        let (kind, message) = error_of(&r);
        assert_eq!(kind, FetchErrorKind::TooLarge, "{path}");
        assert_eq!(
            message,
            format!("{}: response body over 1024 bytes", s.origin())
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
    }
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/exact")), soon())
        .await;
    assert_eq!(ok_of(&r).1.len(), 1024);
}

/// Breaks if neither the policy's `timeout_ms` nor the caller's deadline ends a request
/// to a server that answers too late.
#[tokio::test]
async fn a_slow_server_times_out_by_policy_or_deadline() {
    let s = serve(|_| Reply::After(Duration::from_secs(30), answer("200 OK", &[], "late"))).await;
    let e = egress();
    let mut p = fetch_policy(&[&s.origin()]);
    p.timeout_ms = Some(200);
    let short = HookEgress::from_policy("h", &p, Duration::from_secs(30)).unwrap();
    let long = hook_allowing(&[&s.origin()]);
    // The caller's deadline, from the start of the fetch.
    for (hook, within) in [(&short, 10_000), (&long, 200)] {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(within);
        let r = e
            .session(hook)
            .fetch(FetchRequest::get(s.url("/")), deadline)
            .await;
        let elapsed = started.elapsed();
        assert_eq!(
            error_of(&r),
            (
                FetchErrorKind::Timeout,
                format!("{}: no answer within the time limit", s.origin()).as_str()
            )
        );
        assert!(
            elapsed >= Duration::from_millis(190) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
    }
}

/// Breaks if dropping the fetch leaves the request running (the server would not see
/// its connection closed).
#[tokio::test]
async fn dropping_the_fetch_closes_the_connection() {
    let s = serve(|_| Reply::Hold).await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let session = e.session(&hook);
    let fetch = session.fetch(FetchRequest::get(s.url("/")), soon());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fetch)
            .await
            .is_err()
    );
    for _ in 0..50 {
        if s.closed_by_client.load(Ordering::SeqCst) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server never saw the connection close");
}

/// Breaks if `max_requests` is not counted per session, or not counted at all.
#[tokio::test]
async fn max_requests_is_enforced_per_hook_call() {
    let s = serve(|_| Reply::Now(answer("200 OK", &[], "ok"))).await;
    let mut p = fetch_policy(&[&s.origin()]);
    p.max_requests = Some(2);
    let hook = HookEgress::from_policy("h", &p, Duration::from_secs(10)).unwrap();
    let e = egress();
    let session = e.session(&hook);
    for _ in 0..2 {
        let r = session.fetch(FetchRequest::get(s.url("/")), soon()).await;
        assert_eq!(ok_of(&r).0, 200);
    }
    let r = session.fetch(FetchRequest::get(s.url("/")), soon()).await;
    assert_eq!(
        error_of(&r),
        (
            FetchErrorKind::Refused,
            "hook h made more than 2 requests in one call"
        )
    );
    assert_eq!(s.seen().len(), 2);
    // The next hook call starts again.
    let r = e
        .session(&hook)
        .fetch(FetchRequest::get(s.url("/")), soon())
        .await;
    assert_eq!(ok_of(&r).0, 200);
}

/// Breaks if an outcome is counted under another label, not counted, or not timed.
#[tokio::test]
async fn metrics_count_each_outcome_and_time_every_fetch() {
    let s = serve(|req| match req.target.as_str() {
        "/slow" => Reply::After(Duration::from_secs(30), answer("200 OK", &[], "")),
        "/big" => Reply::Now(answer("200 OK", &[], &"x".repeat(100))),
        _ => Reply::Now(answer("200 OK", &[], "ok")),
    })
    .await;
    let down = format!("http://127.0.0.1:{}", closed_port().await);
    let mut p = fetch_policy(&[&s.origin(), &down]);
    p.timeout_ms = Some(200);
    p.max_response_bytes = Some(10);
    let hook = HookEgress::from_policy("counted", &p, Duration::from_secs(10)).unwrap();
    let m = crate::metrics::Metrics::new();
    hook.attach_metrics(&m.hook_fetches, &m.hook_fetch_duration);
    let e = egress();
    let session = e.session(&hook);
    let urls = [
        (s.url("/"), FetchOutcome::Ok),
        ("http://127.0.0.1:1/".to_owned(), FetchOutcome::Refused),
        (s.url("/slow"), FetchOutcome::Timeout),
        (s.url("/big"), FetchOutcome::TooLarge),
        (format!("{down}/"), FetchOutcome::Error),
        ("mailto:a@b.example".to_owned(), FetchOutcome::Error),
    ];
    for (url, _) in &urls {
        session.fetch(FetchRequest::get(url), soon()).await;
    }
    let count = |o: FetchOutcome| {
        m.hook_fetches
            .with_label_values(&["counted", o.label()])
            .get()
    };
    assert_eq!(
        FetchOutcome::ALL.map(count),
        [1, 1, 1, 1, 2],
        "ok, refused, timeout, too_large, error"
    );
    let timed = m.hook_fetch_duration.with_label_values(&["counted"]);
    assert_eq!(timed.get_sample_count(), urls.len() as u64);
    assert!(timed.get_sample_sum() >= 0.2);
    let text = String::from_utf8(m.render()).unwrap();
    assert!(
        text.contains("tokenhook_hook_fetch_total{hook=\"counted\",outcome=\"too_large\"} 1"),
        "{text}"
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Breaks if a refusal is not logged, or its line or the hook's message leaves out the
/// hook, origin or reason, or carries a header value, the body or the query.
#[tokio::test]
async fn refusals_are_logged_with_hook_origin_and_reason_only() {
    let out = Captured::default();
    let w = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded: the fetch runs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = serve(|_| redirect(302, "https://evil.example:8443/steal?k=1")).await;
    let e = egress();
    let hook = hook_allowing(&[&s.origin()]);
    let secret_request = |url: String| FetchRequest {
        url,
        method: "POST".into(),
        headers: vec![("Authorization".into(), "Bearer hdr-s3cret".into())],
        body: Some("body-s3cret".into()),
    };
    let r1 = e
        .session(&hook)
        .fetch(
            secret_request("https://api.example.com/v1?api_key=query-s3cret".into()),
            soon(),
        )
        .await;
    let r2 = e
        .session(&hook)
        .fetch(secret_request(s.url("/go?api_key=query-s3cret")), soon())
        .await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("hook fetch refused"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, origin) in lines
        .iter()
        .zip(["https://api.example.com", "https://evil.example:8443"])
    {
        assert!(line.contains("WARN"), "{line}");
        assert!(line.contains("hook=h"), "{line}");
        assert!(line.contains(&format!("origin={origin}")), "{line}");
        assert!(line.contains("reason=\"not in allow-list\""), "{line}");
    }
    for r in [&r1, &r2] {
        assert_eq!(error_of(r).0, FetchErrorKind::Refused);
    }
    let messages = format!("{r1:?}{r2:?}");
    for secret in ["s3cret", "/v1", "/steal", "api_key", "k=1"] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
        assert!(
            !messages.contains(secret),
            "{secret} in a message: {messages}"
        );
    }
}

/// Breaks if a connection failure's message carries the URL's path or query (reqwest's
/// own message does), or leaves out the origin.
#[tokio::test]
async fn failure_messages_name_the_origin_not_the_url() {
    let down = format!("http://127.0.0.1:{}", closed_port().await);
    let hook = hook_allowing(&[&down]);
    let r = egress()
        .session(&hook)
        .fetch(FetchRequest::get(format!("{down}/p?token=s3cret")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Error);
    assert!(message.starts_with(&format!("{down}: ")), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
    assert!(
        !message.contains("s3cret") && !message.contains("/p"),
        "{message}"
    );
}

/// Breaks if an https origin is spoken to in plain text: the server must see a TLS
/// handshake record (0x16, version 3.x), and, answering plain HTTP, the fetch fails as
/// an error naming the origin.
#[tokio::test]
async fn https_goes_through_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = Arc::new(Mutex::new(Vec::new()));
    let f = first.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 16];
        let n = sock.read(&mut b).await.unwrap();
        f.lock().unwrap().extend_from_slice(&b[..n]);
        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
    });
    let origin = format!("https://127.0.0.1:{port}");
    let hook = hook_allowing(&[&origin]);
    let r = egress()
        .session(&hook)
        .fetch(FetchRequest::get(format!("{origin}/")), soon())
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Error);
    assert!(message.starts_with(&origin), "{message}");
    let first = first.lock().unwrap().clone();
    assert!(first.len() >= 3, "{first:?}");
    assert_eq!((first[0], first[1]), (0x16, 0x03), "{first:?}");
}

#[test]
fn the_client_builds_with_aws_lc_rs() {
    // Breaks if reqwest no longer recognizes the preconfigured rustls config (a rustls
    // version apart from reqwest's): `build` answers an error then.
    assert!(Egress::new(&[]).is_ok());
}

// ---------------------------------------------------------------- https

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name),
    )
    .unwrap()
}

/// An HTTPS server on 127.0.0.1 with the test certificate (tests/fixtures/tls): keeps
/// each connection open for further requests and answers each GET with its path.
/// Returns its port and how many connections it accepted (handshakes done or not).
fn serve_tls() -> (u16, Arc<AtomicUsize>) {
    use rustls::pki_types::PrivateKeyDer;
    use std::io::{Read, Write};
    let chain = CertificateDer::pem_slice_iter(&fixture("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&fixture("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut tmp) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = format!("over tls: {path}");
                    let out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls
                        .write_all(out.as_bytes())
                        .and_then(|_| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// Breaks if a server whose certificate chains to `hooks.fetch_ca_file`'s CA is not
/// reached over TLS (the extra roots not given to the client, ALPN or the handshake
/// broken), or if two fetches do not share one pooled connection.
#[tokio::test]
async fn https_to_a_server_of_a_trusted_ca_answers_over_one_pooled_connection() {
    let (port, accepted) = serve_tls();
    let roots = read_roots(&fixture("ca.pem")).unwrap();
    let egress = Egress::new(&roots).unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let origin = format!("https://{host}:{port}");
        let hook = hook_allowing(&[&origin]);
        let r = egress
            .session(&hook)
            .fetch(FetchRequest::get(format!("{origin}/first")), soon())
            .await;
        if host == "localhost" {
            // A name for loopback is refused before any connection (and any TLS).
            assert_eq!(error_of(&r).0, FetchErrorKind::Refused, "{r:?}");
            continue;
        }
        let (status, body, url, _) = ok_of(&r);
        assert_eq!((status, body), (200, "over tls: /first"), "{url}");
        let r = egress
            .session(&hook)
            .fetch(FetchRequest::get(format!("{origin}/second")), soon())
            .await;
        assert_eq!(ok_of(&r).1, "over tls: /second");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// Breaks if a server is trusted without chaining to a known root: with the bundled
/// roots alone the test CA's server is refused as an error naming the origin and the
/// certificate problem (the handshake is not skipped, nor is its failure hidden).
#[tokio::test]
async fn https_to_a_server_of_an_unknown_ca_fails_on_its_certificate() {
    let (port, _) = serve_tls();
    let origin = format!("https://127.0.0.1:{port}");
    let hook = hook_allowing(&[&origin]);
    let r = egress()
        .session(&hook)
        .fetch(
            FetchRequest::get(format!("{origin}/p?token=s3cret")),
            soon(),
        )
        .await;
    let (kind, message) = error_of(&r);
    assert_eq!(kind, FetchErrorKind::Error);
    assert!(message.starts_with(&format!("{origin}: ")), "{message}");
    assert!(message.contains("certificate"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

/// Breaks if a file without certificates, or a PEM certificate block holding no
/// certificate, is taken as a root.
#[test]
fn roots_must_be_pem_certificates() {
    assert_eq!(read_roots(&fixture("ca.pem")).unwrap().len(), 1);
    assert!(
        read_roots(&fixture("server.key"))
            .unwrap_err()
            .contains("no PEM certificate")
    );
    assert!(read_roots(b"").is_err());
    let junk = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let e = read_roots(junk).unwrap_err();
    assert!(
        e.starts_with("certificate 0: not a usable CA certificate"),
        "{e}"
    );
}
