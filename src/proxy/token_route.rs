//! The token route's I/O: read and parse the request, call the IdP, verify its token,
//! hand it to the exchange core (`crate::exchange`), sign, answer. Also the discovery
//! document, which needs the same upstream call and a rewrite.

use super::body::parse_token_request;
use super::{Ctx, respond_error, write_response};
use crate::app::App;
use crate::error::OAuthError;
use crate::exchange::{Peer, Refused, TokenRequest};
use crate::metrics::{Outcome, Stage};
use crate::upstream::{UpstreamResponse, decode_content};
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
    let too_large = || OAuthError::too_large(format!("request body is over {max} bytes"));
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
                return Err(OAuthError::invalid_request("cannot read the request body"));
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
        .map(crate::upstream::decodable_accept_encoding);
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

/// What the client gets when the IdP exchange itself failed; the cause is logged.
fn upstream_failure(e: &crate::upstream::UpstreamError) -> OAuthError {
    use crate::upstream::UpstreamError::*;
    match e {
        Connect { .. } => OAuthError::upstream_unreachable("the identity provider is unreachable"),
        Timeout(_) => OAuthError::upstream_timeout("the identity provider did not answer in time"),
        TooLarge(n) => OAuthError::bad_gateway(format!(
            "the identity provider's response is over {n} bytes"
        )),
        Io(_) => OAuthError::bad_gateway("the exchange with the identity provider failed"),
    }
}

/// A complete answer for the client: a re-signed token, or the IdP's answer relayed.
struct Reply {
    outcome: Outcome,
    header: ResponseHeader,
    body: Bytes,
}

/// Header building fails only on values pingora cannot encode, none of which come from
/// the client here; still an error response, never a panic.
fn internal(e: &pingora::Error) -> Refused {
    tracing::error!(error = %e.etype().as_str(), "cannot build the response");
    Refused::new(Outcome::Error, OAuthError::server_error("internal error"))
}

/// Where a request handled here arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The configured token path (in any spelling, `crate::routes`).
    Token,
    /// Another path, with a body that could be a token request: a second token endpoint
    /// of the IdP (an alias, an mTLS endpoint) or a spelling the normalisation misses
    /// must not hand out the IdP's token either.
    Other,
}

/// Methods that may carry a token request's body: anything but the safe ones, compared
/// without case (HTTP methods are case-sensitive, but not every server in front of an
/// IdP treats them so).
pub fn carries_a_body(method: &http::Method) -> bool {
    !["GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"]
        .iter()
        .any(|m| method.as_str().eq_ignore_ascii_case(m))
}

/// Whether a request on another path is read here rather than streamed: a request with
/// a body a token endpoint would read (form, JSON, or no content type).
pub fn may_be_token_request(req: &RequestHeader) -> bool {
    if !carries_a_body(&req.method) {
        return false;
    }
    let media = super::body::media_type(&req.headers);
    matches!(
        media.as_deref(),
        None | Some("") | Some("application/x-www-form-urlencoded") | Some("application/json")
    )
}

pub async fn handle(app: &App, session: &mut Session, ctx: &mut Ctx, path: Path) -> Result<()> {
    match exchange(app, session, ctx, path).await {
        Ok(reply) => {
            ctx.outcome = reply.outcome;
            write_response(session, ctx, reply.header, reply.body, false).await
        }
        Err(refused) => {
            ctx.outcome = refused.outcome;
            respond_error(session, ctx, &refused.error).await
        }
    }
}

