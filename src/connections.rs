//! Bounds on client connections of the proxy listener: a deadline for each request's
//! head and body, an idle timeout between keep-alive requests, a cap on open
//! connections, and the count of requests in flight that shutdown waits for.
//!
//! Why a stream wrapper: pingora 0.9 reads a request head before any `ProxyHttp`
//! callback runs (`pingora-proxy` `handle_new_request` → `v1::server::HttpSession::
//! read_request`), and its own timeouts there never cut off a slow client:
//! `read_request_buf` applies the keep-alive timeout (60 s on a new connection, in
//! `apps/mod.rs`) or `read_timeout` to each `read` call, not to the whole head, so a byte
//! every 2 s resets it; and after the first request `respect_keepalive` makes the
//! keep-alive timeout `Infinite` for HTTP/1.1 (no `Keep-Alive: timeout=` from the client),
//! so both the idle wait and the next head's reads wait forever (pingora's own "FIXME:
//! this should only apply to reads between requests"). Body reads have the same per-read
//! `read_timeout`. So each accepted stream is wrapped in [`Timed`], whose reads fail once
//! the current deadline passes; the proxy tells it where a request starts and ends
//! ([`request_started`], [`request_read`], [`request_done`]).

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits, and what is counted across connections.
pub struct Limits {
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    open: AtomicUsize,
    in_flight: AtomicUsize,
    /// Second (since `started`) of the last "connection refused" warning: one a second
    /// at most, since a flood of them is what the cap is for.
    last_refusal_log: AtomicU64,
    started: Instant,
}

impl Limits {
    pub fn new(cfg: &crate::config::ServerConfig) -> Arc<Self> {
        Arc::new(Limits {
            read_timeout: cfg.read_timeout,
            idle_timeout: cfg.idle_timeout,
            max_connections: cfg.max_connections,
            open: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            last_refusal_log: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        })
    }

    /// Requests whose head was read and whose handling has not ended.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Wraps pingora's HTTP proxy app: counts and caps connections, and hands the proxy a
/// [`Timed`] stream.
pub struct Bounded<A> {
    pub inner: Arc<A>,
    pub limits: Arc<Limits>,
}

struct OpenGuard<'a>(&'a Limits);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Bounded<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = &self.limits;
        let open = limits.open.fetch_add(1, Ordering::AcqRel) + 1;
        let _open = OpenGuard(limits);
        if open > limits.max_connections {
            self.refuse(stream).await;
            return None;
        }
        let conn = Arc::new(Conn {
            limits: limits.clone(),
            // A new connection's first request must start within the read timeout: a
            // client connects to send one.
            state: Mutex::new(Phase::Idle(Instant::now() + limits.read_timeout)),
        });
        let mut next = Some(Box::new(Timed::new(stream, conn)) as Stream);
        // pingora's HTTP/1 app keeps the connection for its keep-alive requests itself
        // and returns `None`; anything it hands back is served here again, still counted.
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        // Wakes keep-alive connections waiting for a request at shutdown.
        self.inner.cleanup().await;
    }
}

