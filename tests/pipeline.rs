//! End to end on loopback: oidc-provider → tokenhook → real HTTP clients, with every
//! output token verified against tokenhook's served JWKS.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

fn scopes(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn seed_hook_enriches_tokens_for_basic_and_post_clients() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    for (id, secret, basic, granted) in [
        (
            BASIC.id,
            BASIC.secret,
            true,
            vec!["read:data", "write:data"],
        ),
        (POST.id, POST.secret, false, vec!["read:data"]),
    ] {
        let (status, body, headers) =
            token_request(&sidecar.url("/oauth/token"), id, secret, basic);
        assert_eq!(status, 200, "{body}");
        let (header, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
        let mut expected: Vec<String> = granted.iter().map(|s| s.to_string()).collect();
        expected.push("extra".into());
        assert_eq!(claims["https://foo.com/claim"], "bar");
        assert_eq!(scopes(&claims["scope"]), expected);
        assert_eq!(scopes(&body["scope"]), expected);
        // Every upstream claim kept, iss ours, typ kept from the IdP's token.
        assert_eq!(claims["client_id"], id);
        assert_eq!(claims["aud"], "https://api.example.com");
        assert!(claims["jti"].is_string());
        assert_eq!(claims["iss"], sidecar.url(""));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::RS256);
        // The rest of the response is the IdP's.
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        assert!(headers.get("x-request-id").is_some());
    }
}

#[test]
fn hook_sees_registry_client_and_es256_signing_works() {
    let idp = Idp::start();
    let hook = r#"module.exports = function (client, scope, audience, context, cb) {
        cb(null, { scope: scope, 'https://example.com/client': client,
                   'https://example.com/aud': audience, 'https://example.com/grant': context.body.grant_type,
                   'https://example.com/has_secret': 'client_secret' in context.body });
    };"#;
    let opts = SidecarOpts::new(&idp.url())
        .hook("echo", hook)
        .algorithm(Algorithm::ES256);
    let sidecar = Sidecar::start(opts);
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, false);
    assert_eq!(status, 200, "{body}");
    let (header, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(
        claims["https://example.com/client"],
        json!({"id": "svc-basic", "name": "Billing sync", "tenant": "acme", "metadata": {"region": "eu"}})
    );
    assert_eq!(claims["https://example.com/aud"], "https://api.example.com");
    assert_eq!(claims["https://example.com/grant"], "client_credentials");
    assert_eq!(claims["https://example.com/has_secret"], false);
    assert_eq!(scopes(&claims["scope"]), vec!["read:data", "write:data"]);
    // An unregistered client gets {id, name: id, metadata: {}} (D14).
    let (_, body, _) = token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["https://example.com/client"],
        json!({"id": "svc-post", "name": "svc-post", "metadata": {}})
    );
}

fn same_response(via: &RawResponse, direct: &RawResponse) {
    assert_eq!(via.status, direct.status);
    assert_eq!(
        via.body,
        direct.body,
        "bodies differ:\n{}\n{}",
        via.text(),
        direct.text()
    );
    for (k, v) in &direct.headers {
        if ["date", "connection", "keep-alive"].contains(&k.to_ascii_lowercase().as_str()) {
            continue;
        }
        assert_eq!(via.header(k), Some(v.as_str()), "header {k}");
    }
}

#[test]
fn other_grants_upstream_errors_and_other_paths_pass_through_byte_for_byte() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let host = format!("127.0.0.1:{}", idp.port);
    let requests = [
        form_post(
            "/oauth/token",
            &host,
            "",
            "grant_type=password&username=a&password=b",
        ),
        form_post(
            "/oauth/token",
            &host,
            &format!("Authorization: {}\r\n", basic("svc-basic", "wrong")),
            "grant_type=client_credentials",
        ),
        form_post(
            "/oauth/token",
            &host,
            &format!("Authorization: {}\r\n", basic(POST.id, POST.secret)),
            "grant_type=client_credentials&scope=write:data",
        ),
        format!("GET /oauth/token?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET /.well-known/jwks.json/extra HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ),
        form_post("/token/introspection", &host, "", "token=abc"),
    ];
    for req in &requests {
        let direct = raw_request(idp.port, req).unwrap();
        let via = raw_request(sidecar.port, req).unwrap();
        same_response(&via, &direct);
        assert!(
            direct.status >= 400,
            "expected an error from the IdP for {req}"
        );
    }
}