/// The token route top to bottom: read, parse, call the IdP, verify, exchange, sign.
async fn exchange(
    app: &App,
    session: &mut Session,
    ctx: &mut Ctx,
    path: Path,
) -> Result<Reply, Refused> {
    let max = app.config.upstream.max_body_bytes;
    let body = read_body(session, max)
        .await
        .map_err(|e| Refused::new(Outcome::Rejected, e))?;
    let req = match (parse_token_request(session.req_header(), &body), path) {
        (Ok(req), _) => Some(req),
        (Err(why), Path::Token) => {
            return Err(Refused::new(
                Outcome::Rejected,
                OAuthError::invalid_request(why),
            ));
        }
        // Not a token request tokenhook can read: relayed, guarded like any other.
        (Err(_), Path::Other) => None,
    };
    let cc = req
        .as_ref()
        .is_some_and(TokenRequest::is_client_credentials);
    if path == Path::Token || cc {
        ctx.route = crate::metrics::Route::Token;
        ctx.client_id = req.as_ref().and_then(|r| r.client_id.clone());
    }

    let resp = call_idp(app, session.req_header(), &body, cc, ctx).await?;
    let Some(req) = req.filter(|_| cc) else {
        return match path {
            Path::Token => relay(&resp, Outcome::Passthrough, ctx),
            Path::Other => guarded_relay(app, &resp, ctx).await,
        };
    };
    if resp.header.status != 200 {
        return relay(&resp, Outcome::UpstreamDenied, ctx);
    }
    let (mut doc, upstream_token) = match token_response(&resp, max, ctx)? {
        TokenResponse::Jwt(doc, token) => (doc, token),
        TokenResponse::NotOurs(why) => {
            tracing::debug!(request_id = %ctx.request_id, why, "token response passed through unchanged");
            return relay(&resp, Outcome::Passthrough, ctx);
        }
    };
    let (claims, typ) = verify(app, &upstream_token, ctx).await?;

    let t = Instant::now();
    let peer = peer(session, &app.config.server.trusted_proxies);
    let exchanged = app
        .exchange()
        .run(claims, &req, &peer, &ctx.request_id)
        .await;
    ctx.stages.hook = timed(app, Stage::Hook, t);
    let mut exchanged = exchanged?;

    let token = sign(app, typ, std::mem::take(&mut exchanged.payload), ctx).await?;
    doc.insert("access_token".into(), Value::String(token));
    exchanged.rewrite_response_scope(&mut doc);
    // Into a Vec directly: `Display` would go through the formatting machinery.
    let body = Bytes::from(serde_json::to_vec(&Value::Object(doc)).unwrap_or_default());
    let mut header = own_header(&resp.header, &["content-encoding", "content-length"]);
    header
        .insert_header("Cache-Control", "no-store")
        .map_err(|e| internal(&e))?;
    header
        .set_content_length(body.len())
        .map_err(|e| internal(&e))?;
    header
        .insert_header("X-Request-Id", ctx.request_id.as_str())
        .map_err(|e| internal(&e))?;
    Ok(Reply {
        outcome: Outcome::Ok,
        header,
        body,
    })
}

/// The client's request, sent on to the IdP. Only a client_credentials request may be
/// resent when a pooled connection drops without an answer: issuing another such token
/// is harmless; other grants (codes, rotating refresh tokens) must not reach the IdP
/// twice.
async fn call_idp(
    app: &App,
    client_req: &RequestHeader,
    body: &Bytes,
    replayable: bool,
    ctx: &mut Ctx,
) -> Result<UpstreamResponse, Refused> {
    let up = &app.config.upstream;
    let up_req = upstream_request(client_req, body.len(), &ctx.request_id, &up.authority)
        .map_err(|e| internal(&e))?;
    let t = Instant::now();
    let resp = app
        .upstream
        .send(&up_req, body, up.max_body_bytes, replayable)
        .await;
    ctx.stages.upstream = timed(app, Stage::Upstream, t);
    resp.map_err(|e| {
        tracing::warn!(request_id = %ctx.request_id, error = %e, "request to the IdP failed");
        Refused::new(Outcome::UpstreamError, upstream_failure(&e))
    })
}

