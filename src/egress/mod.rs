//! The sidecar side of `fetch` for hooks: one HTTP request performed under the hook's
//! egress policy (`[hook.NAME.fetch]` in `hooks.toml`), denied unless allowed.
//!
//! Hook workers have no network; the lead's worker protocol carries a [`FetchRequest`]
//! from the JS `fetch` to the sidecar and a [`FetchResult`] back, both as JSON. This
//! module knows nothing of the pool:
//!
//! ```ignore
//! // Once per sidecar process: one pooled HTTPS client (rustls, aws-lc-rs, webpki roots
//! // and any of `hooks.fetch_ca_file`).
//! let egress = Egress::new(&cfg.fetch_roots)?;
//! // At load, per hook: problems are keyed like the manifest's own.
//! let policy = HookEgress::new(&name, entry.fetch.as_ref(), hook_timeout)?;
//! policy.attach_metrics(&metrics.hook_fetches, &metrics.hook_fetch_duration);
//! // Per hook call: a session counts `max_requests`; fetches may run concurrently.
//! let session = egress.session(&policy);
//! let result: FetchResult = session.fetch(request, call_deadline).await;
//! ```
//!
//! JSON on the pipe: `{"url", "method"?: "GET", "headers"?: [[name, value]], "body"?:
//! text}` in; `{"kind": "response", "status", "status_text", "headers": [[name,
//! value]], "body": text (lossy UTF-8), "url", "redirected"}` or `{"kind": "error",
//! "reason": "refused" | "timeout" | "too_large" | "error", "message"}` out. The
//! message names the origin and the reason, never a header, a body or a query.
//!
//! Rules, each checked per request and again on every redirect hop:
//! - The origin (scheme, host, port; default ports implied) must be in `allow` exactly.
//! - A host name is connected to only through addresses that are not loopback,
//!   link-local (169.254.169.254 included), unspecified, multicast, broadcast or a
//!   cloud metadata address, also in their IPv4-mapped IPv6 forms: the client's
//!   resolver drops them after resolution, so rebinding does not help. An IP-literal
//!   entry (`http://127.0.0.1:8080`) is the operator naming that address, and is used
//!   as written. Private ranges are allowed.
//! - At most [`MAX_REDIRECTS`] redirects, followed here (the client follows none):
//!   301/302 turn a POST into a GET, 303 turns anything but GET/HEAD into a GET, both
//!   without the body; 307/308 keep method and body; `Authorization` and `Cookie` are
//!   dropped when a hop changes origin.
//! - At most `max_requests` fetches per hook call, each within `timeout_ms` (redirects
//!   and body included) and the caller's deadline, whichever comes first; dropping the
//!   future cancels the request.
//! - Request body at most [`MAX_REQUEST_BODY`], headers at most
//!   [`MAX_REQUEST_HEADERS`]; the response body is read in chunks and given up past
//!   `max_response_bytes`. No cookie store, no proxy, no compression, HTTP/1.1 only.
//! - Headers the client owns (`Host`, framing, hop-by-hop, `Accept-Encoding`,
//!   `Proxy-*`) are dropped from the request, as browsers' `fetch` drops them.
//!
//! Every refusal is logged (`warn`) with the hook, the origin and the reason.

mod addr;
mod policy;
#[cfg(test)]
mod tests;

pub use policy::{DEFAULT_MAX_REQUESTS, DEFAULT_MAX_RESPONSE_BYTES, Origin};

pub use policy::FetchPolicy;

/// A problem with a hook's policy, keyed like config errors
/// (`hooks.dir/hooks.toml: hook.NAME.fetch.allow`).
pub type Problem = (String, String);
use crate::metrics::{FetchCounters, FetchOutcome};
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use policy::Compiled;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use url::Url;

/// Largest request body a hook may send.
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;
/// Largest total size of a request's header names and values.
pub const MAX_REQUEST_HEADERS: usize = 64 * 1024;
/// Redirects followed per fetch; one more is refused.
pub const MAX_REDIRECTS: u32 = 3;

/// One `fetch` from a hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// In order; a name may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

impl FetchRequest {
    pub fn get(url: impl Into<String>) -> FetchRequest {
        FetchRequest {
            url: url.into(),
            method: default_method(),
            headers: Vec::new(),
            body: None,
        }
    }
}

