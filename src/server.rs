//! Assembles the pingora server: proxy listener, admin listener, and the background
//! task that keeps the upstream JWKS fresh; then runs until a signal stops it.

use crate::admin::Admin;
use crate::app::App;
use crate::proxy::TokenProxy;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use std::sync::Arc;
use std::time::Duration;

/// Exit status for a bad configuration (sysexits' EX_USAGE, as linkerd and others use).
pub const EXIT_CONFIG: u8 = 64;
/// Exit status when a listen address is taken or not available on this host
/// (sysexits' EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Keeps the upstream JWKS cache warm: retries quickly until the first fetch succeeds
/// (readiness waits for it), then refreshes every `upstream.jwks_refresh_seconds`.
struct JwksRefresher {
    app: Arc<App>,
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let mut fetched_once = false;
        loop {
            let starting = !fetched_once && started.elapsed() < Duration::from_secs(10);
            let ok = self.app.refresh_jwks(false, starting).await;
            let wait = if ok {
                fetched_once = true;
                backoff = Duration::from_millis(100);
                self.app.config.upstream.jwks_refresh
            } else {
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            };
            tokio::select! {
                _ = shutdown.changed() => if *shutdown.borrow() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Runs `task` every `every` on the blocking pool (both reloads read files and may
/// start processes) until shutdown. A zero interval disables it.
///
/// Used for hot reload of the hooks folder (a change, including a Kubernetes ConfigMap
/// update that swaps a symlink, starts the new version beside the old and swaps it in
/// only once it compiled, so no request fails and a broken version never serves) and of
/// the key files (a rotated set is swapped in at once with its JWKS; a set that does not
/// load is refused).
struct Poller {
    app: Arc<App>,
    every: Duration,
    task: fn(&App),
}

#[async_trait]
impl BackgroundService for Poller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.every.is_zero() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.changed() => if *shutdown.borrow() { return },
                _ = tokio::time::sleep(self.every) => {}
            }
            let (app, task) = (self.app.clone(), self.task);
            let _ = tokio::task::spawn_blocking(move || task(&app)).await;
        }
    }
}

/// SIGTERM: readiness fails first, then pingora stops accepting and waits for in-flight
/// requests up to the grace period. SIGINT: the same, for interactive use.
///
/// pingora's `Server::run` sleeps the whole `grace_period_seconds` after a graceful
/// terminate (a plain `thread::sleep` in `server/mod.rs`, whatever is still running), so
/// a sidecar with nothing in flight would idle through it. [`exit_when_drained`] ends the
/// process as soon as no request is in flight; pingora's sleep stays the upper bound.
struct Signals {
    app: Arc<App>,
    limits: Arc<crate::connections::Limits>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        let cfg = &self.app.config.server;
        tracing::info!(
            drain_delay_s = cfg.drain_delay.as_secs(),
            grace_period_s = cfg.grace_period.as_secs(),
            "shutting down: readiness fails now, listeners close after the drain delay, in-flight requests finish within the grace period"
        );
        self.app.begin_shutdown();
        tokio::time::sleep(cfg.drain_delay).await;
        exit_when_drained(self.limits.clone(), cfg.grace_period);
        ShutdownSignal::GracefulTerminate
    }
}

/// Watches, on its own thread, for the moment no request is in flight once the listeners
/// close, and exits then. Hook workers end when their pipes close with the process.
fn exit_when_drained(limits: Arc<crate::connections::Limits>, grace: Duration) {
    let started = std::time::Instant::now();
    let watch = move || {
        // pingora broadcasts the shutdown right after the signal returns; a request
        // accepted before its listeners close is counted by the time this ends.
        std::thread::sleep(Duration::from_millis(100));
        while started.elapsed() < grace {
            if limits.in_flight() == 0 {
                tracing::info!("no request in flight; exiting");
                crate::telemetry::flush();
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if std::thread::Builder::new()
        .name("drain watch".into())
        .spawn(watch)
        .is_err()
    {
        tracing::warn!(
            "cannot watch for the end of in-flight requests; waiting the whole grace period"
        );
    }
}

/// Checks that both listen addresses can be bound, before any worker starts: pingora
/// binds them later, on its own threads, and on failure only panics in that thread and
/// leaves the process running without the port. The sockets are closed again at once;
/// another process taking the port in between still fails the old way.
pub fn check_listeners(
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> Result<(), Vec<crate::config::ConfigError>> {
    // Both stay bound until both are tried, so the two addresses clashing with each
    // other (0.0.0.0:8080 and 127.0.0.1:8080) is caught too.
    let mut bound = Vec::new();
    let mut errors = Vec::new();
    for (key, addr) in [("server.listen", listen), ("server.admin_listen", admin)] {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => bound.push(l),
            Err(e) => errors.push(crate::config::ConfigError::new(
                key,
                format!("cannot listen on {addr}: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Extra services a caller (the demo) runs in the same server.
pub type ExtraService = Box<dyn pingora::services::ServiceWithDependents>;

/// Runs the sidecar until SIGTERM/SIGINT. Blocks the calling thread.
pub fn run(app: Arc<App>, extra: Vec<ExtraService>) {
    let cfg = &app.config;
    let conf = ServerConf {
        threads: cfg.server.threads,
        grace_period_seconds: Some(cfg.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let limits = crate::connections::Limits::new(&cfg.server);
    let mut proxy = Service::new(
        "tokenhook proxy".to_owned(),
        crate::connections::Bounded {
            inner: Arc::new(pingora::proxy::http_proxy(
                &server.configuration,
                TokenProxy { app: app.clone() },
            )),
            limits: limits.clone(),
        },
    );
    // No L4 read buffer on client connections: without TLS, pingora reads a request's
    // head into its own buffer in one call anyway, and the default 64 KiB per
    // connection would be most of the memory with many keep-alive connections.
    proxy.add_listener(
        pingora::listeners::ListenerConfig::tcp(cfg.server.listen.to_string()).l4_buffer(
            pingora::listeners::L4BufferSettings {
                read: Some(0),
                write: None,
            },
        ),
    );
    let mut admin = Service::new("tokenhook admin".to_owned(), Admin { app: app.clone() });
    admin.add_tcp(&cfg.server.admin_listen.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "upstream jwks",
        JwksRefresher { app: app.clone() },
    ));
    server.add_service(background_service(
        "key reload",
        Poller {
            app: app.clone(),
            every: cfg.signing.reload_interval,
            task: |app| {
                app.reload_keys();
            },
        },
    ));
    server.add_service(background_service(
        "hook reload",
        Poller {
            app: app.clone(),
            every: cfg.hooks.reload_interval,
            task: |app| {
                app.reload_hooks(&|name| std::env::var(name).ok());
            },
        },
    ));
    for s in extra {
        server.add_boxed_service(s);
    }
    tracing::info!(
        listen = %cfg.server.listen,
        admin = %cfg.server.admin_listen,
        upstream = %cfg.upstream.url,
        hook = app.hooks().map(|h| h.name().to_owned()).unwrap_or_else(|| "(none)".into()),
        "tokenhook serving"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { app, limits }),
    });
}
