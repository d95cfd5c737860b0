//! A misbehaving IdP for fault-injection tests: a raw-socket HTTP/1.1 server on
//! 127.0.0.1 that answers as the honest stub does (`honest_answer`) unless the test has
//! set a [`Fault`] for the requested path, and that can stop listening (connection
//! refused) and listen again on the same port. Every fault is bounded in time and size,
//! and everything stops when the server is dropped.

use super::{StubBehaviour, honest_answer};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server misbehaves on one path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Waits this long before answering honestly (or until the server is dropped).
    Slow(Duration),
    /// Part of a status line and headers, then the connection closes.
    CloseMidHead,
    /// A whole head with the true Content-Length, half the body, then close.
    CloseMidBody,
    /// Bytes that are not HTTP at all, then close.
    Garbage,
    /// A Content-Length this many bytes shorter than the body, which is sent whole: the
    /// rest stays on the connection, where the next response would start.
    ShortLength(usize),
    /// A Content-Length this many bytes longer than the body; then the connection
    /// closes.
    LongLength(usize),
    /// `Transfer-Encoding: chunked`, 16 KiB chunks without end (until the peer stops
    /// reading, at most 256 MiB or 20 s).
    EndlessChunked,
    /// A Content-Length body of this many bytes (JSON-looking padding).
    Huge(usize),
    /// `Content-Encoding: gzip` whose body inflates to this many bytes.
    GzipBomb(usize),
    /// Two different Content-Length headers (the true one first).
    DoubleLength,
    /// Both a Content-Length (a wrong one) and `Transfer-Encoding: chunked` (true).
    LengthAndChunked,
    /// This status and JSON body instead of the honest one.
    Body(u16, String),
    /// This status, content type and body.
    Typed(u16, &'static str, String),
}

struct State {
    behaviour: StubBehaviour,
    port: u16,
    /// Path prefix → fault; the longest matching prefix wins.
    faults: Mutex<HashMap<String, Fault>>,
    /// None while refusing connections.
    listener: Mutex<Option<TcpListener>>,
    /// Open connections, so that refusing also cuts the pooled ones.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Requests seen per path, faulty or not.
    hits: Mutex<HashMap<String, u64>>,
    stop: AtomicBool,
}

/// The misbehaving IdP. Its discovery document and tokens name
/// `http://127.0.0.1:<port>` as the issuer, as the honest stub's do.
pub struct FaultIdp {
    pub port: u16,
    state: Arc<State>,
}

