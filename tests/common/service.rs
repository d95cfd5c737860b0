//! A loopback HTTP(S) service for hooks to call with `fetch`: answers each request with
//! what a closure says and records what it received, so tests can check both sides.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A request as the service received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the service answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn redirect(status: u16, location: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Location".into(), location.into())],
            body: String::new(),
        }
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct Service {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    tls: bool,
}

/// The test server certificate (for 127.0.0.1, ::1 and localhost) and the CA that
/// signed it: `tests/fixtures/tls`, made by its `make.sh`.
pub const TEST_CA: &str = "tests/fixtures/tls/ca.pem";

fn tls_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = super::repo().join("tests/fixtures/tls");
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

impl Service {
    pub fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Service {
        Self::listen(None, handler)
    }

    /// The same service over HTTPS with the test certificate ([`TEST_CA`] signed it).
    pub fn start_tls(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Service {
        Self::listen(Some(tls_config()), handler)
    }

    fn listen(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received: Arc<Mutex<Vec<Received>>> = Default::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop2, rec) = (stop.clone(), received.clone());
        let is_tls = tls.is_some();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (h, rec, tls) = (handler.clone(), rec.clone(), tls.clone());
                        std::thread::spawn(move || {
                            if s.set_nonblocking(false).is_err() {
                                return;
                            }
                            let _ = match tls {
                                None => serve(s, &*h, &rec),
                                Some(config) => match rustls::ServerConnection::new(config) {
                                    Ok(c) => serve(rustls::StreamOwned::new(c, s), &*h, &rec),
                                    Err(_) => return,
                                },
                            };
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Service {
            port,
            received,
            stop,
            tls: is_tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: impl Read + Write,
    handler: &Handler,
    rec: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let req = Received {
            method,
            target,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        rec.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply.body);
        let w = r.get_mut();
        w.write_all(out.as_bytes())?;
        w.flush()?;
    }
}
