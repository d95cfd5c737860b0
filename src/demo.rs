//! `tokenhook demo`: a small client_credentials IdP and the sidecar in front of it, both
//! in this process on loopback, so a newcomer sees an enriched token with nothing else
//! installed.

use crate::app::App;
use crate::config::Config;
use crate::keys::SigningKey;
use async_trait::async_trait;
use jsonwebtoken::Algorithm;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

const SEED_HOOK: &str = include_str!("../hooks/seed.js");
pub const DEMO_CLIENT: &str = "demo-client";
pub const DEMO_SECRET: &str = "demo-secret";
const DEMO_SCOPES: &[&str] = &["read:data", "write:data"];
const DEMO_AUDIENCE: &str = "https://api.example.com";

/// The demo IdP: issues RS256 client_credentials JWTs carrying the client's granted
/// scopes even when none are requested (as Auth0 does), and serves its JWKS.
pub struct DemoIdp {
    key: SigningKey,
    issuer: String,
    jwks: Vec<u8>,
}

impl DemoIdp {
    pub fn new(issuer: String) -> Result<Self, String> {
        let pem = crate::keys::generate_pem(Algorithm::RS256)?;
        let key = SigningKey::from_pem(
            pem.as_bytes(),
            std::path::Path::new("demo-idp"),
            Algorithm::RS256,
        )
        .map_err(|e| e.to_string())?;
        let jwks = serde_json::to_vec(&json!({"keys": [key.jwk]})).map_err(|e| e.to_string())?;
        Ok(DemoIdp { key, issuer, jwks })
    }

    fn token(&self, header: &pingora::http::RequestHeader, body: &[u8]) -> (u16, Value) {
        let err = |status, code: &str, desc: &str| {
            (status, json!({"error": code, "error_description": desc}))
        };
        let form: std::collections::HashMap<String, String> =
            form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return err(
                400,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let basic = header
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
        let (id, secret) = basic.unwrap_or_else(|| {
            (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            )
        });
        if id != DEMO_CLIENT || secret != DEMO_SECRET {
            return err(401, "invalid_client", "client authentication failed");
        }
        let granted: Vec<&str> = match form.get("scope") {
            None => DEMO_SCOPES.to_vec(),
            Some(s) => {
                let asked: Vec<&str> = s.split_whitespace().collect();
                if let Some(bad) = asked.iter().find(|s| !DEMO_SCOPES.contains(s)) {
                    return err(
                        400,
                        "invalid_scope",
                        &format!("scope {bad} is not granted to this client"),
                    );
                }
                asked
            }
        };
        let now = crate::app::now_secs();
        let jti = format!("{:032x}", rand::random::<u128>());
        let payload = json!({
            "iss": self.issuer, "sub": format!("{id}@clients"), "aud": form.get("audience").map(String::as_str).unwrap_or(DEMO_AUDIENCE),
            "iat": now, "exp": now + 3600, "scope": granted.join(" "), "gty": "client-credentials",
            "azp": id, "jti": jti,
        });
        let Value::Object(map) = payload else {
            return err(500, "server_error", "cannot build token");
        };
        match crate::token::sign(&self.key, Some("at+jwt"), &map) {
            Ok(t) => (
                200,
                json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600, "scope": granted.join(" ")}),
            ),
            Err(_) => err(500, "server_error", "signing failed"),
        }
    }
}

