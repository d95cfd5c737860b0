//! The pingora proxy: token route, JWKS and discovery answered here; everything else
//! passed to the IdP untouched.
//!
//! Design choice: pingora 0.9's response-body filters are synchronous, yet the scopes a
//! hook needs are only known from the IdP's response, and both the hook and signing take
//! real time. So the token route never goes through pingora's proxy phases: it is
//! handled whole in the async `request_filter`, which reads the (capped) request body,
//! calls the IdP itself through pingora's pooled connector (`crate::upstream`), awaits
//! verification, the hook (on its own worker threads) and signing (on tokio's blocking
//! pool), writes the response and returns `Ok(true)`. Other traffic returns `Ok(false)`
//! and takes pingora's normal streaming path.

pub mod body;
mod token_route;

use crate::app::App;
use crate::metrics::Route;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;
use std::time::Instant;

pub struct TokenProxy {
    pub app: Arc<App>,
}

/// Per-request state.
pub struct Ctx {
    route: Route,
    outcome: &'static str,
    start: Instant,
    client_id: Option<String>,
    status: u16,
    request_id: String,
    stages: token_route::StageTimes,
    /// Counts the request for shutdown (`crate::connections`).
    in_flight: Option<crate::connections::InFlight>,
}

#[async_trait]
impl ProxyHttp for TokenProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            route: Route::Passthrough,
            outcome: "ok",
            start: Instant::now(),
            client_id: None,
            status: 0,
            request_id: String::new(),
            stages: Default::default(),
            in_flight: None,
        }
    }

    // Connection bounds (`crate::connections`): where a request starts, its body ends,
    // and its response ends.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        ctx.in_flight = crate::connections::request_started(session);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if end_of_stream {
            crate::connections::request_read(session);
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.start = Instant::now();
        ctx.request_id = request_id(session);
        let cfg = &self.app.config;
        let (method, path) = {
            let req = session.req_header();
            (req.method.clone(), normalize_path(req.uri.path()))
        };
        let get = method == http::Method::GET || method == http::Method::HEAD;
        if get && path == self.app.routes.jwks {
            ctx.route = Route::Jwks;
            let body = self.app.keys().jwks();
            let max_age = format!("public, max-age={}", cfg.server.jwks_max_age.as_secs());
            let head = method == http::Method::HEAD;
            respond(
                session,
                ctx,
                200,
                &[
                    ("Content-Type", "application/json"),
                    ("Cache-Control", &max_age),
                ],
                body,
                head,
            )
            .await?;
            return Ok(true);
        }
        if get && path == self.app.routes.discovery {
            ctx.route = Route::Discovery;
            token_route::discovery(&self.app, session, ctx).await?;
            return Ok(true);
        }
        if method == http::Method::POST && path == self.app.routes.token {
            ctx.route = Route::Token;
            token_route::handle(&self.app, session, ctx).await?;
            return Ok(true);
        }
        ctx.route = Route::Passthrough;
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.app.passthrough_peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        upstream_request.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        // pingora always speaks HTTP/1.1 upstream, where Host is mandatory; an HTTP/1.0
        // client may not have sent one.
        if upstream_request
            .headers
            .get("host")
            .is_none_or(|h| h.is_empty())
        {
            upstream_request.insert_header("Host", self.app.config.upstream.authority.as_str())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.status = upstream_response.status.as_u16();
        upstream_response.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        // pingora turns a close-delimited upstream body into chunked, which an HTTP/1.0
        // client cannot read; let it be close-delimited again for those clients.
        if session.req_header().version == http::Version::HTTP_10
            && upstream_response.headers.get("content-length").is_none()
        {
            upstream_response.remove_header("transfer-encoding");
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy
    where
        Ctx: Send + Sync,
    {
        let err = match e.etype() {
            ErrorType::HTTPStatus(413) => {
                crate::error::OAuthError::new(413, "invalid_request", "request body too large")
            }
            ErrorType::HTTPStatus(c) if *c < 500 => {
                crate::error::OAuthError::new(*c, "invalid_request", "bad request")
            }
            // The client went away or broke the connection: nobody to answer.
            ErrorType::ReadError
            | ErrorType::WriteError
            | ErrorType::ConnectionClosed
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Downstream =>
            {
                ctx.outcome = "error";
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            _ => match e.esource() {
                ErrorSource::Upstream => {
                    crate::error::OAuthError::bad_gateway("the identity provider is unavailable")
                }
                ErrorSource::Downstream => {
                    crate::error::OAuthError::new(400, "invalid_request", "malformed request")
                }
                _ => crate::error::OAuthError::server_error("internal error"),
            },
        };
        ctx.outcome = "error";
        ctx.status = err.status;
        let body = err.body();
        if let Ok(mut resp) = ResponseHeader::build(err.status, Some(3)) {
            let _ = resp.insert_header("Content-Type", "application/json");
            let _ = resp.insert_header("Cache-Control", "no-store");
            let _ = resp.set_content_length(body.len());
            let _ = session
                .as_downstream_mut()
                .write_error_response(resp, body)
                .await;
        }
        FailToProxy {
            error_code: err.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        crate::connections::request_done(session);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        if e.is_some() && ctx.outcome == "ok" {
            ctx.outcome = "error";
        }
        let elapsed = ctx.start.elapsed();
        self.app.requests_handle(ctx.route, ctx.outcome).inc();
        if ctx.route == Route::Token {
            self.app.metrics.stages.total.observe(elapsed.as_secs_f64());
        }
        let s = &ctx.stages;
        tracing::info!(
            request_id = %ctx.request_id,
            route = ctx.route.as_str(),
            client_id = ctx.client_id.as_deref().unwrap_or(""),
            outcome = ctx.outcome,
            status,
            total_us = elapsed.as_micros() as u64,
            upstream_us = s.upstream,
            verify_us = s.verify,
            hook_us = s.hook,
            sign_us = s.sign,
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
            "request"
        );
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // pingora's own line prints the error with its context, which can quote raw
        // upstream bytes (tokens); `logging` writes a line with the error kind instead.
        true
    }

    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        // pingora logs this on errors; the default includes the full URI and Host, which
        // is harmless, but keep it to method and path so a query string never leaks.
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
}

/// The form in which paths are compared: percent-decoded, lowercase, without trailing
/// slashes. Many IdPs route `/oauth/token/` or `/OAuth/Token` to the token endpoint; an
/// exact match would let such a request skip the hook.
pub fn normalize_path(path: &str) -> String {
    let decoded: Vec<u8> = percent_decode(path.as_bytes());
    let mut p = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    while p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    while p.contains("//") {
        p = p.replace("//", "/");
    }
    p
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The three intercepted paths, normalized once at startup.
pub struct Routes {
    pub token: String,
    pub jwks: String,
    pub discovery: String,
}

fn request_id(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id)
}

fn new_request_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}

/// Writes a complete response with a Content-Length, which frames correctly for
/// HTTP/1.0 and 1.1 clients alike.
pub(crate) async fn respond(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    headers: &[(&str, &str)],
    body: Bytes,
    head_only: bool,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
    for (k, v) in headers {
        resp.insert_header(k.to_string(), *v)?;
    }
    resp.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    resp.set_content_length(body.len())?;
    write_response(session, ctx, resp, body, head_only).await
}

pub(crate) async fn write_response(
    session: &mut Session,
    ctx: &mut Ctx,
    resp: ResponseHeader,
    body: Bytes,
    head_only: bool,
) -> Result<()> {
    ctx.status = resp.status.as_u16();
    if head_only || body.is_empty() {
        session.write_response_header(Box::new(resp), true).await?;
    } else {
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

pub(crate) async fn respond_error(
    session: &mut Session,
    ctx: &mut Ctx,
    err: &crate::error::OAuthError,
) -> Result<()> {
    let retry;
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
    ];
    if let Some(s) = err.retry_after {
        retry = s.to_string();
        headers.push(("Retry-After", retry.as_str()));
    }
    respond(session, ctx, err.status, &headers, err.body(), false).await
}
