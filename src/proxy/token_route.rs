//! The token route: forward to the IdP, verify, run the hook, re-sign, answer. Also the
//! discovery document, which needs the same upstream call and a rewrite.

use super::body::{TokenRequest, decode_content, parse_token_request};
use super::{Ctx, respond_error, write_response};
use crate::app::App;
use crate::error::OAuthError;
use crate::hooks::{HookCall, HookFailure};
use crate::metrics::Stage;
use crate::token::claims;
use crate::upstream::UpstreamResponse;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{Map, Value};
use std::time::Instant;

/// Microseconds per stage, for the request's log line.
#[derive(Default, Debug)]
pub struct StageTimes {
    pub upstream: u64,
    pub verify: u64,
    pub hook: u64,
    pub sign: u64,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) that belong to one connection, not the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn timed(app: &App, stage: Stage, since: Instant) -> u64 {
    let d = since.elapsed();
    app.metrics.stages.get(stage).observe(d.as_secs_f64());
    d.as_micros() as u64
}

/// Reads the request body up to `max` bytes.
async fn read_body(session: &mut Session, max: usize) -> std::result::Result<Bytes, OAuthError> {
    let too_large = || {
        OAuthError::new(
            413,
            "invalid_request",
            format!("request body is over {max} bytes"),
        )
    };
    let declared = session
        .req_header()
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let expects_continue = session
        .req_header()
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored.
    if expects_continue && session.req_header().version != http::Version::HTTP_10 {
        let _ = session.write_continue_response().await;
    }
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > max {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(_) => {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    "cannot read the request body",
                ));
            }
        }
    }
}

/// The request as sent to the IdP: the client's, minus hop-by-hop headers, with a
/// length for the buffered body.
fn upstream_request(
    req: &RequestHeader,
    body_len: usize,
    request_id: &str,
    authority: &str,
) -> Result<RequestHeader> {
    let mut up = req.clone();
    if up.headers.get("host").is_none_or(|h| h.is_empty()) {
        up.insert_header("Host", authority)?;
    }
    up.set_version(http::Version::HTTP_11);
    for h in connection_nominated(&req.headers) {
        up.remove_header(&h);
    }
    for h in HOP_BY_HOP.iter().chain(&["expect", "content-length"]) {
        up.remove_header(*h);
    }
    let accept = req
        .headers
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .map(super::body::decodable_accept_encoding);
    if let Some(accept) = accept {
        up.remove_header("accept-encoding");
        if let Some(a) = accept {
            up.insert_header("Accept-Encoding", a)?;
        }
    }
    if body_len > 0 || req.method == http::Method::POST {
        up.insert_header("Content-Length", body_len)?;
    }
    up.insert_header("X-Request-Id", request_id)?;
    Ok(up)
}

/// The IdP's response as-is: same status, headers and body bytes, re-framed with a length.
fn relay_header(resp: &UpstreamResponse, request_id: &str) -> Result<ResponseHeader> {
    let mut h = own_header(&resp.header, &[]);
    h.set_content_length(resp.body.len())?;
    h.insert_header("X-Request-Id", request_id)?;
    Ok(h)
}

/// Names listed in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
fn connection_nominated(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && n != "close" && n != "keep-alive")
        .collect()
}

/// The IdP's response header made ours: our HTTP version, no hop-by-hop headers, and
/// without `extra` (headers the caller recomputes).
fn own_header(upstream: &ResponseHeader, extra: &[&str]) -> ResponseHeader {
    let mut h = upstream.clone();
    h.set_version(http::Version::HTTP_11);
    for n in connection_nominated(&upstream.headers) {
        h.remove_header(&n);
    }
    for name in HOP_BY_HOP.iter().chain(extra) {
        h.remove_header(*name);
    }
    h
}

fn upstream_failure(e: &crate::upstream::UpstreamError) -> OAuthError {
    use crate::upstream::UpstreamError::*;
    match e {
        Connect { .. } => OAuthError::new(
            502,
            "temporarily_unavailable",
            "the identity provider is unreachable",
        ),
        Timeout(_) => OAuthError::new(
            504,
            "temporarily_unavailable",
            "the identity provider did not answer in time",
        ),
        TooLarge(n) => OAuthError::bad_gateway(format!(
            "the identity provider's response is over {n} bytes"
        )),
        Io(_) => OAuthError::bad_gateway("the exchange with the identity provider failed"),
    }
}