/// What a `fetch` answers the hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FetchResult {
    /// An answer, whatever its status (an HTTP error status is not a fetch error).
    Response {
        status: u16,
        status_text: String,
        /// Names in lower case, in the order received.
        headers: Vec<(String, String)>,
        /// The body as text; invalid UTF-8 is replaced.
        body: String,
        /// The last URL requested, after redirects, without its fragment.
        url: String,
        redirected: bool,
    },
    /// No answer; `fetch` rejects with `message`.
    Error {
        reason: FetchErrorKind,
        message: String,
    },
}

/// Why a fetch failed; the same closed set as the metric's outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    /// The policy refused it (origin, address, redirects, request count).
    Refused,
    Timeout,
    TooLarge,
    /// An invalid request, or the connection, TLS or HTTP exchange failed.
    Error,
}

impl FetchErrorKind {
    fn outcome(self) -> FetchOutcome {
        match self {
            FetchErrorKind::Refused => FetchOutcome::Refused,
            FetchErrorKind::Timeout => FetchOutcome::Timeout,
            FetchErrorKind::TooLarge => FetchOutcome::TooLarge,
            FetchErrorKind::Error => FetchOutcome::Error,
        }
    }
}

/// The shared HTTP client: one per sidecar process, so connections are pooled across
/// hook calls. Cloning shares it.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
}

/// Reads a PEM bundle of CA certificates that servers may also chain to (an internal
/// CA), besides the bundled roots. Each one must be usable as a trust anchor, so a
/// bad file is found at startup, not by the first hook that fetches.
pub fn read_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = item.map_err(|e| format!("certificate {i}: not PEM: {e}"))?;
        // Checked as the client will use it; the store itself is thrown away.
        rustls::RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| format!("certificate {i}: not a usable CA certificate: {e}"))?;
        roots.push(cert);
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(roots)
}

impl Egress {
    /// `extra_roots`: CA certificates trusted besides the bundled roots
    /// (`hooks.fetch_ca_file`, read by [`read_roots`]).
    pub fn new(extra_roots: &[CertificateDer<'static>]) -> Result<Egress, String> {
        Egress::build(Arc::new(Vec::new()), extra_roots)
    }

    /// A client whose resolver answers `hosts` itself (then filters as always), so
    /// tests can point a name at an address no DNS here would give.
    #[cfg(test)]
    pub(crate) fn with_hosts(
        hosts: Vec<(String, Vec<std::net::IpAddr>)>,
    ) -> Result<Egress, String> {
        Egress::build(Arc::new(hosts), &[])
    }

    fn build(
        hosts: addr::Hosts,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Egress, String> {
        // The provider is given, not taken from rustls's process-wide default, so no
        // other crate's choice (or a missing one) changes it; webpki roots are compiled
        // in, so a distroless image without a CA bundle still verifies servers.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("fetch client TLS: hooks.fetch_ca_file: {e}"))?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("fetch client TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // reqwest leaves ALPN to a preconfigured config; HTTP/1.1 is all it speaks here.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(addr::CheckedResolver { hosts })
            // Redirects are followed in `Session::follow`, each hop checked again.
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY in the environment would connect to the proxy instead of
            // the checked address.
            .no_proxy()
            .referer(false)
            // A hook's POST is not ours to send twice.
            .retry(reqwest::retry::never())
            .user_agent(concat!("tokenhook/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| format!("fetch client: {e}"))?;
        Ok(Egress { client })
    }

    /// The fetches of one hook call.
    pub fn session<'a>(&'a self, hook: &'a HookEgress) -> Session<'a> {
        self.session_after(hook, 0)
    }

    /// The fetches of one hook call that made `used` already (counted elsewhere, as
    /// the pool counts a call's requests across the worker pipe).
    pub fn session_after<'a>(&'a self, hook: &'a HookEgress, used: u32) -> Session<'a> {
        Session {
            client: &self.client,
            hook,
            used: AtomicU32::new(used),
        }
    }
}

/// One hook's compiled egress policy and its metric handles.
pub struct HookEgress {
    hook: String,
    /// None: the hook has no `[fetch]` table and may reach nothing.
    policy: Option<Compiled>,
    metrics: OnceLock<FetchCounters>,
}

impl std::fmt::Debug for HookEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookEgress")
            .field("hook", &self.hook)
            .field("policy", &self.policy)
            .finish()
    }
}

impl HookEgress {
    /// The policy of a hook whose manifest entry has `fetch` (or none: [`deny_all`]).
    ///
    /// [`deny_all`]: HookEgress::deny_all
    pub fn new(
        hook: &str,
        fetch: Option<&FetchPolicy>,
        default_timeout: Duration,
    ) -> Result<HookEgress, Vec<Problem>> {
        match fetch {
            Some(p) => HookEgress::from_policy(hook, p, default_timeout),
            None => Ok(HookEgress::deny_all(hook)),
        }
    }

    /// Compiles `[hook.NAME.fetch]`; `default_timeout` (the hook's own limit) applies
    /// when it has no `timeout_ms`.
    pub fn from_policy(
        hook: &str,
        p: &FetchPolicy,
        default_timeout: Duration,
    ) -> Result<HookEgress, Vec<Problem>> {
        Ok(HookEgress {
            hook: hook.to_owned(),
            policy: Some(policy::compile(hook, p, default_timeout)?),
            metrics: OnceLock::new(),
        })
    }

    /// A hook without a `[fetch]` table: every fetch is refused.
    pub fn deny_all(hook: &str) -> HookEgress {
        HookEgress {
            hook: hook.to_owned(),
            policy: None,
            metrics: OnceLock::new(),
        }
    }

    /// Resolves this hook's metric handles once (`tokenhook_hook_fetch_total`,
    /// `tokenhook_hook_fetch_duration_seconds`), so a fetch only increments. A second
    /// call keeps the first handles.
    pub fn attach_metrics(
        &self,
        fetches: &prometheus::IntCounterVec,
        durations: &prometheus::HistogramVec,
    ) {
        let _ = self
            .metrics
            .set(FetchCounters::new(fetches, durations, &self.hook));
    }

    pub fn hook(&self) -> &str {
        &self.hook
    }

    /// The allowed origins, normalized; empty for [`deny_all`](HookEgress::deny_all).
    pub fn allow(&self) -> &[Origin] {
        self.policy.as_ref().map_or(&[], |p| &p.allow)
    }
}

/// The fetches of one hook call: counts them against `max_requests`. Takes `&self`, so
/// a hook's concurrent fetches can run side by side.
pub struct Session<'a> {
    client: &'a reqwest::Client,
    hook: &'a HookEgress,
    used: AtomicU32,
}

/// Why a request was refused: the `reason` of the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    NoAllowList,
    NotAllowed,
    AddressRefused,
    TooManyRedirects,
    TooManyRequests,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::NoAllowList => "no allow-list",
            Reason::NotAllowed => "not in allow-list",
            Reason::AddressRefused => "address refused",
            Reason::TooManyRedirects => "too many redirects",
            Reason::TooManyRequests => "too many requests",
        }
    }
}