#[async_trait]
impl ServeHttp for DemoIdp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > 64 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let req = session.req_header().clone();
        let (status, content_type, out) = match (req.method.as_str(), req.uri.path()) {
            ("GET", "/.well-known/jwks.json") => (200, "application/json", self.jwks.clone()),
            ("GET", "/.well-known/openid-configuration") => {
                let doc = json!({"issuer": self.issuer, "token_endpoint": format!("{}/oauth/token", self.issuer),
                    "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]});
                (200, "application/json", doc.to_string().into_bytes())
            }
            ("POST", "/oauth/token") => {
                let (s, v) = self.token(&req, &body);
                (s, "application/json", v.to_string().into_bytes())
            }
            _ => (
                404,
                "application/json",
                br#"{"error":"not_found"}"#.to_vec(),
            ),
        };
        http::Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", out.len())
            .header("Cache-Control", "no-store")
            .body(out)
            .unwrap_or_default()
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Writes the demo's config, key and hook to a fresh temporary folder.
fn prepare(listen: SocketAddr, admin: SocketAddr, idp: &str) -> Result<std::path::PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("tokenhook-demo-{}", std::process::id()));
    let hooks = dir.join("hooks");
    std::fs::create_dir_all(&hooks)
        .map_err(|e| format!("cannot create {}: {e}", hooks.display()))?;
    let write = |p: std::path::PathBuf, s: &str| {
        std::fs::write(&p, s).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write(hooks.join("seed.js"), SEED_HOOK)?;
    write(hooks.join("hooks.toml"), "enabled = \"seed\"\n")?;
    let key = dir.join("signing.pem");
    let _ = std::fs::remove_file(&key);
    let pem = crate::keys::generate_pem(Algorithm::RS256)?;
    crate::keys::write_private_key(&key, &pem, true).map_err(|e| e.to_string())?;
    let config = format!(
        r#"[server]
listen = "{listen}"
admin_listen = "{admin}"
public_url = "http://{listen}"

[upstream]
url = "{idp}"
jwks_url = "{idp}/.well-known/jwks.json"

[signing]
keys = ["signing.pem"]

[hooks]
dir = "hooks"

[clients."{DEMO_CLIENT}"]
name = "Demo client"
tenant = "demo"
metadata = {{ region = "eu" }}
"#
    );
    write(dir.join("tokenhook.toml"), &config)?;
    Ok(dir)
}

fn lines(errors: &[crate::config::ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn run(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    crate::telemetry::init_default();
    if let Err(errors) = crate::server::check_listeners(listen, admin) {
        eprintln!("demo: {}", lines(&errors));
        return ExitCode::from(crate::server::EXIT_UNAVAILABLE);
    }
    let started = (|| -> Result<(Arc<App>, DemoIdp, u16, std::path::PathBuf), String> {
        let idp_port = free_port().map_err(|e| format!("no free port for the demo IdP: {e}"))?;
        let idp_url = format!("http://127.0.0.1:{idp_port}");
        let dir = prepare(listen, admin, &idp_url)?;
        let config = Config::load(&dir.join("tokenhook.toml"), std::iter::empty())
            .map_err(|e| e.to_string())?;
        let app = App::build(config, &|_| None).map_err(|es| lines(&es))?;
        Ok((Arc::new(app), DemoIdp::new(idp_url)?, idp_port, dir))
    })();
    let (app, idp, idp_port, dir) = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut idp_service = Service::new("demo idp".to_owned(), idp);
    idp_service.add_tcp(&format!("127.0.0.1:{idp_port}"));
    idp_service.threads = Some(1);
    let decode = r#"python3 -c 'import sys,json,base64; t=json.load(sys.stdin)["access_token"].split(".")[1]; print(json.dumps(json.loads(base64.urlsafe_b64decode(t+"="*(-len(t)%4))),indent=2))'"#;
    println!(
        r#"tokenhook demo
  demo IdP   http://127.0.0.1:{idp_port}   (client "{DEMO_CLIENT}", secret "{DEMO_SECRET}")
  sidecar    http://{listen}   (hook "seed": adds https://foo.com/claim and scope "extra")
  admin      http://{admin}/metrics  /healthz  /readyz
  files      {dir}

Get a token through the sidecar (same request you would send to the IdP):
  curl -s -u {DEMO_CLIENT}:{DEMO_SECRET} -d grant_type=client_credentials http://{listen}/oauth/token

Read its claims: the payload carries "https://foo.com/claim": "bar" and scope "read:data write:data extra":
  curl -s -u {DEMO_CLIENT}:{DEMO_SECRET} -d grant_type=client_credentials http://{listen}/oauth/token | {decode}

Resource servers verify it against the sidecar's keys:
  curl -s http://{listen}/.well-known/jwks.json

Stop with Ctrl-C."#,
        dir = dir.display()
    );
    crate::server::run(app, vec![Box::new(idp_service)]);
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}