pub async fn handle(app: &App, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let max = app.config.upstream.max_body_bytes;
    let body = match read_body(session, max).await {
        Ok(b) => b,
        Err(e) => {
            ctx.outcome = "rejected";
            return respond_error(session, ctx, &e).await;
        }
    };
    let token_req = match parse_token_request(session.req_header(), &body) {
        Ok(t) => t,
        Err(why) => {
            ctx.outcome = "rejected";
            let err = OAuthError::new(400, "invalid_request", why);
            return respond_error(session, ctx, &err).await;
        }
    };
    ctx.client_id = token_req.client_id.clone();
    let up_req = upstream_request(
        session.req_header(),
        body.len(),
        &ctx.request_id,
        &app.config.upstream.authority,
    )?;

    // Issuing another client_credentials token is harmless; other grants (codes,
    // rotating refresh tokens) are not resent once the IdP may have seen them.
    let replayable = token_req.grant_type.as_deref() == Some("client_credentials");
    let t = Instant::now();
    let resp = app.upstream.send(&up_req, &body, max, replayable).await;
    ctx.stages.upstream = timed(app, Stage::Upstream, t);
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "token request to the IdP failed");
            ctx.outcome = "upstream_error";
            return respond_error(session, ctx, &upstream_failure(&e)).await;
        }
    };

    let is_cc = token_req.grant_type.as_deref() == Some("client_credentials");
    if !is_cc || resp.header.status != 200 {
        ctx.outcome = if is_cc {
            "upstream_denied"
        } else {
            "passthrough"
        };
        let h = relay_header(&resp, &ctx.request_id)?;
        return write_response(session, ctx, h, resp.body, false).await;
    }
    match enrich(app, &token_req, session, &resp, ctx).await {
        Enriched::Token(header, body) => {
            ctx.outcome = "ok";
            write_response(session, ctx, header, body, false).await
        }
        Enriched::Relay(why) => {
            tracing::debug!(request_id = %ctx.request_id, why, "token response passed through unchanged");
            ctx.outcome = "passthrough";
            let h = relay_header(&resp, &ctx.request_id)?;
            write_response(session, ctx, h, resp.body.clone(), false).await
        }
        Enriched::Error(outcome, err) => {
            ctx.outcome = outcome;
            respond_error(session, ctx, &err).await
        }
    }
}

enum Enriched {
    Token(ResponseHeader, Bytes),
    /// Not ours to change (opaque token, not JSON…): relay the IdP's bytes.
    Relay(&'static str),
    Error(&'static str, OAuthError),
}

async fn enrich(
    app: &App,
    token_req: &TokenRequest,
    session: &Session,
    resp: &UpstreamResponse,
    ctx: &mut Ctx,
) -> Enriched {
    let max = app.config.upstream.max_body_bytes;
    let decoded = match decode_content(&resp.header, resp.body.clone(), max) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "cannot decode the IdP's token response");
            return Enriched::Error(
                "upstream_error",
                OAuthError::bad_gateway("the identity provider's response could not be decoded"),
            );
        }
    };
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(&decoded) else {
        return Enriched::Relay("response is not a JSON object");
    };
    let Some(upstream_token) = doc
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Enriched::Relay("no access_token");
    };
    if !crate::token::looks_like_jwt(&upstream_token) {
        return Enriched::Relay("opaque access token");
    }

    let t = Instant::now();
    let verified = app
        .verifier
        .verify_typed(&upstream_token, crate::app::now_secs())
        .await;
    ctx.stages.verify = timed(app, Stage::Verify, t);
    let (payload, typ) = match verified {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, reason = %e, "the IdP's token failed verification; not re-signed");
            return Enriched::Error(
                "invalid_upstream_token",
                OAuthError::bad_gateway(
                    "the identity provider issued a token that failed verification",
                ),
            );
        }
    };

    let t = Instant::now();
    let applied = run_hook(app, token_req, session, payload, ctx).await;
    ctx.stages.hook = timed(app, Stage::Hook, t);
    let mut applied = match applied {
        Ok(a) => a,
        Err((outcome, e)) => return Enriched::Error(outcome, e),
    };
    let upstream_iss = applied
        .payload
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(iss) = app.config.issuer_for(upstream_iss.as_deref()) {
        applied
            .payload
            .insert("iss".into(), Value::String(iss.to_owned()));
    }

    let t = Instant::now();
    let key = app.keys().active().clone();
    let payload = applied.payload;
    // An RSA signature (~250 µs) goes to the blocking pool, off pingora's I/O threads.
    // ES256 and EdDSA (10-20 µs, less than the JSON work around them) are signed in
    // place: the hop to another thread would cost as much as the signature.
    let signed = if key.is_cheap_to_sign() {
        Ok(crate::token::sign(&key, typ.as_deref(), &payload))
    } else {
        tokio::task::spawn_blocking(move || crate::token::sign(&key, typ.as_deref(), &payload))
            .await
    };
    ctx.stages.sign = timed(app, Stage::Sign, t);
    let token = match signed {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::error!(request_id = %ctx.request_id, error = %e, "signing failed");
            return Enriched::Error("error", OAuthError::server_error("signing failed"));
        }
        Err(_) => return Enriched::Error("error", OAuthError::server_error("signing failed")),
    };

    doc.insert("access_token".into(), Value::String(token));
    if doc.contains_key("scope") || applied.scope_changed {
        if applied.scopes.is_empty() {
            doc.remove("scope");
        } else {
            doc.insert("scope".into(), Value::String(applied.scopes.join(" ")));
        }
    }
    // Into a Vec directly: `Display` would go through the formatting machinery.
    let body = Bytes::from(serde_json::to_vec(&Value::Object(doc)).unwrap_or_default());
    let mut header = own_header(&resp.header, &["content-encoding", "content-length"]);
    let built = (|| -> Result<()> {
        header.insert_header("Cache-Control", "no-store")?;
        header.set_content_length(body.len())?;
        header.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        Ok(())
    })();
    if built.is_err() {
        return Enriched::Error(
            "error",
            OAuthError::server_error("cannot build the response"),
        );
    }
    Enriched::Token(header, body)
}

