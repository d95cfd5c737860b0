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
use crate::error::OAuthError;
use crate::metrics::{Outcome, Route};
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
    outcome: Outcome,
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
            outcome: Outcome::Ok,
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
            (
                req.method.clone(),
                crate::routes::normalize_path(req.uri.path()),
            )
        };
        let get = method == http::Method::GET || method == http::Method::HEAD;
        if get && path == self.app.config.routes.jwks {
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
        if get && path == self.app.config.routes.discovery {
            ctx.route = Route::Discovery;
            token_route::discovery(&self.app, session, ctx).await?;
            return Ok(true);
        }
        if path == self.app.config.routes.token {
            ctx.route = Route::Token;
            // Read only here: other routes' queries are the IdP's business.
            let query = session.req_header().uri.query();
            if let Some(param) = query.and_then(crate::routes::token_param_in_query) {
                // D17: the IdP might read it, and decide on other parameters than ours.
                ctx.outcome = Outcome::Rejected;
                let err = OAuthError::invalid_request(format!(
                    "token request parameters go in the request body, not the query string ({param})"
                ));
                respond_error(session, ctx, &err).await?;
                return Ok(true);
            }
            // Any method that can carry a body, in any case: an IdP that reads a token
            // request from `post` or `PUT` must not be reached around the hook.
            if token_route::carries_a_body(&method) {
                token_route::handle(&self.app, session, ctx, token_route::Path::Token).await?;
                return Ok(true);
            }
        }
        if token_route::may_be_token_request(session.req_header()) {
            ctx.route = Route::Passthrough;
            token_route::handle(&self.app, session, ctx, token_route::Path::Other).await?;
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
            ErrorType::HTTPStatus(413) => OAuthError::too_large("request body too large"),
            ErrorType::HTTPStatus(c) if *c < 500 => OAuthError::invalid_request("bad request"),
            // The client went away or broke the connection: nobody to answer.
            ErrorType::ReadError
            | ErrorType::WriteError
            | ErrorType::ConnectionClosed
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
                if e.esource() == &ErrorSource::Downstream =>
            {
                ctx.outcome = Outcome::Error;
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                };
            }
            _ => match e.esource() {
                ErrorSource::Upstream => {
                    OAuthError::bad_gateway("the identity provider is unavailable")
                }
                ErrorSource::Downstream => OAuthError::invalid_request("malformed request"),
                _ => OAuthError::server_error("internal error"),
            },
        };
        ctx.outcome = Outcome::Error;
        ctx.status = err.http_status();
        if let Ok((resp, body)) = error_response(&err, &ctx.request_id) {
            let _ = session
                .as_downstream_mut()
                .write_error_response(resp, body)
                .await;
        }
        FailToProxy {
            error_code: err.http_status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        crate::connections::request_done(session);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        if e.is_some() && ctx.outcome == Outcome::Ok {
            ctx.outcome = Outcome::Error;
        }
        let elapsed = ctx.start.elapsed();
        self.app.metrics.requests.get(ctx.route, ctx.outcome).inc();
        if ctx.route == Route::Token {
            self.app.metrics.stages.total.observe(elapsed.as_secs_f64());
        }
        let s = &ctx.stages;
        tracing::info!(
            request_id = %ctx.request_id,
            route = ctx.route.as_str(),
            client_id = ctx.client_id.as_deref().unwrap_or(""),
            outcome = ctx.outcome.label(),
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

fn request_id(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(crate::telemetry::new_request_id)
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

/// The one place an error response is made: OAuth JSON, `Cache-Control: no-store`,
/// `Retry-After` when the error has one, and always the request's `X-Request-Id`.
fn error_response(err: &OAuthError, request_id: &str) -> Result<(ResponseHeader, Bytes)> {
    let body = err.body();
    let mut resp = ResponseHeader::build(err.http_status(), Some(5))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Cache-Control", "no-store")?;
    if let Some(s) = err.retry_after() {
        resp.insert_header("Retry-After", s.to_string())?;
    }
    resp.insert_header("X-Request-Id", request_id)?;
    resp.set_content_length(body.len())?;
    Ok((resp, body))
}

pub(crate) async fn respond_error(
    session: &mut Session,
    ctx: &mut Ctx,
    err: &OAuthError,
) -> Result<()> {
    let (resp, body) = error_response(err, &ctx.request_id)?;
    write_response(session, ctx, resp, body, false).await
}
