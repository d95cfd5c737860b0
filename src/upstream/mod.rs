//! The sidecar's own calls to the IdP (token route, JWKS, discovery) through pingora's
//! connector, so they share its connection pool logic and keep-alive.

mod encoding;
pub use encoding::{decodable_accept_encoding, decode_content};

use bytes::{Bytes, BytesMut};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::{HttpSession, http_req_header_to_wire};
use pingora::upstreams::peer::{HttpPeer, Peer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the IdP at {addr}: {detail}")]
    Connect { addr: SocketAddr, detail: String },
    #[error("the IdP did not answer within {0:?}")]
    Timeout(Duration),
    #[error("exchange with the IdP failed: {0}")]
    Io(String),
    #[error("the IdP's response body is over {0} bytes")]
    TooLarge(usize),
}

/// A complete upstream response: header as received, body de-framed.
pub struct UpstreamResponse {
    pub header: ResponseHeader,
    pub body: Bytes,
}

/// Calls one upstream address with pooled HTTP/1.1 connections.
pub struct UpstreamClient {
    transport: TransportConnector,
    peer: HttpPeer,
    addr: SocketAddr,
    timeout: Duration,
    io_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(addr: SocketAddr, connect_timeout: Duration, timeout: Duration) -> Self {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(connect_timeout);
        peer.options.total_connection_timeout = Some(connect_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        UpstreamClient {
            transport: TransportConnector::new(Some(ConnectorOptions::new(128))),
            peer,
            addr,
            timeout,
            io_timeout: timeout,
        }
    }

    /// Sends one request and reads the whole response, at most `max_body` bytes of body,
    /// within the configured total timeout. A pooled connection that turns out to be
    /// closed is retried on a fresh one: always when the request could not be written,
    /// and when it was written but no answer came only if `replayable`, since the IdP
    /// may have acted on it (RFC 9110 §9.2.2): a second authorization code or rotated
    /// refresh token would be refused, and may revoke what the first one issued.
    pub async fn send(
        &self,
        req: &RequestHeader,
        body: &Bytes,
        max_body: usize,
        replayable: bool,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let fut = async {
            // Retry only what pingora itself deems safe: a pooled connection found closed
            // before any response byte. Each retry takes a connection from the pool
            // again, which may be stale too, hence a small cap rather than one retry.
            let mut tries = 0;
            loop {
                tries += 1;
                match self.attempt(req, body, max_body, replayable).await {
                    Err((true, _)) if tries < 4 => continue,
                    other => return other.map_err(|(_, e)| e),
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// `Err((retryable, e))`: retryable when a reused connection failed before the
    /// request left, or before any response byte if `replayable`.
    async fn attempt(
        &self,
        req: &RequestHeader,
        body: &Bytes,
        max_body: usize,
        replayable: bool,
    ) -> Result<UpstreamResponse, (bool, UpstreamError)> {
        let (mut stream, reused) = self.transport.get_stream(&self.peer).await.map_err(|e| {
            (
                false,
                UpstreamError::Connect {
                    addr: self.addr,
                    detail: e.etype().as_str().to_owned(),
                },
            )
        })?;
        // Head and body leave in one write, so one segment crosses the network: pingora's
        // client flushes the head on its own, which costs a second send and wakes the IdP
        // twice (about 3 % of a token's CPU on loopback).
        //
        // The session below never saw the request, so it cannot apply the rules that
        // depend on it (no body after HEAD, `Connection: close`, upgrades); callers send
        // GET or POST with hop-by-hop headers removed.
        debug_assert!(req.method != "HEAD" && !req.headers.contains_key("connection"));
        let Some(mut wire) = http_req_header_to_wire(req) else {
            return Err((false, UpstreamError::Io("unsendable request head".into())));
        };
        wire.extend_from_slice(body);
        let written = async {
            stream.write_all(&wire).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.io_timeout, written).await {
            Ok(Ok(())) => {}
            // A pooled connection the IdP closed meanwhile fails here, before it read
            // anything of this request, so a retry on another connection is safe.
            Ok(Err(e)) => {
                return Err((
                    reused,
                    UpstreamError::Io(format!("WriteError ({:?})", e.kind())),
                ));
            }
            Err(_) => return Err((false, UpstreamError::Timeout(self.timeout))),
        }
        let mut session = HttpSession::new_with_options(stream, &self.peer);
        session.read_timeout = Some(self.io_timeout);
        // Only the error's kind: pingora's error text can quote the raw response buffer,
        // which holds the IdP's token.
        // A read that timed out is the IdP not answering in time, whichever of the read
        // timeout and the total one fires first (both are `upstream.timeout_ms`): the
        // client gets the same 504 either way.
        let timeout = self.timeout;
        let io = move |e: Box<pingora::Error>| match e.etype() {
            pingora::ErrorType::ReadTimedout | pingora::ErrorType::WriteTimedout => {
                UpstreamError::Timeout(timeout)
            }
            _ => UpstreamError::Io(format!("{} ({:?})", e.etype().as_str(), e.esource())),
        };
        if let Err(mut e) = read_final_header(&mut session).await {
            e.retry.decide_reuse(reused);
            return Err((replayable && e.retry(), io(e)));
        }
        let Some(header) = session.resp_header().cloned() else {
            return Err((false, UpstreamError::Io("no response header".into())));
        };
        let mut buf = BytesMut::new();
        loop {
            match session.read_body_bytes().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > max_body {
                        return Err((false, UpstreamError::TooLarge(max_body)));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err((false, io(e))),
            }
        }
        session.respect_keepalive();
        if let Some(stream) = session.reuse().await {
            self.transport.release_stream(
                stream,
                self.peer.reuse_hash(),
                self.peer.options.idle_timeout,
            );
        }
        Ok(UpstreamResponse {
            header,
            body: buf.freeze(),
        })
    }
}

async fn read_final_header(session: &mut HttpSession) -> pingora::Result<()> {
    loop {
        session.read_response().await?;
        let informational = session
            .resp_header()
            .is_some_and(|h| h.status.is_informational());
        if !informational {
            return Ok(());
        }
    }
}

/// A GET request for `path_and_query` with a Host header.
pub fn get_request(path_and_query: &str, authority: &str) -> pingora::Result<RequestHeader> {
    let mut req = RequestHeader::build("GET", path_and_query.as_bytes(), Some(3))?;
    req.insert_header("Host", authority)?;
    req.insert_header("Accept", "application/json")?;
    req.insert_header(
        "User-Agent",
        concat!("tokenhook/", env!("CARGO_PKG_VERSION")),
    )?;
    Ok(req)
}

/// Fetches the upstream JWKS for the verifier and, unless `upstream.issuer` pins it, the
/// `issuer` of the IdP's discovery document, through the same client when both live at
/// the same address. Both documents are capped at [`MAX_JWKS_BYTES`], not at
/// `upstream.max_body_bytes`: they are parsed on every refresh.
pub struct JwksFetcher {
    pub client: UpstreamClient,
    pub path: String,
    pub authority: String,
    pub max_body: usize,
    pub discovery: Option<Discovery>,
}

/// Where the IdP's discovery document is: `client` is None when it is the JWKS client.
pub struct Discovery {
    pub client: Option<UpstreamClient>,
    pub path: String,
    pub authority: String,
}

impl JwksFetcher {
    pub fn new(up: &crate::config::UpstreamConfig) -> Self {
        let jwks_client = UpstreamClient::new(up.jwks_address, up.connect_timeout, up.timeout);
        let discovery = up.issuer.is_none().then(|| Discovery {
            client: (up.jwks_address != up.address)
                .then(|| UpstreamClient::new(up.address, up.connect_timeout, up.timeout)),
            path: up.discovery_path.clone(),
            authority: up.authority.clone(),
        });
        JwksFetcher {
            client: jwks_client,
            path: match up.jwks_url.query() {
                Some(q) => format!("{}?{q}", up.jwks_url.path()),
                None => up.jwks_url.path().to_owned(),
            },
            authority: crate::config::authority(&up.jwks_url),
            max_body: MAX_JWKS_BYTES,
            discovery,
        }
    }

    /// GETs `path` and returns the decoded body of a 200 answer.
    async fn get(
        &self,
        client: &UpstreamClient,
        path: &str,
        authority: &str,
        what: &str,
    ) -> Result<Bytes, String> {
        let req = get_request(path, authority).map_err(|e| e.to_string())?;
        let resp = client
            .send(&req, &Bytes::new(), self.max_body, true)
            .await
            .map_err(|e| e.to_string())?;
        if resp.header.status != 200 {
            return Err(format!(
                "{what} endpoint answered {}",
                resp.header.status.as_u16()
            ));
        }
        decode_content(&resp.header, resp.body, self.max_body).map_err(|e| e.to_string())
    }
}

use crate::token::verify::MAX_JWKS_BYTES;

#[async_trait::async_trait]
impl crate::token::verify::JwksSource for JwksFetcher {
    async fn fetch(&self) -> Result<Bytes, String> {
        self.get(&self.client, &self.path, &self.authority, "JWKS")
            .await
    }

    async fn issuer(&self) -> Result<String, String> {
        let Some(d) = &self.discovery else {
            return Err("upstream.issuer is configured; discovery not used".into());
        };
        let client = d.client.as_ref().unwrap_or(&self.client);
        let body = self.get(client, &d.path, &d.authority, "discovery").await?;
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("discovery document is not JSON: {e}"))?;
        match doc.get("issuer").and_then(serde_json::Value::as_str) {
            Some(iss) if !iss.is_empty() => Ok(iss.to_owned()),
            _ => Err(format!(
                "discovery document at {} has no \"issuer\"",
                d.path
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Reads one request (head and Content-Length body); `None` once the client closed.
    async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    return Some(buf[end + 4..end + 4 + len].to_vec());
                }
            }
            let n = sock.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn post(body: &str) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/token", None).unwrap();
        req.insert_header("Host", "idp").unwrap();
        req.insert_header("Content-Length", body.len()).unwrap();
        req
    }

    // The IdP answers a connection's first request and silently drops the connection on
    // its second, as a server whose keep-alive timer fired would: the client must send
    // the request again, whole, on a new connection.
    #[tokio::test]
    async fn a_pooled_connection_the_idp_dropped_is_retried_only_when_replayable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, b) = (connections.clone(), bodies.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                tokio::spawn(async move {
                    let Some(body) = read_request(&mut sock).await else {
                        return;
                    };
                    b.lock().unwrap().push(String::from_utf8(body).unwrap());
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    sock.write_all(answer).await.unwrap();
                    // The second request on this connection is read and never answered.
                    if let Some(body) = read_request(&mut sock).await {
                        b.lock().unwrap().push(String::from_utf8(body).unwrap());
                    }
                });
            }
        });
        let client = UpstreamClient::new(addr, Duration::from_secs(2), Duration::from_secs(5));
        let send = |body: &'static str, replayable: bool| {
            let (client, req) = (&client, post(body));
            async move {
                client
                    .send(&req, &Bytes::from(body), 1024, replayable)
                    .await
            }
        };
        for body in ["grant_type=one", "grant_type=two"] {
            let resp = send(body, true).await.unwrap();
            assert_eq!(resp.header.status, 200);
            assert_eq!(&resp.body[..], b"ok");
        }
        // "two" went out on the pooled connection, was dropped, and went out again whole
        // on a second one.
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            *bodies.lock().unwrap(),
            ["grant_type=one", "grant_type=two", "grant_type=two"]
        );
        // A request that must not be replayed fails instead, sent once.
        assert!(send("grant_type=three", false).await.is_err());
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(bodies.lock().unwrap()[3..], ["grant_type=three".to_owned()]);
    }
}