#[test]
fn discovery_and_jwks_point_at_the_sidecar() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let d = raw_request(
        sidecar.port,
        "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(d.status, 200);
    let doc = d.json();
    assert_eq!(doc["issuer"], sidecar.url(""));
    assert_eq!(doc["jwks_uri"], sidecar.url("/.well-known/jwks.json"));
    // Every endpoint points at the sidecar: none at the IdP's own address, which a
    // discovering client would otherwise call directly, around the hook.
    assert_eq!(doc["token_endpoint"], sidecar.url("/oauth/token"));
    for (k, v) in doc.as_object().unwrap() {
        let text = v.to_string();
        assert!(
            !text.contains(&idp.url()),
            "{k} still points at the IdP: {v}"
        );
        assert!(
            !text.contains(&format!("127.0.0.1:{}", idp.port)),
            "{k}: {v}"
        );
    }
    let j = raw_request(
        sidecar.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(j.status, 200);
    assert_eq!(j.header("cache-control"), Some("public, max-age=300"));
    let keys = j.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["alg"], "RS256");
    assert!(keys[0].get("d").is_none());
}

#[test]
fn http10_client_gets_a_complete_token_response() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let body = "grant_type=client_credentials";
    let req = format!(
        "POST /oauth/token HTTP/1.0\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        basic(BASIC.id, BASIC.secret),
        body.len()
    );
    let r = raw_request(sidecar.port, &req).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("transfer-encoding").is_none());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    sidecar.verify(&token);
    // A passthrough answer to an HTTP/1.0 client is complete too.
    let r = raw_request(
        sidecar.port,
        "GET /.well-known/openid-configuration/x HTTP/1.0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn token_signed_by_an_unpublished_key_is_refused() {
    let published = stub_key(Algorithm::RS256);
    let rogue = stub_key(Algorithm::RS256);
    let stub = StubIdp::start(StubBehaviour {
        signer: rogue,
        published: vec![published],
        ..StubBehaviour::honest(Algorithm::RS256)
    });
    let sidecar = Sidecar::start(SidecarOpts::new(&stub.url()));
    let (status, body, headers) =
        token_request(&sidecar.url("/oauth/token"), "svc-basic", "x", true);
    assert_eq!(status, 502);
    assert_eq!(body["error"], "server_error");
    assert!(body.get("access_token").is_none());
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let logs = sidecar.logs();
    assert!(logs.contains("failed verification"), "{logs}");
    assert!(logs.contains("no key in the upstream JWKS"), "{logs}");
}

#[test]
fn gzip_upstream_is_decoded_and_the_answer_is_plain() {
    let stub = StubIdp::start(StubBehaviour {
        gzip: true,
        ..StubBehaviour::honest(Algorithm::ES256)
    });
    let opts = SidecarOpts::new(&stub.url()).env("TOKENHOOK_UPSTREAM_ALGORITHMS", "RS256,ES256");
    let sidecar = Sidecar::start(opts);
    let (status, body, headers) =
        token_request(&sidecar.url("/oauth/token"), "svc-basic", "x", true);
    assert_eq!(status, 200, "{body} {}", sidecar.logs());
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(headers.get("x-stub").unwrap(), "yes");
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(scopes(&claims["scope"]), vec!["read:data", "extra"]);
}

#[test]
fn opaque_tokens_pass_through_untouched() {
    let stub = StubIdp::start(StubBehaviour {
        opaque: true,
        ..StubBehaviour::honest(Algorithm::RS256)
    });
    let sidecar = Sidecar::start(SidecarOpts::new(&stub.url()));
    let req = form_post(
        "/oauth/token",
        "x",
        &format!("Authorization: {}\r\n", basic("svc-basic", "x")),
        "grant_type=client_credentials",
    );
    let via = raw_request(sidecar.port, &req).unwrap();
    let direct = raw_request(stub.port, &req).unwrap();
    same_response(&via, &direct);
    assert_eq!(via.json()["access_token"], "opaque-token-value");
}

