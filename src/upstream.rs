//! The sidecar's own calls to the IdP (token route, JWKS, discovery) through pingora's
//! connector, so they share its connection pool logic and keep-alive.

use bytes::{Bytes, BytesMut};
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

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

impl UpstreamError {
    /// Errors where the IdP never produced an answer, as opposed to a broken one.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::Timeout(_)
        )
    }
}

/// A complete upstream response: header as received, body de-framed.
pub struct UpstreamResponse {
    pub header: ResponseHeader,
    pub body: Bytes,
}

/// Calls one upstream address with pooled HTTP/1.1 connections.
pub struct UpstreamClient {
    connector: Connector,
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
            connector: Connector::new(Some(ConnectorOptions::new(128))),
            peer,
            addr,
            timeout,
            io_timeout: timeout,
        }
    }

    /// Sends one request and reads the whole response, at most `max_body` bytes of body,
    /// within the configured total timeout. A pooled connection that turns out to be
    /// closed is retried once on a fresh one, as pingora's proxy does.
    pub async fn send(
        &self,
        req: &RequestHeader,
        body: &Bytes,
        max_body: usize,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let fut = async {
            // Retry only what pingora itself deems safe: a pooled connection found closed
            // before any response byte. Each retry takes a connection from the pool
            // again, which may be stale too, hence a small cap rather than one retry.
            let mut tries = 0;
            loop {
                tries += 1;
                match self.attempt(req, body, max_body).await {
                    Err((true, _)) if tries < 4 => continue,
                    other => return other.map_err(|(_, e)| e),
                }
            }
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    /// `Err((retryable, e))`: retryable when a reused connection failed before any
    /// response byte.
    async fn attempt(
        &self,
        req: &RequestHeader,
        body: &Bytes,
        max_body: usize,
    ) -> Result<UpstreamResponse, (bool, UpstreamError)> {
        let (mut session, reused) =
            self.connector
                .get_http_session(&self.peer)
                .await
                .map_err(|e| {
                    (
                        false,
                        UpstreamError::Connect {
                            addr: self.addr,
                            detail: e.etype().as_str().to_owned(),
                        },
                    )
                })?;
        session.set_read_timeout(Some(self.io_timeout));
        session.set_write_timeout(Some(self.io_timeout));
        // Only the error's kind: pingora's error text can quote the raw response buffer,
        // which holds the IdP's token.
        let io = |e: Box<pingora::Error>| {
            UpstreamError::Io(format!("{} ({:?})", e.etype().as_str(), e.esource()))
        };
        let sent = async {
            session.write_request_header(Box::new(req.clone())).await?;
            if !body.is_empty() {
                session.write_request_body(body.clone(), true).await?;
            }
            session.finish_request_body().await?;
            read_final_header(&mut session).await
        }
        .await;
        if let Err(mut e) = sent {
            e.retry.decide_reuse(reused);
            return Err((e.retry(), io(e)));
        }
        let Some(header) = session.response_header().cloned() else {
            return Err((false, UpstreamError::Io("no response header".into())));
        };
        let mut buf = BytesMut::new();
        loop {
            match session.read_response_body().await {
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
        self.connector
            .release_http_session(session, &self.peer, self.peer.options.idle_timeout)
            .await;
        Ok(UpstreamResponse {
            header,
            body: buf.freeze(),
        })
    }
}

async fn read_final_header(session: &mut HttpSession) -> pingora::Result<()> {
    loop {
        session.read_response_header().await?;
        let informational = session
            .response_header()
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

/// Fetches the upstream JWKS for the verifier.
pub struct JwksFetcher {
    pub client: UpstreamClient,
    pub path: String,
    pub authority: String,
    pub max_body: usize,
}

#[async_trait::async_trait]
impl crate::token::verify::JwksSource for JwksFetcher {
    async fn fetch(&self) -> Result<Bytes, String> {
        let req = get_request(&self.path, &self.authority).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .send(&req, &Bytes::new(), self.max_body)
            .await
            .map_err(|e| e.to_string())?;
        if resp.header.status != 200 {
            return Err(format!(
                "JWKS endpoint answered {}",
                resp.header.status.as_u16()
            ));
        }
        crate::proxy::body::decode_content(&resp.header, resp.body, self.max_body)
            .map_err(|e| e.to_string())
    }
}
