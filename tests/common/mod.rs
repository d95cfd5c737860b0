//! Test harness: a real IdP (oidc-provider from npm), stub upstreams, and the tokenhook
//! binary, all on 127.0.0.1 ephemeral ports, killed when dropped.
#![allow(dead_code)]

pub mod fault;
pub mod service;
#[allow(unused_imports)] // Only tests/faults.rs uses them.
pub use fault::{Fault, FaultIdp};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenhook");

/// A client of the test IdP (`tests/idp/server.mjs`).
#[derive(Debug, Clone, Copy)]
pub struct TestClient {
    pub id: &'static str,
    pub secret: &'static str,
}

/// Authenticates with `client_secret_basic`; registered in the sidecar's test config
/// (`[clients."svc-basic"]`, name "Billing sync", tenant "acme").
pub const BASIC: TestClient = TestClient {
    id: "svc-basic",
    secret: "svc-basic-secret-123",
};
/// Authenticates with `client_secret_post`; not in the sidecar's client registry.
pub const POST: TestClient = TestClient {
    id: "svc-post",
    secret: "svc-post-secret-456",
};
/// Authenticates with `client_secret_basic`; used by the import tests only.
pub const LEGACY: TestClient = TestClient {
    id: "svc-legacy",
    secret: "svc-legacy-secret-789",
};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// oidc-provider, started from `tests/idp/server.mjs`. Its stdin stays open for its
/// lifetime: the script exits when it closes, so it never outlives the test.
pub struct Idp {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
}

impl Idp {
    pub fn start() -> Idp {
        let dir = repo().join("tests/idp");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test IdP is not installed: run `npm ci --prefix tests/idp` first"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected IdP output {line:?}"));
        Idp {
            child,
            _stdin: stdin,
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `tokenhook serve`.
pub struct Sidecar {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin: u16,
    pub stderr_path: PathBuf,
}

pub struct SidecarOpts {
    upstream: String,
    /// `NAME.js` → source; with `enabled` naming one of them.
    hooks: Vec<(String, String)>,
    enabled: Option<String>,
    extra_config: String,
    algorithm: Algorithm,
    env: Vec<(String, String)>,
    /// `RUST_LOG` for the sidecar. Defaults to `info`.
    log_level: Option<String>,
    /// Lays out the hooks folder itself instead (e.g. Kubernetes-style symlinks).
    prepare: Option<fn(&Path)>,
    /// Copies this folder's files as the hooks folder instead (e.g. `hooks/flow`).
    folder: Option<PathBuf>,
    /// Replaces the `[signing]` keys lines; `setup` writes the files it names.
    signing: Option<(String, Setup)>,
}

/// Writes files into the sidecar's folder before it starts.
pub type Setup = Box<dyn Fn(&Path)>;

impl SidecarOpts {
    pub fn new(upstream: &str) -> Self {
        SidecarOpts {
            upstream: upstream.to_owned(),
            hooks: vec![(
                "seed.js".into(),
                std::fs::read_to_string(repo().join("hooks/seed.js")).unwrap(),
            )],
            enabled: Some("seed".into()),
            extra_config: String::new(),
            algorithm: Algorithm::RS256,
            env: Vec::new(),
            log_level: None,
            prepare: None,
            folder: None,
            signing: None,
        }
    }

    /// Serves a copy of `dir`'s files (not its subfolders) as the hooks folder.
    pub fn hooks_folder(mut self, dir: &Path) -> Self {
        self.folder = Some(dir.to_owned());
        self
    }

    pub fn hook(mut self, name: &str, source: &str) -> Self {
        self.hooks.push((format!("{name}.js"), source.to_owned()));
        self.enabled = Some(name.to_owned());
        self
    }

    /// An environment variable for the sidecar (e.g. a `TOKENHOOK_*` override).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// TOML appended to the generated config.
    pub fn config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self
    }

    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        self.algorithm = alg;
        self
    }

    /// Lays out the hooks folder itself (e.g. Kubernetes-style symlinks).
    pub fn layout(mut self, prepare: fn(&Path)) -> Self {
        self.prepare = Some(prepare);
        self
    }

    /// The `[signing]` keys lines, and what writes the files they name.
    pub fn signing(mut self, toml: &str, setup: Setup) -> Self {
        self.signing = Some((toml.to_owned(), setup));
        self
    }

    /// `RUST_LOG` for the sidecar (default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = Some(level.to_owned());
        self
    }
}

impl SidecarOpts {
    fn config_text(&self, port: u16, admin: u16, keys_toml: &str) -> String {
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
public_url = "http://127.0.0.1:{port}"
threads = 2
grace_period_seconds = 0
drain_delay_seconds = 0

[upstream]
url = "{up}"
jwks_min_refresh_seconds = 0

[signing]
{keys_toml}
algorithm = "{alg:?}"
reload_interval_ms = 100

[hooks]
dir = "hooks"
workers = 2

[clients."svc-basic"]
name = "Billing sync"
tenant = "acme"
metadata = {{ region = "eu" }}
{extra}
"#,
            up = self.upstream,
            alg = self.algorithm,
            extra = self.extra_config
        )
    }
}