#[test]
fn unreachable_idp_gives_an_oauth_error() {
    // Up long enough for the JWKS fetch (readiness), then gone.
    let stub = StubIdp::start(StubBehaviour {
        scope: "a",
        ..StubBehaviour::honest(Algorithm::RS256)
    });
    let sidecar = Sidecar::start(SidecarOpts::new(&stub.url()));
    drop(stub);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (status, body, _) = token_request(&sidecar.url("/oauth/token"), "svc-basic", "x", true);
    assert!(status == 502 || status == 504, "{status}");
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[test]
fn oversized_request_body_is_refused_with_413() {
    let idp = Idp::start();
    let opts = SidecarOpts::new(&idp.url()).env("TOKENHOOK_UPSTREAM_MAX_BODY_BYTES", "1024");
    let sidecar = Sidecar::start(opts);
    let body = format!("grant_type=client_credentials&pad={}", "x".repeat(2000));
    let r = raw_request(sidecar.port, &form_post("/oauth/token", "x", "", &body)).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[test]
fn hook_errors_become_oauth_errors_d1() {
    let idp = Idp::start();
    for (hook, status, code, desc) in [
        (
            "cb(new InvalidScopeError('no scope for you'))",
            400,
            "invalid_scope",
            "no scope for you",
        ),
        (
            "cb(new InvalidRequestError('bad'))",
            400,
            "invalid_request",
            "bad",
        ),
        ("cb(new ServerError('down'))", 500, "server_error", "down"),
        ("cb(new Error('plain'))", 500, "server_error", "plain"),
        ("throw new Error('thrown')", 500, "server_error", "thrown"),
        (
            "/* never calls back */",
            500,
            "server_error",
            "hook completed without calling back",
        ),
        (
            "cb(null, {scope: 42})",
            500,
            "server_error",
            "hook returned a scope that is not an array of strings or a string",
        ),
        (
            "require('request')",
            500,
            "server_error",
            "Cannot find module 'request'",
        ),
    ] {
        let src = format!(
            "module.exports = function (client, scope, audience, context, cb) {{ {hook}; }};"
        );
        let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()).hook("h", &src));
        let (s, body, _) =
            token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
        assert_eq!(s, status, "{hook}: {body}");
        assert_eq!(body["error"], code, "{hook}");
        assert!(
            body["error_description"].as_str().unwrap().contains(desc),
            "{hook}: {body}"
        );
    }
}

