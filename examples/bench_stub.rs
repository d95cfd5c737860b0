//! A deliberately fast stub IdP for `bench/run.sh`: one pre-signed RS256 token response,
//! its JWKS, and a small JSON answer for any other path; keep-alive and TCP_NODELAY, so
//! the sidecar, not the IdP, is what a benchmark measures.
//!
//! Usage: `bench_stub [PORT]` (0 or nothing = ephemeral); prints `LISTENING <port>`.

use jsonwebtoken::Algorithm;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn response(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let pem = tokenhook::keys::generate_pem(Algorithm::RS256).map_err(std::io::Error::other)?;
    let key =
        tokenhook::keys::SigningKey::from_pem(pem.as_bytes(), Path::new("stub"), Algorithm::RS256)
            .map_err(std::io::Error::other)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": format!("http://127.0.0.1:{port}/"), "sub": "svc-basic@clients", "aud": "https://api.example.com",
        "iat": now, "exp": now + 86_400, "scope": "read:data write:data", "azp": "svc-basic",
        "gty": "client-credentials", "jti": "bench-token"
    });
    let token = tokenhook::token::sign(&key, Some("at+jwt"), claims.as_object().expect("object"))
        .map_err(std::io::Error::other)?;
    let token_resp = response(
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 86400, "scope": "read:data write:data"})
            .to_string()
            .as_bytes(),
    );
    let jwks_resp = response(
        serde_json::json!({"keys": [key.jwk]})
            .to_string()
            .as_bytes(),
    );
    let other_resp = response(br#"{"ok":true}"#);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("LISTENING {}", listener.local_addr()?.port());
        let shared = std::sync::Arc::new((token_resp, jwks_resp, other_resp));
        loop {
            let (mut sock, _) = listener.accept().await?;
            let _ = sock.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    // Read one request head, then its Content-Length body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let close = head.contains("connection: close");
                    buf.drain(..head_end + len);
                    let out = if path.starts_with("/oauth/token") {
                        &shared.0
                    } else if path.starts_with("/.well-known/jwks.json") {
                        &shared.1
                    } else {
                        &shared.2
                    };
                    if sock.write_all(out).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    })
}
