//! Logging setup: `tracing` with text or JSON lines, filter from `RUST_LOG` or config,
//! written to stderr through a buffer so request threads do not wait for the log reader
//! on every line.

use crate::config::LogFormat;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber; `RUST_LOG` overrides the configured level. Also
/// routes pingora's `log` records into `tracing`, with its verbose lines capped
/// ([`CapLibraries`]).
pub fn init(format: LogFormat, level: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tokenhook=info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(Stderr(sink()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let fmt = match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // `try_init` also installs the `log` → `tracing` bridge.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(CapLibraries)
        .with(fmt)
        .try_init();
}

/// Targets whose lines above [`LIBRARY_MAX_LEVEL`] are dropped whatever the filter says.
/// pingora's debug and trace lines print what passes through it: the request head sent
/// upstream with its `Authorization` (`proxy_h1.rs` "Sending header to upstream",
/// `v1/client.rs` "Writing request header"), upstream response bodies with their
/// `access_token` (`v1/client.rs` "Response body"), and the raw buffer of a malformed
/// request head, `client_secret` and all (`pingora-proxy` `handle_new_request` "Fail to
/// proxy" quoting the `InvalidHTTPHeader` context). `h2` prints decoded header blocks
/// the same way. No filter an operator writes (`RUST_LOG=trace`,
/// `pingora_core=trace`) can turn them back on.
const CAPPED_TARGETS: &[&str] = &["pingora", "h2"];
const LIBRARY_MAX_LEVEL: tracing::Level = tracing::Level::INFO;

fn capped(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() > LIBRARY_MAX_LEVEL && CAPPED_TARGETS.iter().any(|t| meta.target().starts_with(t))
}

/// A global filter layer ahead of the `EnvFilter`'s verdict: a layer that says no
/// disables the event for every layer.
///
/// Both checks are needed for `log` records: `tracing-log` first asks `enabled` with
/// metadata carrying the record's own target (`pingora_core::…`), then dispatches the
/// event under a shared callsite whose target is just `log` (the real one is in a
/// `log.target` field); `event_enabled` sees the latter, so it normalizes it first.
struct CapLibraries;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CapLibraries {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !capped(meta)
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        use tracing_log::NormalizeEvent;
        match event.normalized_metadata() {
            Some(meta) => !capped(&meta),
            None => !capped(event.metadata()),
        }
    }
}

/// A request id for a request that brought none: 128 random bits, as hex.
pub fn new_request_id() -> String {
    use rand::Rng;
    let v: u128 = rand::rng().random();
    format!("{v:032x}")
}

/// The default text logging, for commands run before (or without) a config file.
pub fn init_default() {
    init(LogFormat::Text, "warn,tokenhook=info");
}

/// Writes out every buffered line; call before the process exits.
pub fn flush() {
    if let Some(s) = SINK.get() {
        s.write_out(&[]);
    }
}

/// At most this much of info and debug lines wait for the writer thread; past it, lines
/// are dropped and counted rather than stalling requests behind a slow log reader.
const CAPACITY: usize = 1 << 20;
/// How long an info line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

static SINK: OnceLock<Arc<Sink>> = OnceLock::new();

fn sink() -> Arc<Sink> {
    SINK.get_or_init(|| {
        let s = Arc::new(Sink::new(Box::new(std::io::stderr())));
        let bg = s.clone();
        let started = std::thread::Builder::new()
            .name("log writer".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    bg.write_out(&[]);
                }
            });
        if started.is_err() {
            // Without the writer thread every line is written at once instead.
            s.direct.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        s
    })
    .clone()
}

/// Written directly, the access log line of every request cost a `write` on the
/// request's thread (logging was 4.8 % of the sidecar's CPU in a profile under load,
/// 2.1 % buffered); buffered, one `write` carries every line of 20 ms.
struct Sink {
    pending: Mutex<Pending>,
    /// stderr. Locked before `pending` by whoever writes: lines leave in the order they
    /// were logged.
    out: Mutex<Box<dyn Write + Send>>,
    direct: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    dropped: u64,
}