/// A failed fetch, before it becomes the hook's [`FetchResult::Error`].
#[derive(Debug)]
enum Fail {
    Refused {
        origin: Option<Origin>,
        reason: Reason,
        message: String,
    },
    Timeout(String),
    TooLarge(String),
    Error(String),
}

impl Fail {
    fn refused(origin: Option<&Origin>, reason: Reason, message: String) -> Fail {
        Fail::Refused {
            origin: origin.cloned(),
            reason,
            message,
        }
    }
}

/// A request checked and ready to send, updated hop by hop.
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

impl Session<'_> {
    /// Performs `req` under the hook's policy, by `deadline` at the latest (the hook
    /// call's own); counts and times it in the hook's metrics.
    pub async fn fetch(&self, req: FetchRequest, deadline: Instant) -> FetchResult {
        let started = Instant::now();
        let result = self.run(req, deadline).await;
        let (outcome, answer) = match result {
            Ok(r) => (FetchOutcome::Ok, r),
            Err(fail) => {
                let (reason, message) = match fail {
                    Fail::Refused {
                        origin,
                        reason,
                        message,
                    } => {
                        let origin = origin.map_or_else(|| "-".to_owned(), |o| o.to_string());
                        tracing::warn!(
                            hook = %self.hook.hook,
                            origin = %origin,
                            reason = reason.as_str(),
                            "hook fetch refused: {message}"
                        );
                        (FetchErrorKind::Refused, message)
                    }
                    Fail::Timeout(m) => (FetchErrorKind::Timeout, m),
                    Fail::TooLarge(m) => (FetchErrorKind::TooLarge, m),
                    Fail::Error(m) => (FetchErrorKind::Error, m),
                };
                (reason.outcome(), FetchResult::Error { reason, message })
            }
        };
        if let Some(m) = self.hook.metrics.get() {
            m.get(outcome).inc();
            m.duration.observe(started.elapsed().as_secs_f64());
        }
        answer
    }

    async fn run(&self, req: FetchRequest, deadline: Instant) -> Result<FetchResult, Fail> {
        let hook = &self.hook.hook;
        let parsed = Url::parse(&req.url);
        let origin = parsed.as_ref().ok().and_then(Origin::of);
        let Some(policy) = &self.hook.policy else {
            return Err(Fail::refused(
                origin.as_ref(),
                Reason::NoAllowList,
                format!("hook {hook} has no [hook.{hook}.fetch] allow-list"),
            ));
        };
        // Counted before anything else, so a hook looping on bad requests is stopped
        // too.
        if self.used.fetch_add(1, Ordering::Relaxed) >= policy.max_requests {
            return Err(Fail::refused(
                origin.as_ref(),
                Reason::TooManyRequests,
                format!(
                    "hook {hook} made more than {} requests in one call",
                    policy.max_requests
                ),
            ));
        }
        let url = parsed.map_err(|e| Fail::Error(format!("invalid URL ({e})")))?;
        let prepared = prepare(req, checked_url(url)?)?;
        let limit = Instant::now()
            .checked_add(policy.timeout)
            .map_or(deadline, |t| t.min(deadline));
        let mut at = origin;
        match tokio::time::timeout_at(limit.into(), self.follow(prepared, policy, &mut at)).await {
            Ok(r) => r,
            Err(_) => {
                let at = at.map_or_else(String::new, |o| format!("{o}: "));
                Err(Fail::Timeout(format!(
                    "{at}no answer within the time limit"
                )))
            }
        }
    }

    /// Sends `r`, following redirects; `at` tracks the hop in flight for the timeout's
    /// message.
    async fn follow(
        &self,
        mut r: Prepared,
        policy: &Compiled,
        at: &mut Option<Origin>,
    ) -> Result<FetchResult, Fail> {
        let mut redirects = 0;
        loop {
            let origin = Origin::of(&r.url).expect("checked_url admits http(s) only");
            *at = Some(origin.clone());
            // An IP-literal URL reaches no resolver: only an entry naming that very
            // address matches it, which is the operator's explicit permission.
            if !policy.allow.contains(&origin) {
                return Err(Fail::refused(
                    Some(&origin),
                    Reason::NotAllowed,
                    format!(
                        "{origin} is not in the allow-list of hook {}",
                        self.hook.hook
                    ),
                ));
            }
            let mut request = reqwest::Request::new(r.method.clone(), r.url.clone());
            *request.headers_mut() = r.headers.clone();
            if let Some(b) = &r.body {
                *request.body_mut() = Some(b.clone().into());
            }
            let resp = self
                .client
                .execute(request)
                .await
                .map_err(|e| failure(e, &origin))?;
            let status = resp.status().as_u16();
            let location = resp.headers().get(header::LOCATION);
            let (true, Some(location)) = (is_redirect(status), location) else {
                return read(
                    resp,
                    &r.url,
                    redirects > 0,
                    policy.max_response_bytes,
                    &origin,
                )
                .await;
            };
            if redirects == MAX_REDIRECTS {
                return Err(Fail::refused(
                    Some(&origin),
                    Reason::TooManyRedirects,
                    format!("{origin}: more than {MAX_REDIRECTS} redirects"),
                ));
            }
            let bad = || Fail::Error(format!("{origin}: redirect to an invalid Location"));
            let next = location.to_str().map_err(|_| bad())?;
            let next = checked_url(r.url.join(next).map_err(|_| bad())?)?;
            let to_get = (matches!(status, 301 | 302) && r.method == Method::POST)
                || (status == 303 && r.method != Method::GET && r.method != Method::HEAD);
            if to_get {
                r.method = Method::GET;
                r.body = None;
                for h in [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CONTENT_LANGUAGE,
                    header::CONTENT_LOCATION,
                ] {
                    r.headers.remove(h);
                }
            }
            if Origin::of(&next).as_ref() != Some(&origin) {
                r.headers.remove(header::AUTHORIZATION);
                r.headers.remove(header::COOKIE);
            }
            r.url = next;
            redirects += 1;
        }
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// An http(s) URL without credentials, its fragment dropped (never sent).
fn checked_url(mut url: Url) -> Result<Url, Fail> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Fail::Error(format!(
            "scheme {:?} is not supported; use http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Fail::Error("a URL may not carry credentials".into()));
    }
    url.set_fragment(None);
    Ok(url)
}

/// Request headers the client sets itself: a hook's own would break framing, reach
/// another virtual host than the allowed origin (`Host`), or ask for an encoding
/// nothing here decodes.
fn dropped_header(name: &HeaderName) -> bool {
    use header::*;
    [
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        UPGRADE,
        TE,
        TRAILER,
        EXPECT,
        ACCEPT_ENCODING,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// Checks the hook's method, headers and body.
fn prepare(req: FetchRequest, url: Url) -> Result<Prepared, Fail> {
    let method = parse_method(&req.method)?;
    let mut headers = HeaderMap::new();
    let mut size = 0usize;
    for (name, value) in &req.headers {
        size += name.len() + value.len();
        if size > MAX_REQUEST_HEADERS {
            return Err(Fail::TooLarge(format!(
                "request headers over {MAX_REQUEST_HEADERS} bytes"
            )));
        }
        // Neither is repeated in the message: a malformed value may still be a secret.
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Fail::Error("invalid header name".into()))?;
        let value = HeaderValue::from_str(value.trim_matches([' ', '\t', '\r', '\n']))
            .map_err(|_| Fail::Error(format!("invalid value for header {name}")))?;
        if !dropped_header(&name) {
            headers.append(name, value);
        }
    }
    let body = match req.body {
        None => None,
        Some(_) if method == Method::GET || method == Method::HEAD => {
            return Err(Fail::Error(format!("a {method} request has no body")));
        }
        Some(b) if b.len() > MAX_REQUEST_BODY => {
            return Err(Fail::TooLarge(format!(
                "request body over {MAX_REQUEST_BODY} bytes"
            )));
        }
        Some(b) => {
            // As `fetch` labels a string body.
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain;charset=UTF-8"),
                );
            }
            Some(Bytes::from(b.into_bytes()))
        }
    };
    Ok(Prepared {
        method,
        url,
        headers,
        body,
    })
}