/// Relays the IdP's answer to a request on another path, unless it carries an access
/// token signed by the IdP: that would be the IdP's token without the hook (an alias of
/// the token endpoint, or a grant tokenhook does not run hooks for), so it fails
/// closed. The content type and a byte search come first, so other answers cost
/// almost nothing.
async fn guarded_relay(app: &App, resp: &UpstreamResponse, ctx: &Ctx) -> Result<Reply, Refused> {
    let content_type = resp
        .header
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let compressed = resp.header.headers.contains_key("content-encoding");
    if crate::token::may_carry_token(content_type, compressed, &resp.body) {
        let max = app.config.upstream.max_body_bytes;
        let decoded = decode_content(&resp.header, resp.body.clone(), max).ok();
        let token = decoded.as_deref().and_then(|b| {
            match serde_json::from_slice::<Map<String, Value>>(b) {
                Ok(doc) => doc
                    .get("access_token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                // A form-encoded answer (`may_carry_token` lets only those through).
                Err(_) => form_urlencoded::parse(b)
                    .find(|(k, _)| k == "access_token")
                    .map(|(_, v)| v.into_owned()),
            }
        });
        if let Some(token) = token
            && crate::token::looks_like_jwt(&token)
            && app.verifier.signed_by_idp(&token).await
        {
            tracing::error!(request_id = %ctx.request_id,
                "the IdP answered a request outside the token route with one of its own tokens; not relayed (check upstream.token_path and the IdP's token endpoints)");
            return Err(Refused::new(
                Outcome::TokenBlocked,
                OAuthError::bad_gateway(
                    "the identity provider issued a token outside the token endpoint tokenhook guards",
                ),
            ));
        }
    }
    relay(resp, Outcome::Passthrough, ctx)
}

fn relay(resp: &UpstreamResponse, outcome: Outcome, ctx: &Ctx) -> Result<Reply, Refused> {
    Ok(Reply {
        outcome,
        header: relay_header(resp, &ctx.request_id).map_err(|e| internal(&e))?,
        body: resp.body.clone(),
    })
}

enum TokenResponse {
    /// The response document and its JWT access token.
    Jwt(Map<String, Value>, String),
    /// Not ours to change (opaque token, not JSON…): relay the IdP's bytes.
    NotOurs(&'static str),
}

/// The IdP's successful token response, decoded.
fn token_response(
    resp: &UpstreamResponse,
    max: usize,
    ctx: &Ctx,
) -> Result<TokenResponse, Refused> {
    let decoded = decode_content(&resp.header, resp.body.clone(), max).map_err(|e| {
        tracing::warn!(request_id = %ctx.request_id, error = %e, "cannot decode the IdP's token response");
        Refused::new(
            Outcome::UpstreamError,
            OAuthError::bad_gateway("the identity provider's response could not be decoded"),
        )
    })?;
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(&decoded) else {
        // A body that says it is JSON and is not was cut or mangled on the way (a
        // Content-Length shorter than the body, a proxy): relaying it would hand the
        // client whatever of the IdP's token it holds, unverified and unhooked.
        if declares_json(&resp.header) {
            tracing::warn!(request_id = %ctx.request_id, "the IdP's token response says JSON and is not");
            return Err(Refused::new(
                Outcome::UpstreamError,
                OAuthError::bad_gateway("the identity provider's response is malformed"),
            ));
        }
        if crate::token::jwt_outside_json(&decoded) {
            tracing::warn!(request_id = %ctx.request_id,
                "the IdP's token response is not JSON and carries a JWT; not relayed (the hook cannot run on it)");
            return Err(Refused::new(
                Outcome::TokenBlocked,
                OAuthError::bad_gateway(
                    "the identity provider's token response is not JSON (RFC 6749 section 5.1) and carries a token the hook cannot run on",
                ),
            ));
        }
        return Ok(TokenResponse::NotOurs("response is not a JSON object"));
    };
    let Some(token) = doc
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(TokenResponse::NotOurs("no access_token"));
    };
    if !crate::token::looks_like_jwt(&token) {
        return Ok(TokenResponse::NotOurs("opaque access token"));
    }
    Ok(TokenResponse::Jwt(doc, token))
}

/// Whether the response's media type is JSON (`application/json`, or `+json`).
fn declares_json(header: &ResponseHeader) -> bool {
    super::body::media_type(&header.headers)
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"))
}

/// The IdP's token against its JWKS: its claims and header `typ`, or never re-signed.
async fn verify(
    app: &App,
    token: &str,
    ctx: &mut Ctx,
) -> Result<(Map<String, Value>, Option<String>), Refused> {
    let t = Instant::now();
    let verified = app
        .verifier
        .verify_typed(token, crate::app::now_secs())
        .await;
    ctx.stages.verify = timed(app, Stage::Verify, t);
    verified.map_err(|e| {
        // Without the IdP's keys the token could not be checked at all: that is the IdP
        // being unavailable (retryable), not a bad token; the runbook's "failed
        // verification" row would send the operator after keys and clocks instead.
        if let crate::token::verify::VerifyError::JwksUnavailable(why) = &e {
            tracing::warn!(request_id = %ctx.request_id, reason = %why, "no IdP keys to verify the token with; not re-signed");
            return Refused::new(
                Outcome::UpstreamError,
                OAuthError::upstream_unreachable("the identity provider's keys are unavailable"),
            );
        }
        tracing::warn!(request_id = %ctx.request_id, reason = %e, "the IdP's token failed verification; not re-signed");
        Refused::new(
            Outcome::InvalidUpstreamToken,
            OAuthError::bad_gateway("the identity provider issued a token that failed verification"),
        )
    })
}

/// Signs with the active key. An RSA signature (~250 µs) goes to the blocking pool, off
/// pingora's I/O threads. ES256 and EdDSA (10-20 µs, less than the JSON work around
/// them) are signed in place: the hop to another thread would cost as much.
async fn sign(
    app: &App,
    typ: Option<String>,
    payload: Map<String, Value>,
    ctx: &mut Ctx,
) -> Result<String, Refused> {
    let t = Instant::now();
    let key = app.keys().active().clone();
    let signed = if key.is_cheap_to_sign() {
        crate::token::sign(&key, typ.as_deref(), &payload)
    } else {
        tokio::task::spawn_blocking(move || crate::token::sign(&key, typ.as_deref(), &payload))
            .await
            .unwrap_or_else(|e| Err(crate::keys::KeyError::Sign(e.to_string())))
    };
    ctx.stages.sign = timed(app, Stage::Sign, t);
    signed.map_err(|e| {
        tracing::error!(request_id = %ctx.request_id, error = %e, "signing failed");
        Refused::new(Outcome::Error, OAuthError::server_error("signing failed"))
    })
}

/// What the exchange knows of the HTTP request besides its parameters. The address is
/// the TCP peer's, or what a trusted proxy reported (`server.trusted_proxies`).
fn peer(session: &Session, trusted: &[crate::client_ip::Cidr]) -> Peer {
    let req = session.req_header();
    let all = |n: &str| -> Vec<&str> {
        req.headers
            .get_all(n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let header = |n: &str| {
        req.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Peer {
        ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| {
            // Without trusted proxies the headers cannot count: not even collected.
            if trusted.is_empty() {
                return a.ip().to_string();
            }
            crate::client_ip::client_ip(a.ip(), &all("x-forwarded-for"), &all("forwarded"), trusted)
                .to_string()
        }),
        user_agent: header("user-agent"),
        hostname: header("host"),
        language: header("accept-language"),
        method: Some(req.method.as_str().to_owned()),
    }
}

/// `GET` discovery: the IdP's document with its endpoints pointing at us
/// (`crate::discovery`). The IdP is asked with the client's `Host` and forwarding
/// headers, so that an IdP which builds its URLs from the request builds them for the
/// address the client used; the rewrite then holds whatever it built.
pub async fn discovery(app: &App, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let cfg = &app.config;
    let client = session.req_header();
    let header = |n: &str| client.headers.get(n).and_then(|v| v.to_str().ok());
    let host = header("host").filter(|h| !h.is_empty());
    let mut req = crate::upstream::get_request(
        &cfg.upstream.discovery_path,
        host.unwrap_or(&cfg.upstream.authority),
    )?;
    if let Some(h) = header("x-forwarded-host").or(host) {
        req.insert_header("X-Forwarded-Host", h)?;
    }
    let proto = header("x-forwarded-proto").unwrap_or(cfg.server.public_url.scheme());
    req.insert_header("X-Forwarded-Proto", proto)?;
    req.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    let max = cfg.upstream.max_body_bytes;
    let resp = match app.upstream.send(&req, &Bytes::new(), max, true).await {
        Ok(r) => r,
        Err(e) => {
            ctx.outcome = Outcome::UpstreamError;
            return respond_error(session, ctx, &upstream_failure(&e)).await;
        }
    };
    let doc = (resp.header.status == 200)
        .then(|| decode_content(&resp.header, resp.body.clone(), max).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(Value::Object(mut doc)) = doc else {
        ctx.outcome = Outcome::Passthrough;
        let h = relay_header(&resp, &ctx.request_id)?;
        return write_response(session, ctx, h, resp.body, false).await;
    };
    let upstream_iss = doc.get("issuer").and_then(Value::as_str).map(str::to_owned);
    let scheme = cfg.server.public_url.scheme();
    let idp_origins = [
        Some(cfg.upstream.url.origin()),
        upstream_iss.as_deref().and_then(crate::discovery::origin),
        host.and_then(|h| crate::discovery::origin(&format!("{scheme}://{h}"))),
        host.and_then(|h| crate::discovery::origin(&format!("http://{h}"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    crate::discovery::Rewrite {
        public: &cfg.server.public_url,
        idp_origins,
        token_path: &cfg.upstream.token_path,
        jwks_path: &cfg.server.jwks_path,
        issuer: cfg.issuer_for(upstream_iss.as_deref()),
    }
    .apply(&mut doc);
    // Into a Vec directly: `Display` would go through the formatting machinery.
    let body = Bytes::from(serde_json::to_vec(&Value::Object(doc)).unwrap_or_default());
    let mut h = own_header(&resp.header, &["content-encoding", "content-length"]);
    h.set_content_length(body.len())?;
    h.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    ctx.outcome = Outcome::Ok;
    let head = session.req_header().method == http::Method::HEAD;
    write_response(session, ctx, h, body, head).await
}