impl<A> Bounded<A> {
    /// Over the cap: an answer the client can act on instead of a reset, then close.
    async fn refuse(&self, mut stream: Stream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = &self.limits;
        let now = limits.started.elapsed().as_secs();
        if limits.last_refusal_log.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection refused: server.max_connections client connections are open"
            );
        }
        let bounded = Duration::from_secs(1);
        let _ = tokio::time::timeout(bounded, stream.write_all(&refusal_response())).await;
        let _ = tokio::time::timeout(bounded, stream.flush()).await;
        Shutdown::shutdown(&mut *stream).await;
        // Closing with the request unread would reset the connection, which can discard
        // the answer before the client reads it; read a little of it first, bounded.
        let mut sink = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + bounded;
        for _ in 0..16 {
            match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// The refusal beyond `server.max_connections`: 503 `temporarily_unavailable` with
/// `Retry-After`, written before any request is read, so on the raw connection rather
/// than through the proxy's error writer; same error, headers and a fresh request id.
fn refusal_response() -> Vec<u8> {
    let err = crate::error::OAuthError::overloaded("too many open connections; retry shortly");
    let body = err.body();
    let mut out = format!(
        "HTTP/1.1 {} Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nRetry-After: {}\r\nX-Request-Id: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        err.http_status(),
        err.retry_after().unwrap_or(1),
        crate::telemetry::new_request_id(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Where a connection is between requests, with the deadline that applies to reads.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's first byte: at the deadline the connection ends as if
    /// the client had closed it (pingora then closes quietly).
    Idle(Instant),
    /// Reading a request's head or body: at the deadline reads fail.
    Request(Instant),
    /// The request is read; reads now only notice a client closing or pipelining.
    Answering,
    /// A deadline passed; every later read fails at once.
    Expired,
}

/// What a connection shares with the proxy handling its requests.
#[derive(Debug)]
pub struct Conn {
    limits: Arc<Limits>,
    state: Mutex<Phase>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Conn {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts one request in flight until dropped (the proxy's per-request context holds it,
/// so a request that is cancelled still stops counting).
pub struct InFlight(Arc<Limits>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn conn_of(session: &pingora::proxy::Session) -> Option<&Conn> {
    let stream = session.as_downstream().stream()?;
    stream.as_any().downcast_ref::<Timed>().map(|t| &*t.conn)
}

/// A request's head was read: its body (if any) is due by the deadline that started
/// with its first byte. Also opts the connection into HTTP/1.1 pipelining: without it,
/// pingora's `HttpSession::reuse` sees the next request's bytes already read ("bytes
/// overread on request, disallowing reuse") and closes the connection after answering
/// the first with keep-alive, so the second request is never answered.
pub fn request_started(session: &mut pingora::proxy::Session) -> Option<InFlight> {
    session.as_downstream_mut().set_pipelining_enabled(true);
    let conn = conn_of(session)?;
    let mut p = conn.phase();
    // The head came whole with an earlier read (pipelined): its deadline starts now.
    if let Phase::Idle(_) | Phase::Answering = *p {
        *p = Phase::Request(Instant::now() + conn.limits.read_timeout);
    }
    conn.limits.in_flight.fetch_add(1, Ordering::AcqRel);
    Some(InFlight(conn.limits.clone()))
}

/// The request body is complete: later reads (pingora watching for the client closing
/// while it waits on the IdP) have no deadline.
pub fn request_read(session: &pingora::proxy::Session) {
    if let Some(conn) = conn_of(session) {
        let mut p = conn.phase();
        if let Phase::Request(_) = *p {
            *p = Phase::Answering;
        }
    }
}

/// The response is complete: the idle timeout runs until the next request.
pub fn request_done(session: &pingora::proxy::Session) {
    if let Some(conn) = conn_of(session) {
        let mut p = conn.phase();
        if !matches!(*p, Phase::Expired) {
            *p = Phase::Idle(Instant::now() + conn.limits.idle_timeout);
        }
    }
}

/// An accepted client stream whose reads end at the connection's current deadline.
pub struct Timed {
    inner: Stream,
    conn: Arc<Conn>,
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
}

impl Timed {
    fn new(inner: Stream, conn: Arc<Conn>) -> Self {
        Timed {
            inner,
            conn,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timer_at: None,
        }
    }
}

impl std::fmt::Debug for Timed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timed").field("inner", &self.inner).finish()
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "server.read_timeout_ms passed",
    )
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let phase = *this.conn.phase();
        let deadline = match phase {
            Phase::Expired => return Poll::Ready(Err(timed_out())),
            Phase::Idle(d) | Phase::Request(d) => Some(d),
            Phase::Answering => None,
        };
        // Checked before reading too: a client trickling bytes never leaves a read
        // pending, and must still be cut off.
        if let Some(d) = deadline
            && Instant::now() >= d
        {
            return Poll::Ready(expire(&this.conn, phase));
        }
        let before = buf.filled().len();
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            if r.is_ok() && buf.filled().len() > before {
                let mut p = this.conn.phase();
                if let Phase::Idle(_) = *p {
                    *p = Phase::Request(Instant::now() + this.conn.limits.read_timeout);
                }
            }
            return Poll::Ready(r);
        }
        let Some(d) = deadline else {
            return Poll::Pending;
        };
        if this.timer_at != Some(d) {
            this.timer.as_mut().reset(d.into());
            this.timer_at = Some(d);
        }
        ready!(this.timer.as_mut().poll(cx));
        Poll::Ready(expire(&this.conn, phase))
    }
}

/// An idle connection ends like a client close (pingora closes it without a word); a
/// request that took too long fails its read (pingora closes, or the token route answers
/// 400 and closes).
fn expire(conn: &Conn, phase: Phase) -> std::io::Result<()> {
    *conn.phase() = Phase::Expired;
    match phase {
        Phase::Idle(_) => Ok(()),
        _ => Err(timed_out()),
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

use std::future::Future;

// The rest of pingora's `IO` is the wrapped stream's.
#[async_trait]
impl Shutdown for Timed {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Timed {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Timed {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Timed {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Timed {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Timed {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Timed {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