async fn run_hook(
    app: &App,
    token_req: &TokenRequest,
    session: &Session,
    payload: Map<String, Value>,
    ctx: &Ctx,
) -> std::result::Result<claims::Applied, (&'static str, OAuthError)> {
    let scopes = claims::token_scopes(&payload);
    let audience = match payload.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    // Who the client is comes from the verified token, not from request parameters a
    // client could set freely; the request's value is only a fallback.
    let from_token = ["client_id", "azp"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            payload
                .get("sub")
                .and_then(Value::as_str)
                .map(|s| s.strip_suffix("@clients").unwrap_or(s).to_owned())
        });
    let client_id = match (from_token, &token_req.client_id) {
        (Some(t), Some(r)) if &t != r => {
            tracing::warn!(request_id = %ctx.request_id, token_client = %t, request_client = %r,
                "client id in the request differs from the token's; using the token's");
            t
        }
        (Some(t), _) => t,
        (None, r) => r.clone().unwrap_or_default(),
    };
    let Some(hooks) = app.hooks() else {
        // No enabled hook: the token is re-signed as the IdP issued it.
        return claims::apply(payload, claims::HookEffect::default(), app.claim_policy())
            .map_err(|e| ("error", OAuthError::server_error(e.to_string())));
    };
    let req = session.req_header();
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let call = HookCall {
        client: app.client_for(&client_id),
        scope: scopes,
        audience,
        requested_scope: token_req.scope.clone(),
        body: token_req.params.clone(),
        ip: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string()),
        user_agent: header("user-agent"),
        hostname: header("host"),
        language: header("accept-language"),
        method: req.method.as_str().to_owned(),
        request_id: ctx.request_id.clone(),
    };
    let outcome = hooks.run(call).await;
    let name = hooks.name();
    let effect = match outcome {
        Ok(e) => e,
        Err(f) => {
            let label = f.label();
            hooks.count(label);
            tracing::warn!(request_id = %ctx.request_id, hook = name, outcome = label, error = %f.error().description, "hook failed");
            return Err((f.outcome(), f.into_error()));
        }
    };
    match claims::apply(payload, effect, app.claim_policy()) {
        Ok(applied) => {
            hooks.count("ok");
            if !applied.ignored.is_empty() {
                app.metrics
                    .hook_ignored_claims
                    .inc_by(applied.ignored.len() as u64);
                for i in &applied.ignored {
                    tracing::info!(request_id = %ctx.request_id, hook = name, claim = %i.claim, reason = i.reason, "hook claim ignored");
                }
            }
            Ok(applied)
        }
        Err(e) => {
            hooks.count("error");
            Err(("hook_error", OAuthError::server_error(e.to_string())))
        }
    }
}

/// `GET` discovery: the IdP's document with `issuer` and `jwks_uri` pointing at us.
pub async fn discovery(app: &App, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let cfg = &app.config;
    let mut req =
        crate::upstream::get_request(&cfg.upstream.discovery_path, &cfg.upstream.authority)?;
    req.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    let max = cfg.upstream.max_body_bytes;
    let resp = match app.upstream.send(&req, &Bytes::new(), max, true).await {
        Ok(r) => r,
        Err(e) => {
            ctx.outcome = "upstream_error";
            return respond_error(session, ctx, &upstream_failure(&e)).await;
        }
    };
    let doc = (resp.header.status == 200)
        .then(|| decode_content(&resp.header, resp.body.clone(), max).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(Value::Object(mut doc)) = doc else {
        ctx.outcome = "passthrough";
        let h = relay_header(&resp, &ctx.request_id)?;
        return write_response(session, ctx, h, resp.body, false).await;
    };
    let upstream_iss = doc.get("issuer").and_then(Value::as_str).map(str::to_owned);
    if let Some(iss) = cfg.issuer_for(upstream_iss.as_deref()) {
        doc.insert("issuer".into(), Value::String(iss.to_owned()));
    }
    let jwks_uri = cfg
        .server
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned()
        + &cfg.server.jwks_path;
    doc.insert("jwks_uri".into(), Value::String(jwks_uri));
    // Into a Vec directly: `Display` would go through the formatting machinery.
    let body = Bytes::from(serde_json::to_vec(&Value::Object(doc)).unwrap_or_default());
    let mut h = own_header(&resp.header, &["content-encoding", "content-length"]);
    h.set_content_length(body.len())?;
    h.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    ctx.outcome = "ok";
    let head = session.req_header().method == http::Method::HEAD;
    write_response(session, ctx, h, body, head).await
}

impl HookFailure {
    fn outcome(&self) -> &'static str {
        match self {
            HookFailure::Denied(_) => "denied",
            HookFailure::Timeout(_) => "hook_timeout",
            HookFailure::Rejected(_) => "hook_rejected",
            HookFailure::Error(_) => "hook_error",
        }
    }
}