impl Sink {
    fn new(out: Box<dyn Write + Send>) -> Self {
        Sink {
            pending: Mutex::default(),
            out: Mutex::new(out),
            direct: Default::default(),
        }
    }

    fn push(&self, line: &[u8]) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.buf.len() + line.len() > CAPACITY {
            p.dropped += 1;
        } else {
            p.buf.extend_from_slice(line);
        }
    }

    /// Writes what is buffered, then `line`.
    fn write_out(&self, line: &[u8]) {
        let mut err = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, dropped) = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            (std::mem::take(&mut p.buf), std::mem::take(&mut p.dropped))
        };
        let _ = err.write_all(&buf);
        if dropped > 0 {
            let _ = writeln!(
                err,
                "tokenhook: {dropped} log lines dropped: stderr was not read fast enough"
            );
        }
        let _ = err.write_all(line);
        let _ = err.flush();
    }
}

#[derive(Clone)]
struct Stderr(Arc<Sink>);

/// One event's line; the fmt layer hands it over in a single `write_all`.
struct Line<'a> {
    sink: &'a Sink,
    /// Warnings and errors are written at once, behind what is buffered: an operator
    /// (or a test) reading them right after the fact sees them.
    now: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            sink: &self.0,
            now: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            sink: &self.0,
            now: *meta.level() <= tracing::Level::WARN
                || self.0.direct.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.now {
            self.sink.write_out(b);
        } else {
            self.sink.push(b);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `log` record from pingora at debug or trace never reaches the output, even
    /// with a `trace` filter for pingora itself; its info lines and our own debug lines
    /// do. Breaks if `CapLibraries` is dropped from `init`'s stack or stops looking at
    /// the record's real target.
    #[test]
    fn pingora_debug_records_are_capped_whatever_the_filter() {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Shared::default();
        let w = out.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "trace,pingora_core=trace",
            ))
            .with(CapLibraries)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || w.clone())
                    .with_ansi(false),
            );
        let logger = tracing_log::LogTracer::new();
        tracing::subscriber::with_default(subscriber, || {
            use log::Log;
            for (level, text) in [
                (log::Level::Debug, "Authorization: Basic c2VjcmV0"),
                (log::Level::Trace, "Response body: access_token"),
                (log::Level::Info, "pingora info line"),
            ] {
                logger.log(
                    &log::Record::builder()
                        .level(level)
                        .target("pingora_core::protocols::http::v1::client")
                        .args(format_args!("{text}"))
                        .build(),
                );
            }
            tracing::debug!(target: "tokenhook::proxy", "our debug line");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("c2VjcmV0"), "{text}");
        assert!(!text.contains("access_token"), "{text}");
        assert!(text.contains("pingora info line"), "{text}");
        assert!(text.contains("our debug line"), "{text}");
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_leave_in_order_and_overflow_is_counted_not_blocking() {
        let out = Shared::default();
        let sink = Sink::new(Box::new(out.clone()));
        let text = |o: &Shared| String::from_utf8(o.0.lock().unwrap().clone()).unwrap();
        sink.push(b"info 1\n");
        sink.push(b"info 2\n");
        assert_eq!(text(&out), "", "info lines wait for the writer");
        sink.write_out(b"warn 3\n");
        assert_eq!(text(&out), "info 1\ninfo 2\nwarn 3\n");
        let big = vec![b'x'; CAPACITY / 2 + 1];
        sink.push(&big);
        sink.push(&big);
        sink.push(&big);
        sink.write_out(b"");
        let all = text(&out);
        assert_eq!(all.matches('x').count(), CAPACITY / 2 + 1);
        assert!(
            all.ends_with("tokenhook: 2 log lines dropped: stderr was not read fast enough\n"),
            "{}",
            &all[all.len() - 80..]
        );
    }
}