/// The method as `fetch` normalizes it: the common ones upper-cased, the forbidden ones
/// refused.
fn parse_method(m: &str) -> Result<Method, Fail> {
    const NORMALIZED: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
    const FORBIDDEN: [&str; 3] = ["CONNECT", "TRACE", "TRACK"];
    if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(m)) {
        return Err(Fail::Error(format!(
            "method {} is not allowed",
            m.to_ascii_uppercase()
        )));
    }
    let m = match NORMALIZED.iter().find(|n| n.eq_ignore_ascii_case(m)) {
        Some(n) => n,
        None => m,
    };
    Method::from_bytes(m.as_bytes()).map_err(|_| Fail::Error("invalid method".into()))
}

/// Reads the answer's body up to `max` bytes.
async fn read(
    mut resp: reqwest::Response,
    url: &Url,
    redirected: bool,
    max: u64,
    origin: &Origin,
) -> Result<FetchResult, Fail> {
    let too_large = || Fail::TooLarge(format!("{origin}: response body over {max} bytes"));
    // A declared length over the limit is refused before a byte is read.
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let status = resp.status();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // A declared length is a hint, not a promise; a generous `max_response_bytes` must
    // not become one large allocation up front.
    let hint = resp.content_length().unwrap_or(0).min(64 * 1024);
    let mut body = Vec::with_capacity(hint as usize);
    while let Some(chunk) = resp.chunk().await.map_err(|e| failure(e, origin))? {
        if (body.len() + chunk.len()) as u64 > max {
            // Dropping the response closes the connection mid-body.
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(FetchResult::Response {
        status: status.as_u16(),
        status_text: status.canonical_reason().unwrap_or("").to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        url: url.to_string(),
        redirected,
    })
}

/// A client error as the hook sees it: the resolver's refusal, or the failure's causes
/// under the origin. reqwest's own message carries the URL, query and all; its causes
/// (I/O, TLS, HTTP parse errors) do not.
fn failure(e: reqwest::Error, origin: &Origin) -> Fail {
    let mut cause: Option<&dyn std::error::Error> = Some(&e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<addr::AddressRefused>() {
            return Fail::refused(
                Some(origin),
                Reason::AddressRefused,
                format!("{origin}: address refused: {r}"),
            );
        }
        cause = c.source();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let c_text = c.to_string();
        // hyper and hyper-util often repeat their cause in their own message.
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    Fail::Error(format!("{origin}: {text}"))
}