impl Sidecar {
    pub fn start(opts: SidecarOpts) -> Sidecar {
        Self::launch(opts, "/readyz")
    }

    /// Starts it and waits only until it is alive (`/healthz`), not ready: for an IdP
    /// that is down or broken at start.
    pub fn start_unready(opts: SidecarOpts) -> Sidecar {
        Self::launch(opts, "/healthz")
    }

    /// Serves `config` (in `dir`, a config the test wrote) until ready. The listen
    /// ports are set through `TOKENHOOK_SERVER_*`, so the file is served as written;
    /// `env` is added (hook secrets, say).
    pub fn serve_config(dir: tempfile::TempDir, config: &Path, env: &[(&str, &str)]) -> Sidecar {
        Self::on_free_ports(dir, "/readyz", |port, admin, stderr| {
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(config)
                .env("RUST_LOG", "info")
                .env("TOKENHOOK_SERVER_LISTEN", format!("127.0.0.1:{port}"))
                .env(
                    "TOKENHOOK_SERVER_ADMIN_LISTEN",
                    format!("127.0.0.1:{admin}"),
                )
                .env(
                    "TOKENHOOK_SERVER_PUBLIC_URL",
                    format!("http://127.0.0.1:{port}"),
                )
                .env("TOKENHOOK_SERVER_GRACE_PERIOD_SECONDS", "0")
                .env("TOKENHOOK_SERVER_DRAIN_DELAY_SECONDS", "0")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap()
        })
    }

    /// Starts `spawn(port, admin, stderr)` on two ports picked free and waits until
    /// `probe` answers. A port picked free can be taken by another test before the
    /// sidecar binds it; `serve` then exits 69 naming the key, and it is started again
    /// on other ports.
    fn on_free_ports(
        mut dir: tempfile::TempDir,
        probe: &str,
        spawn: impl Fn(u16, u16, std::fs::File) -> Child,
    ) -> Sidecar {
        let stderr_path = dir.path().join("stderr.log");
        for _ in 0..5 {
            let (port, admin) = (free_port(), free_port());
            let child = spawn(port, admin, std::fs::File::create(&stderr_path).unwrap());
            let mut s = Sidecar {
                child,
                dir,
                port,
                admin,
                stderr_path: stderr_path.clone(),
            };
            match s.wait_for(probe) {
                Ok(()) => return s,
                Err(69) => {
                    dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
                    continue;
                }
                Err(code) => panic!("sidecar exited with {code}; stderr:\n{}", s.logs()),
            }
        }
        panic!("no free ports for the sidecar after 5 tries");
    }

