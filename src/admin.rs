//! The admin listener: `/healthz`, `/readyz`, `/metrics`. Kept off the client port so
//! probes and scrapes never mix with token traffic.

use crate::app::App;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub app: Arc<App>,
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        // Drain any body so the connection can be reused; admin requests carry none.
        let _ = session.read_request_body().await;
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/healthz" | "/livez" => response(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                if self.app.ready() {
                    response(200, "text/plain", b"ready\n".to_vec())
                } else {
                    response(503, "text/plain", b"not ready\n".to_vec())
                }
            }
            "/metrics" => {
                self.app.update_scrape_gauges();
                response(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.app.metrics.render(),
                )
            }
            _ => response(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