impl FaultIdp {
    pub fn start(behaviour: StubBehaviour) -> FaultIdp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State {
            behaviour,
            port,
            faults: Mutex::default(),
            listener: Mutex::new(Some(listener)),
            conns: Mutex::default(),
            next_conn: AtomicU64::new(0),
            hits: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            while !st.stop.load(Ordering::Relaxed) {
                let accepted = st.listener.lock().unwrap().as_ref().map(|l| l.accept());
                match accepted {
                    Some(Ok((s, _))) => {
                        let id = st.next_conn.fetch_add(1, Ordering::Relaxed);
                        if let Ok(c) = s.try_clone() {
                            st.conns.lock().unwrap().insert(id, c);
                        }
                        let st = st.clone();
                        std::thread::spawn(move || {
                            serve(s, &st);
                            st.conns.lock().unwrap().remove(&id);
                        });
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultIdp { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Misbehaves with `fault` on every path starting with `path`.
    pub fn set(&self, path: &str, fault: Fault) {
        // Compressed here, not while answering: compressing megabytes in a debug build
        // takes longer than the sidecar's upstream timeout on a loaded machine.
        if let Fault::GzipBomb(n) = fault {
            gzip_bomb(n);
        }
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(path.to_owned(), fault);
    }

    /// Answers honestly on `path` again.
    pub fn clear(&self, path: &str) {
        self.state.faults.lock().unwrap().remove(path);
    }

    /// Stops listening and cuts every open connection: connections are refused.
    pub fn refuse(&self) {
        *self.state.listener.lock().unwrap() = None;
        for (_, c) in self.state.conns.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (std sets SO_REUSEADDR, so connections left in
    /// TIME_WAIT do not stand in the way). Retried briefly: another process could have
    /// been given the port meanwhile, which is unlikely with random ephemeral ports.
    pub fn listen_again(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => {
                    l.set_nonblocking(true).unwrap();
                    *self.state.listener.lock().unwrap() = Some(l);
                    return;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot listen on {} again: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// How many requests for paths starting with `path` arrived.
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(path))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for FaultIdp {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.refuse();
    }
}

/// Reads one request head and its Content-Length body; the path, or None once the
/// peer closed or sent something unreadable.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = tokenhook::routes::normalize_path(line.split(' ').nth(1).unwrap_or("/"));
    let mut len = 0;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(path)
}

fn head(status: u16, framing: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n{framing}\r\n"
    )
}

fn serve(s: TcpStream, st: &State) {
    let _ = s.set_nonblocking(false);
    // A peer that stops reading must not hold a thread forever.
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(read_half) = s.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
    let mut w = s;
    while let Some(path) = read_request(&mut r) {
        *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let fault = {
            let faults = st.faults.lock().unwrap();
            faults
                .iter()
                .filter(|(p, _)| path.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, f)| f.clone())
        };
        let (status, honest) = honest_answer(&st.behaviour, st.port, &path);
        let body = honest.into_bytes();
        let len = body.len();
        let keep_open = match fault {
            None => write(&mut w, &[head(status, &cl(len)).as_bytes(), &body]),
            Some(Fault::Slow(d)) => {
                let until = Instant::now() + d;
                while Instant::now() < until && !st.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                write(&mut w, &[head(status, &cl(len)).as_bytes(), &body])
            }
            Some(Fault::CloseMidHead) => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: applic");
                false
            }
            Some(Fault::CloseMidBody) => {
                let _ = write(
                    &mut w,
                    &[head(status, &cl(len)).as_bytes(), &body[..len / 2]],
                );
                false
            }
            Some(Fault::Garbage) => {
                let _ =
                    w.write_all(b"\x16\x03\x01\x00\xa5garbage \x00\xff\r\n\r\nnot http\r\n\r\n");
                false
            }
            Some(Fault::ShortLength(n)) => write(
                &mut w,
                &[head(status, &cl(len.saturating_sub(n))).as_bytes(), &body],
            ),
            Some(Fault::LongLength(n)) => {
                let _ = write(&mut w, &[head(status, &cl(len + n)).as_bytes(), &body]);
                false
            }
            Some(Fault::EndlessChunked) => {
                let chunk = format!("4000\r\n{}\r\n", "a".repeat(0x4000));
                let started = Instant::now();
                let mut ok = write(
                    &mut w,
                    &[head(status, "Transfer-Encoding: chunked\r\n").as_bytes()],
                );
                for _ in 0..(256 * 64) {
                    if !ok || started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                    ok = write(&mut w, &[chunk.as_bytes()]);
                }
                false
            }
            Some(Fault::Huge(n)) => {
                let mut ok = write(&mut w, &[head(status, &cl(n)).as_bytes(), b"{\"pad\":\""]);
                let mut left = n.saturating_sub(10);
                let pad = vec![b'a'; 0x4000];
                while ok && left > 0 {
                    let k = left.min(pad.len());
                    ok = write(&mut w, &[&pad[..k]]);
                    left -= k;
                }
                ok && write(&mut w, &[b"\"}"])
            }
            Some(Fault::GzipBomb(n)) => {
                let gz = gzip_bomb(n);
                let framing = format!("Content-Encoding: gzip\r\n{}", cl(gz.len()));
                write(&mut w, &[head(status, &framing).as_bytes(), &gz])
            }
            Some(Fault::DoubleLength) => {
                let framing = format!("{}Content-Length: {}\r\n", cl(len), len + 7);
                let _ = write(&mut w, &[head(status, &framing).as_bytes(), &body]);
                false
            }
            Some(Fault::LengthAndChunked) => {
                let framing = format!("{}Transfer-Encoding: chunked\r\n", cl(7));
                let chunked = format!("{len:x}\r\n");
                let _ = write(
                    &mut w,
                    &[
                        head(status, &framing).as_bytes(),
                        chunked.as_bytes(),
                        &body,
                        b"\r\n0\r\n\r\n",
                    ],
                );
                false
            }
            Some(Fault::Body(status, text)) => write(
                &mut w,
                &[head(status, &cl(text.len())).as_bytes(), text.as_bytes()],
            ),
            Some(Fault::Typed(status, media, text)) => {
                let head = head(status, &cl(text.len())).replace(
                    "Content-Type: application/json",
                    &format!("Content-Type: {media}"),
                );
                write(&mut w, &[head.as_bytes(), text.as_bytes()])
            }
        };
        if !keep_open {
            let _ = w.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn cl(n: usize) -> String {
    format!("Content-Length: {n}\r\n")
}

/// Writes all parts; false once the peer is gone.
fn write(w: &mut TcpStream, parts: &[&[u8]]) -> bool {
    parts.iter().all(|p| w.write_all(p).is_ok()) && w.flush().is_ok()
}

/// `n` spaces, gzip-compressed, made once per size.
fn gzip_bomb(n: usize) -> std::sync::Arc<Vec<u8>> {
    static MADE: std::sync::OnceLock<Mutex<HashMap<usize, std::sync::Arc<Vec<u8>>>>> =
        std::sync::OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    if let Some(gz) = made.lock().unwrap().get(&n) {
        return gz.clone();
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let spaces = vec![b' '; 0x10000];
    let mut left = n;
    while left > 0 {
        let k = left.min(spaces.len());
        e.write_all(&spaces[..k]).unwrap();
        left -= k;
    }
    let gz = std::sync::Arc::new(e.finish().unwrap());
    made.lock().unwrap().insert(n, gz.clone());
    gz
}