    /// Starts the sidecar and waits until `probe` on the admin port answers 200.
    fn launch(opts: SidecarOpts, probe: &str) -> Sidecar {
        let dir = tempfile::tempdir().unwrap();
        let hooks = dir.path().join("hooks");
        std::fs::create_dir(&hooks).unwrap();
        if let Some(prepare) = opts.prepare {
            prepare(&hooks);
        } else if let Some(from) = &opts.folder {
            copy_files(from, &hooks);
        } else {
            for (file, src) in &opts.hooks {
                std::fs::write(hooks.join(file), src).unwrap();
            }
            if let Some(e) = &opts.enabled {
                std::fs::write(hooks.join("hooks.toml"), format!("enabled = \"{e}\"\n")).unwrap();
            }
        }
        let keys_toml = match &opts.signing {
            Some((toml, setup)) => {
                setup(dir.path());
                toml.clone()
            }
            None => {
                let pem = tokenhook::keys::generate_pem(opts.algorithm).unwrap();
                tokenhook::keys::write_private_key(&dir.path().join("key.pem"), &pem, false)
                    .unwrap();
                "keys = [\"key.pem\"]".to_owned()
            }
        };
        let cfg = dir.path().join("tokenhook.toml");
        Self::on_free_ports(dir, probe, |port, admin, stderr| {
            std::fs::write(&cfg, opts.config_text(port, admin, &keys_toml)).unwrap();
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(&cfg)
                .env("RUST_LOG", opts.log_level.as_deref().unwrap_or("info"))
                .envs(opts.env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap()
        })
    }

    /// Waits for `probe` to answer 200; `Err(code)` if the process exited first.
    fn wait_for(&mut self, probe: &str) -> Result<(), i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status.code().unwrap_or(-1));
            }
            if let Ok(r) = raw_request(
                self.admin,
                &format!("GET {probe} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            ) && r.status == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sidecar not ready; stderr:\n{}", self.logs());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Info lines reach stderr within 20 ms (`src/telemetry.rs`); waiting a little more
    /// keeps "never logged" checks meaningful for the latest requests.
    pub fn logs(&self) -> String {
        std::thread::sleep(Duration::from_millis(60));
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        raw_request(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .text()
    }

    /// The sidecar's JWKS, fetched over HTTP as a resource server would.
    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        agent()
            .get(&self.url("/.well-known/jwks.json"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    /// Verifies `token` against the sidecar's served JWKS and returns header + claims.
    pub fn verify(&self, token: &str) -> (jsonwebtoken::Header, Map<String, Value>) {
        verify_with(&self.jwks(), token, &self.url(""))
    }

    /// Asserts that `r` is a 200 whose token verifies against the served JWKS and carries
    /// the seed hook's claim: the request went through the hook.
    pub fn assert_hooked(&self, r: &RawResponse, what: &str) {
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        let (_, claims) = self.verify(r.json()["access_token"].as_str().unwrap());
        assert_eq!(claims["https://foo.com/claim"], "bar", "{what}");
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.dir.path().join("hooks")
    }

    /// CPU ticks (user + system) used so far by the sidecar and every process it started.
    pub fn cpu_ticks(&self) -> u64 {
        let me = self.child.id();
        let mut total = 0;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses and may hold spaces.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            let pid: u32 = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let ppid: u32 = f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            if pid == me || ppid == me {
                let utime: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0);
                let stime: u64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
                total += utime + stime;
            }
        }
        total
    }

    pub fn ready(&self) -> bool {
        raw_request(
            self.admin,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .is_ok_and(|r| r.status == 200)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the sidecar, and of its worker processes (its children)
    /// with how many there are, from /proc: what a leak would grow.
    pub fn open_fds(&self) -> FdCount {
        let fds = |pid: u32| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.flatten().count())
        };
        let workers = children(self.child.id());
        FdCount {
            sidecar: fds(self.child.id()),
            workers: workers.len(),
            worker_fds: workers.iter().map(|&p| fds(p)).sum(),
        }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// File descriptors held by a sidecar and its worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdCount {
    pub sidecar: usize,
    pub workers: usize,
    pub worker_fds: usize,
}

/// The pids whose parent is `pid`, from /proc/*/stat.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces; the ppid follows the state.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Verifies with jsonwebtoken against a JWKS, as an API would: pinned algorithm from the
/// JWK, `exp` required, issuer checked.
pub fn verify_with(
    jwks: &jsonwebtoken::jwk::JwkSet,
    token: &str,
    issuer: &str,
) -> (jsonwebtoken::Header, Map<String, Value>) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("kid in header");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let alg: Algorithm = jwk
        .common
        .key_algorithm
        .unwrap()
        .to_string()
        .parse()
        .unwrap();
    assert_eq!(alg, header.alg);
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iss"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap_or_else(|e| panic!("token does not verify: {e}"));
    (data.header, data.claims)
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .new_agent()
}

/// POSTs a client_credentials request; `basic` = HTTP Basic, else credentials in the body.
pub fn token_request(
    url: &str,
    id: &str,
    secret: &str,
    basic: bool,
) -> (u16, Value, http::HeaderMap) {
    let mut form = vec![("grant_type", "client_credentials")];
    let req = agent().post(url);
    let req = if basic {
        use base64::Engine;
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        req.header("Authorization", &format!("Basic {cred}"))
    } else {
        form.push(("client_id", id));
        form.push(("client_secret", secret));
        req
    };
    let mut resp = req.send_form(form).unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
    (status, body, headers)
}

/// A response read off a raw socket, bytes untouched.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` verbatim and reads the response to the end of its framing (or of the
/// connection). Understands Content-Length, chunked and close-delimited bodies.
pub fn raw_request(port: u16, request: &str) -> std::io::Result<RawResponse> {
    raw_request_bytes(port, request.as_bytes())
}

pub fn raw_request_bytes(port: u16, request: &[u8]) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(request)?;
    read_response(&mut BufReader::new(s))
}