#[test]
fn hook_time_limit_fails_only_that_request() {
    let idp = Idp::start();
    let hook = "module.exports = function (client, scope, audience, context, cb) { setTimeout(function () { cb(null, {scope: scope}); }, 10000); };";
    let opts = SidecarOpts::new(&idp.url())
        .hook("slow", hook)
        .env("TOKENHOOK_HOOKS_TIMEOUT_MS", "300");
    let sidecar = Sidecar::start(opts);
    let (s, body, _) = token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(s, 500);
    assert_eq!(body["error_description"], "hook timed out after 300 ms");
    // The sidecar still serves everything else.
    let r = raw_request(
        sidecar.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn metrics_count_routes_outcomes_and_stages() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    token_request(&sidecar.url("/oauth/token"), "svc-basic", "wrong", true);
    raw_request(
        sidecar.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    // Requests are counted when their log line is written, just after the response:
    // give the last one a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut m = sidecar.metrics();
    while !m.contains(r#"route="jwks"} 1"#) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        m = sidecar.metrics();
    }
    for line in [
        r#"tokenhook_requests_total{outcome="ok",route="token"} 1"#,
        r#"tokenhook_requests_total{outcome="upstream_denied",route="token"} 1"#,
        r#"tokenhook_requests_total{outcome="ok",route="jwks"} 1"#,
        r#"tokenhook_hook_executions_total{hook="seed",outcome="ok"} 1"#,
        r#"tokenhook_stage_duration_seconds_count{stage="sign"} 1"#,
        r#"tokenhook_stage_duration_seconds_count{stage="upstream"} 2"#,
        r#"tokenhook_stage_duration_seconds_count{stage="total"} 2"#,
        "tokenhook_ready 1",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}

#[test]
fn path_variants_encodings_and_ambiguous_bodies_cannot_skip_the_hook() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let auth = format!("Authorization: {}\r\n", basic(BASIC.id, BASIC.secret));
    // Path variants that an IdP may route to its token endpoint (the stub does, like
    // many frameworks) get the hook too.
    let stub = StubIdp::start(StubBehaviour {
        ..StubBehaviour::honest(Algorithm::RS256)
    });
    let lenient = Sidecar::start(SidecarOpts::new(&stub.url()));
    // D16: every spelling below routes to the stub's token endpoint; through the
    // sidecar each must reach the token route (the hook's claim proves it), never the
    // pass-through that would relay the stub's own token.
    for path in [
        "/oauth/token/",
        "/OAuth/Token",
        "/oauth/%74oken",
        "/oauth//token",
        "/oauth/./token",
        "/x/../oauth/token",
        "/oauth/%2e/token",
        "/oauth/%2E%2E/oauth/token",
        "/oauth/token/.",
        "/oauth/token;jsessionid=1",
        "/oauth;v=1/token",
        "/oauth%2ftoken",
        "/oauth/%252e/token",
        "/oauth\\token",
    ] {
        let r = raw_request(
            lenient.port,
            &form_post(path, "x", &auth, "grant_type=client_credentials"),
        )
        .unwrap();
        lenient.assert_hooked(&r, path);
    }
    // Other methods that carry the body, in any case, reach the token route too.
    for method in ["post", "PUT", "Post"] {
        let req = form_post("/oauth/token", "x", &auth, "grant_type=client_credentials")
            .replacen("POST", method, 1);
        let r = raw_request(lenient.port, &req).unwrap();
        if r.status == 200 {
            let (_, claims) = lenient.verify(r.json()["access_token"].as_str().unwrap());
            assert_eq!(claims["https://foo.com/claim"], "bar", "{method}");
        } else {
            assert!(
                r.header("x-stub").is_none(),
                "{method} reached the IdP: {}",
                r.text()
            );
        }
    }
    // Request targets the HTTP parser may refuse outright: refused is fine, relayed
    // with the stub's own token is not.
    for path in ["oauth/token", "oauth/./token"] {
        let r = raw_request(
            lenient.port,
            &form_post(path, "x", &auth, "grant_type=client_credentials"),
        )
        .unwrap();
        if r.status == 200 {
            let (_, claims) = lenient.verify(r.json()["access_token"].as_str().unwrap());
            assert_eq!(claims["https://foo.com/claim"], "bar", "{path}");
        } else {
            assert_eq!(r.status, 400, "{path}: {}", r.text());
            assert!(r.header("x-stub").is_none(), "{path} reached the IdP");
        }
    }
    // A client that also accepts brotli still gets an enriched token.
    let r = raw_request(
        sidecar.port,
        &form_post(
            "/oauth/token",
            "x",
            &format!("{auth}Accept-Encoding: br, zstd, gzip\r\n"),
            "grant_type=client_credentials",
        ),
    )
    .unwrap();
    sidecar.assert_hooked(&r, "");
    // Repeated grant_type or an unreadable body is refused, never passed through.
    for body in [
        "grant_type=password&grant_type=client_credentials",
        "grant_type=client_credentials&scope=a&scope=b",
    ] {
        let r = raw_request(sidecar.port, &form_post("/oauth/token", "x", &auth, body)).unwrap();
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error"], "invalid_request");
    }
    let gz = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    assert_eq!(raw_request(sidecar.port, &gz).unwrap().status, 400);
}

#[test]
fn token_parameters_in_the_query_string_are_refused_d17() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let auth = format!("Authorization: {}\r\n", basic(BASIC.id, BASIC.secret));
    // Breaks if a token parameter in the query reaches an IdP that reads the query
    // first, on a POST or on any other method to the token path.
    for target in [
        "/oauth/token?grant_type=client_credentials",
        "/oauth/token?x=1&Scope=admin",
        "/oauth/./token?grant%5Ftype=password",
    ] {
        let r = raw_request(
            sidecar.port,
            &form_post(target, "x", &auth, "grant_type=client_credentials"),
        )
        .unwrap();
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_request", "{target}");
        assert!(r.header("x-request-id").is_some());
    }
    let get = raw_request(
        sidecar.port,
        &format!("GET /oauth/token?grant_type=client_credentials HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(get.status, 400, "{}", get.text());
    // Other query parameters are the IdP's business.
    let r = raw_request(
        sidecar.port,
        &form_post(
            "/oauth/token?tenant=acme",
            "x",
            &auth,
            "grant_type=client_credentials",
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

// The stub answers token requests on any path that starts with `/oauth/token`, as an
// IdP with a second token endpoint (an alias, an mTLS endpoint) would.
#[test]
fn a_second_token_endpoint_of_the_idp_never_hands_out_its_tokens() {
    let stub = StubIdp::start(StubBehaviour::honest(Algorithm::RS256));
    let sidecar = Sidecar::start(SidecarOpts::new(&stub.url()));
    let auth = format!("Authorization: {}\r\n", basic(BASIC.id, BASIC.secret));
    // client_credentials on the alias: the hook runs, the token is ours.
    let r = raw_request(
        sidecar.port,
        &form_post(
            "/oauth/token-mtls",
            "x",
            &auth,
            "grant_type=client_credentials",
        ),
    )
    .unwrap();
    sidecar.assert_hooked(&r, "");
    // Another grant on the alias brings back the stub's own JWT: never relayed. Breaks
    // if the pass-through guard relays a response whose access_token the IdP signed.
    for body in [
        "grant_type=refresh_token&refresh_token=r",
        "grant_type=client_credentials&grant_type=x",
    ] {
        let r = raw_request(
            sidecar.port,
            &form_post("/oauth/token-mtls", "x", &auth, body),
        )
        .unwrap();
        assert_eq!(r.status, 502, "{body}: {}", r.text());
        assert_eq!(r.json()["error"], "server_error");
        assert!(!r.text().contains("access_token"), "{}", r.text());
    }
    // A JSON answer without a token on another path is relayed as it was.
    let r = raw_request(
        sidecar.port,
        &form_post("/oauth/revoke", "x", &auth, "token=t"),
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-stub"), Some("yes"));
    let m = sidecar.metrics();
    assert!(
        m.contains(r#"tokenhook_requests_total{outcome="token_blocked",route="passthrough"} 2"#),
        "{m}"
    );
}

// A client library that discovers the sidecar's metadata (openid-client here, as
// Spring's issuer-uri or authlib would) must end up with a token the sidecar signed and
// the hook enriched. Breaks if the served document keeps the IdP's token_endpoint: the
// library would then fetch the IdP's token, which fails against the sidecar's JWKS.
#[test]
fn a_real_client_library_discovers_the_sidecar_and_gets_a_hooked_token() {
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let out = std::process::Command::new("node")
        .arg(repo().join("tests/idp/discovering-client.mjs"))
        .args([
            sidecar.url(""),
            BASIC.id.to_owned(),
            BASIC.secret.to_owned(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sidecar.logs()
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_endpoint"], sidecar.url("/oauth/token"));
    assert_eq!(v["jwks_uri"], sidecar.url("/.well-known/jwks.json"));
    assert_eq!(v["payload"]["https://foo.com/claim"], "bar");
    assert_eq!(v["payload"]["iss"], sidecar.url(""));
    assert!(v["scope"].as_str().unwrap().contains("extra"), "{v}");
}

#[test]
fn keep_alive_serves_several_token_requests_on_one_connection() {
    use std::io::{BufReader, Write};
    let idp = Idp::start();
    let sidecar = Sidecar::start(SidecarOpts::new(&idp.url()));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", sidecar.port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let body = "grant_type=client_credentials";
    for _ in 0..3 {
        write!(
            s,
            "POST /oauth/token HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            basic(BASIC.id, BASIC.secret),
            body.len()
        )
        .unwrap();
        let resp = read_response(&mut r).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.status_line);
        assert!(
            !resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{:?}",
            resp.headers
        );
        sidecar.verify(resp.json()["access_token"].as_str().unwrap());
    }
}

#[test]
fn actions_hook_through_the_proxy_with_secrets_from_env_and_files() {
    let idp = Idp::start();
    fn layout(hooks: &std::path::Path) {
        let src = "exports.onExecuteCredentialsExchange = async (event, api) => { \
            api.accessToken.setCustomClaim('https://foo.com/claim', 'bar') \
               .accessToken.setCustomClaim('region', event.client.metadata.region) \
               .accessToken.setCustomClaim('https://x/env', event.secrets.FROM_ENV.length) \
               .accessToken.setCustomClaim('https://x/file', event.secrets.FROM_FILE === 'file-secret-value'); \
            api.transaction.removeTargetScope('write:data'); \
            api.transaction.addTargetScope('admin'); \
            if (event.client.client_id === 'svc-post') api.access.deny('invalid_scope', 'not for you'); };";
        std::fs::write(hooks.join("act.js"), src).unwrap();
        std::fs::write(hooks.join("act-secret.txt"), "file-secret-value\n").unwrap();
        std::fs::write(
            hooks.join("hooks.toml"),
            "enabled = \"act\"\n[hook.act]\ntimeout_ms = 3000\n[hook.act.secrets]\nFROM_ENV = { env = \"ACT_SECRET\" }\nFROM_FILE = { file = \"act-secret.txt\" }\n",
        )
        .unwrap();
    }
    let opts = SidecarOpts::new(&idp.url())
        .layout(layout)
        .env("ACT_SECRET", "env-secret-value");
    let sidecar = Sidecar::start(opts);
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    assert_eq!(status, 200, "{body}");
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    assert_eq!(claims["https://foo.com/claim"], "bar");
    assert_eq!(claims["region"], "eu", "Actions may set plain claim names");
    assert_eq!(claims["https://x/env"], "env-secret-value".len());
    assert_eq!(claims["https://x/file"], true);
    // D6: write:data removed, admin never granted so dropped.
    assert_eq!(claims["scope"], "read:data");
    assert_eq!(body["scope"], "read:data");
    let (status, body, _) =
        token_request(&sidecar.url("/oauth/token"), POST.id, POST.secret, false);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "invalid_scope", "error_description": "not for you"})
    );
    assert!(
        !sidecar.logs().contains("env-secret-value")
            && !sidecar.logs().contains("file-secret-value")
    );
}

/// Base64url, unpadded, of `s`.
fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn jws_shaped_tokens_that_do_not_verify_are_refused_never_relayed() {
    let honest = StubBehaviour::honest(Algorithm::RS256);
    let (key, script) = (honest.signer.clone(), honest.script.clone());
    let stub = StubIdp::start(honest);
    let sidecar = Sidecar::start(SidecarOpts::new(&stub.url()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": stub.url(), "sub": "svc-basic", "exp": now + 600, "scope": "admin"})
        .to_string();
    let header = json!({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}).to_string();
    let good = key.sign_compact(&b64(&header), &b64(&claims)).unwrap();
    let padded_header = {
        use base64::Engine;
        // A header whose encoding needs padding, padded, then signed as it stands.
        let mut h = header.clone();
        while h.len().is_multiple_of(3) {
            h.insert(1, ' ');
        }
        base64::engine::general_purpose::URL_SAFE.encode(&h)
    };
    assert!(padded_header.ends_with('='));
    let forged = [
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&claims)),
        ),
        (
            "padded header",
            key.sign_compact(&padded_header, &b64(&claims)).unwrap(),
        ),
        ("extra dot", format!("{good}.")),
        ("extra segment", format!("{good}.AAAA")),
        ("standard alphabet", {
            // A claim whose encoding has '-' and '_', rewritten to '+' and '/'.
            let c = json!({"iss": stub.url(), "exp": now + 600, "s": "~~~???>>>"}).to_string();
            let std = b64(&c).replace('-', "+").replace('_', "/");
            assert_ne!(std, b64(&c));
            key.sign_compact(&b64(&header), &std).unwrap()
        }),
        (
            "crit",
            key.sign_compact(
                &b64(&json!({"alg": "RS256", "kid": key.kid, "crit": ["x"], "x": 1}).to_string()),
                &b64(&claims),
            )
            .unwrap(),
        ),
        (
            "other issuer",
            key.sign_compact(
                &b64(&header),
                &b64(&json!({"iss": "http://evil.example", "exp": now + 600}).to_string()),
            )
            .unwrap(),
        ),
    ];
    for (what, token) in &forged {
        *script.token.lock().unwrap() = Some(token.clone());
        let r = raw_request(
            sidecar.port,
            &form_post(
                "/oauth/token",
                "x",
                &format!("Authorization: {}\r\n", basic("svc-basic", "x")),
                "grant_type=client_credentials",
            ),
        )
        .unwrap();
        assert_eq!(r.status, 502, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], "server_error", "{what}");
        assert!(r.json().get("access_token").is_none(), "{what}");
        // The IdP's token is never relayed, in whole or as its signed part.
        let (signed_part, _) = token.rsplit_once('.').unwrap();
        assert!(
            !r.text().contains(signed_part),
            "{what} relayed: {}",
            r.text()
        );
    }
    let logs = sidecar.logs();
    assert!(logs.contains("failed verification"), "{logs}");
    assert!(!logs.contains("opaque access token"), "{logs}");
    // The honest token, same key, still goes through.
    *script.token.lock().unwrap() = Some(good);
    let (status, body, _) = token_request(&sidecar.url("/oauth/token"), "svc-basic", "x", true);
    assert_eq!(status, 200, "{body}");
    sidecar.verify(body["access_token"].as_str().unwrap());
}

fn jwks_errors(sidecar: &Sidecar) -> u64 {
    sidecar
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(r#"tokenhook_upstream_jwks_refreshes_total{result="error"} "#))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_broken_jwks_refresh_keeps_the_last_good_keys() {
    let honest = StubBehaviour::honest(Algorithm::RS256);
    let script = honest.script.clone();
    let stub = StubIdp::start(honest);
    let opts = SidecarOpts::new(&stub.url()).env("TOKENHOOK_UPSTREAM_JWKS_REFRESH_SECONDS", "1");
    let sidecar = Sidecar::start(opts);
    let token = || token_request(&sidecar.url("/oauth/token"), "svc-basic", "x", true);
    let (status, body, _) = token();
    assert_eq!(status, 200, "{body}");
    let mut errors = jwks_errors(&sidecar);
    for broken in [
        r#"{"keys":[]}"#,
        "<html>not json</html>",
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
    ] {
        *script.jwks.lock().unwrap() = Some(broken.to_owned());
        // The periodic refresh (every second, quicker after a failure) meets it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while jwks_errors(&sidecar) <= errors && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let now = jwks_errors(&sidecar);
        assert!(now > errors, "{broken}: no failed refresh counted");
        errors = now;
        // Tokens still verify against the last good keys, and the sidecar stays ready.
        let (status, body, _) = token();
        assert_eq!(status, 200, "{broken}: {body}");
        sidecar.verify(body["access_token"].as_str().unwrap());
        assert!(sidecar.ready(), "{broken}: /readyz went down");
    }
    let logs = sidecar.logs();
    assert!(logs.contains("upstream JWKS refresh failed"), "{logs}");
}

// IP allow-list hooks read `context.ip`: it must be the TCP peer unless that peer is a
// trusted proxy. Breaks if a forwarding header from an untrusted client were believed,
// or if a trusted proxy's report were ignored.
#[test]
fn the_client_address_comes_from_trusted_proxies_only() {
    let echo = "module.exports = function (client, scope, audience, context, cb) { cb(null, {scope: scope, 'https://x/ip': context.ip}); };";
    let stub = StubIdp::start(StubBehaviour::honest(Algorithm::RS256));
    let auth = format!("Authorization: {}\r\n", basic(BASIC.id, BASIC.secret));
    let ip_seen = |sidecar: &Sidecar, headers: &str| -> Value {
        let r = raw_request(
            sidecar.port,
            &form_post(
                "/oauth/token",
                "x",
                &format!("{auth}{headers}"),
                "grant_type=client_credentials",
            ),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        sidecar.verify(r.json()["access_token"].as_str().unwrap()).1["https://x/ip"].clone()
    };
    let xff = "X-Forwarded-For: 198.51.100.7, 10.1.1.1\r\n";
    let untrusting = Sidecar::start(SidecarOpts::new(&stub.url()).hook("echo", echo));
    assert_eq!(ip_seen(&untrusting, xff), "127.0.0.1");
    let trusting = Sidecar::start(
        SidecarOpts::new(&stub.url())
            .hook("echo", echo)
            .env("TOKENHOOK_SERVER_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/8"),
    );
    assert_eq!(ip_seen(&trusting, xff), "198.51.100.7");
    assert_eq!(
        ip_seen(
            &trusting,
            "Forwarded: for=\"[2001:db8::7]:443\";proto=https\r\n"
        ),
        "2001:db8::7"
    );
    assert_eq!(ip_seen(&trusting, ""), "127.0.0.1");
}