/// Reads one response off a connection (by `Content-Length`, chunks, or to the close),
/// leaving a keep-alive connection ready for the next.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<RawResponse> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if status != 204 && status != 304 {
        r.read_to_end(&mut body)?;
    }
    Ok(RawResponse {
        status,
        status_line: status_line.trim_end().to_owned(),
        headers,
        body,
    })
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn form_post(path: &str, host: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

/// Decodes a JWT payload without verifying (to look at what a stub or IdP issued).
pub fn peek_claims(token: &str) -> Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

/// What the stub upstream serves.
#[derive(Clone)]
pub struct StubBehaviour {
    /// Signs issued tokens.
    pub signer: Arc<tokenhook::keys::SigningKey>,
    /// Published in the JWKS.
    pub published: Vec<Arc<tokenhook::keys::SigningKey>>,
    pub gzip: bool,
    pub opaque: bool,
    pub scope: &'static str,
    /// Changed while it runs, to script what the IdP answers.
    pub script: Arc<StubScript>,
}

/// What a running stub answers instead of its honest behaviour, when set.
#[derive(Default)]
pub struct StubScript {
    /// The `access_token` of every token response.
    pub token: std::sync::Mutex<Option<String>>,
    /// The whole JWKS body.
    pub jwks: std::sync::Mutex<Option<String>>,
}

impl StubBehaviour {
    /// Signs with the key it publishes, plain JSON, a JWT with `read:data`.
    pub fn honest(alg: Algorithm) -> Self {
        let k = stub_key(alg);
        StubBehaviour {
            signer: k.clone(),
            published: vec![k],
            gzip: false,
            opaque: false,
            scope: "read:data",
            script: Arc::default(),
        }
    }
}

/// A minimal HTTP/1.1 IdP double for what oidc-provider cannot be made to do: gzip its
/// responses, sign with a key it does not publish, issue opaque or forged tokens, or
/// break its JWKS while running (`StubBehaviour::script`). Its discovery document names
/// `http://127.0.0.1:<port>` as the issuer, as its tokens do.
pub struct StubIdp {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl StubIdp {
    pub fn start(b: StubBehaviour) -> StubIdp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let b = b.clone();
                        std::thread::spawn(move || serve_stub(s, &b, port));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StubIdp { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StubIdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_stub(s: TcpStream, b: &StubBehaviour, port: u16) {
    let _ = s.set_nonblocking(false);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        // Routes leniently (case, trailing slash, escapes), as many IdP frameworks do.
        let path = tokenhook::routes::normalize_path(line.split(' ').nth(1).unwrap_or("/"));
        let mut len = 0;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, out) = honest_answer(b, port, &path);
        let (bytes, enc) = if b.gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(out.as_bytes()).unwrap();
            (e.finish().unwrap(), "Content-Encoding: gzip\r\n")
        } else {
            (out.into_bytes(), "")
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{enc}Cache-Control: no-store\r\nX-Stub: yes\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        );
        if w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(&bytes))
            .is_err()
        {
            return;
        }
    }
}

/// What an honest stub IdP answers for `path` (already normalized): its JWKS (or the
/// scripted one), its discovery document, a token signed by `b.signer` (or the scripted
/// one), else 404. `port` is the stub's own, which names the issuer.
pub fn honest_answer(b: &StubBehaviour, port: u16, path: &str) -> (u16, String) {
    if path.starts_with("/.well-known/jwks.json") {
        let scripted = b.script.jwks.lock().unwrap().clone();
        (
            200,
            scripted.unwrap_or_else(|| {
                json!({"keys": b.published.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
                    .to_string()
            }),
        )
    } else if path.starts_with("/.well-known/openid-configuration") {
        (
            200,
            json!({"issuer": format!("http://127.0.0.1:{port}")}).to_string(),
        )
    } else if path.starts_with("/oauth/token") {
        let scripted = b.script.token.lock().unwrap().clone();
        let token = if let Some(t) = scripted {
            t
        } else if b.opaque {
            "opaque-token-value".to_owned()
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let claims = json!({"iss": format!("http://127.0.0.1:{port}"), "sub": "svc-basic", "aud": "https://api.example.com",
                "iat": now, "exp": now + 600, "scope": b.scope, "client_id": "svc-basic"});
            tokenhook::token::sign(&b.signer, Some("at+jwt"), claims.as_object().unwrap()).unwrap()
        };
        (200, json!({"access_token": token, "token_type": "Bearer", "expires_in": 600, "scope": b.scope}).to_string())
    } else {
        (404, r#"{"error":"not_found"}"#.to_owned())
    }
}

pub fn stub_key(alg: Algorithm) -> Arc<tokenhook::keys::SigningKey> {
    let pem = tokenhook::keys::generate_pem(alg).unwrap();
    Arc::new(tokenhook::keys::SigningKey::from_pem(pem.as_bytes(), Path::new("stub"), alg).unwrap())
}

/// Runs the binary with args; returns (exit code, stdout, stderr).
/// Copies the files of `from` (not its subfolders) into `to`.
pub fn copy_files(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A hook call for client `id` (its name the same), scope `read`, as a pool is invoked
/// directly in tests that need no sidecar.
pub fn client_call(id: &str) -> tokenhook::hooks::HookCall {
    tokenhook::hooks::HookCall {
        client: tokenhook::hooks::HookClient {
            id: id.into(),
            name: id.into(),
            ..Default::default()
        },
        scope: Some(vec!["read".into()]),
        method: "POST".into(),
        ..Default::default()
    }
}
