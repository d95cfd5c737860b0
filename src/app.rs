//! Everything the sidecar holds at run time, built once from the config, and the
//! pingora server that serves it.

use crate::config::{ClientInfo, Config, ConfigError};
use crate::hooks::pool::{PoolStats, WorkerCommand};
use crate::hooks::{HookClient, HookPool};
use crate::keys::KeySet;
use crate::metrics::{Metrics, Route};
use crate::token::claims::ClaimPolicy;
use crate::token::verify::{RefreshCounters, Verifier};
use crate::upstream::{JwksFetcher, UpstreamClient};
use pingora::upstreams::peer::HttpPeer;
use prometheus::IntCounter;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Outcomes counted per route; a fixed set so label values stay bounded.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "passthrough",
    "upstream_denied",
    "upstream_error",
    "invalid_upstream_token",
    "denied",
    "hook_error",
    "hook_timeout",
    "hook_rejected",
    "rejected",
    "error",
];

pub struct App {
    pub config: Config,
    keys: RwLock<Arc<KeySet>>,
    pub verifier: Arc<Verifier>,
    hooks: RwLock<Option<Arc<HookPool>>>,
    /// What the running hook was built from, to notice changes (hot reload).
    hooks_fingerprint: ChangeWatch,
    keys_fingerprint: ChangeWatch,
    worker_command: WorkerCommand,
    pub upstream: UpstreamClient,
    pub passthrough_peer: HttpPeer,
    pub routes: crate::proxy::Routes,
    pub metrics: Metrics,
    request_counters: HashMap<(&'static str, &'static str), IntCounter>,
    policy: ClaimPolicy,
    shutting_down: AtomicBool,
    pool_stats: Arc<PoolStats>,
}

/// What a reloader last applied, and a version that failed to load: retried after
/// `RETRY` (the cause may pass, e.g. no memory for a new worker) rather than each poll.
struct ChangeWatch(std::sync::Mutex<(u64, Option<(u64, std::time::Instant)>)>);

impl ChangeWatch {
    const RETRY: Duration = Duration::from_secs(30);

    fn new(applied: u64) -> Self {
        ChangeWatch(std::sync::Mutex::new((applied, None)))
    }

    /// Whether `fp` should be loaded now.
    fn due(&self, fp: u64) -> bool {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        fp != g.0 && !matches!(g.1, Some((f, at)) if f == fp && at.elapsed() < Self::RETRY)
    }

    fn record(&self, fp: u64, ok: bool) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *g = (fp, None);
        } else {
            g.1 = Some((fp, std::time::Instant::now()));
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl App {
    /// Loads keys and compiles the enabled hook; every problem is returned, keyed.
    pub fn build(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<App, Vec<ConfigError>> {
        let command = WorkerCommand::current_exe().map_err(|e| {
            vec![ConfigError::new(
                "hooks",
                format!("cannot locate the tokenhook binary for hook workers: {e}"),
            )]
        })?;
        Self::build_with(config, env, command)
    }

    /// As `build`, with an explicit way to start hook workers (tests and tools).
    pub fn build_with(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
        worker_command: WorkerCommand,
    ) -> Result<App, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let keys = match KeySet::load(&config.signing.keys, config.signing.algorithm, false) {
            Ok(k) => Some(k),
            Err(es) => {
                errors.extend(es.into_iter().map(|(k, m)| ConfigError::new(k, m)));
                None
            }
        };
        let policy = ClaimPolicy {
            allow_unnamespaced: config.hooks.allow_unnamespaced_claims,
        };
        let fingerprint = crate::hooks::manifest::fingerprint(&config.hooks.dir, env);
        let pool_stats: Arc<PoolStats> = Default::default();
        let hooks = match crate::hooks::manifest::load_enabled(
            &config.hooks.dir,
            config.hooks.timeout,
            env,
        ) {
            Ok(None) => None,
            Ok(Some(spec)) => {
                let name = spec.name.clone();
                match HookPool::start_with(
                    spec,
                    &config.hooks,
                    worker_command.clone(),
                    Default::default(),
                    pool_stats.clone(),
                ) {
                    Ok(pool) => Some(Arc::new(pool)),
                    Err(e) => {
                        errors.push(ConfigError::new(
                            "hooks.dir/hooks.toml: enabled",
                            format!("hook {name:?}: {e}"),
                        ));
                        None
                    }
                }
            }
            Err(problems) => {
                errors.extend(problems.into_iter().map(|(k, m)| ConfigError::new(k, m)));
                None
            }
        };
        let (Some(keys), true) = (keys, errors.is_empty()) else {
            return Err(errors);
        };
        let up = &config.upstream;
        let upstream = UpstreamClient::new(up.address, up.connect_timeout, up.timeout);
        let metrics = Metrics::new();
        let verifier = Arc::new(
            Verifier::new(
                Arc::new(JwksFetcher::new(up)),
                up.algorithms.clone(),
                up.leeway_seconds,
                up.jwks_min_refresh,
            )
            .with_issuer(up.issuer.clone())
            .with_counters(RefreshCounters {
                ok: metrics.jwks_refreshes.with_label_values(&["ok"]),
                error: metrics.jwks_refreshes.with_label_values(&["error"]),
            }),
        );
        let mut passthrough_peer = HttpPeer::new(up.address, false, String::new());
        passthrough_peer.options.connection_timeout = Some(up.connect_timeout);
        passthrough_peer.options.read_timeout = Some(up.timeout);
        passthrough_peer.options.write_timeout = Some(up.timeout);
        passthrough_peer.options.idle_timeout = Some(Duration::from_secs(60));
        let keys_fingerprint = crate::keys::fingerprint(&config.signing.keys);
        let routes = crate::proxy::Routes {
            token: crate::proxy::normalize_path(&config.upstream.token_path),
            jwks: crate::proxy::normalize_path(&config.server.jwks_path),
            discovery: crate::proxy::normalize_path(&config.server.discovery_path),
        };
        if let Some(h) = &hooks {
            h.attach_counters(&metrics.hook_outcomes);
        }
        let mut request_counters = HashMap::new();
        for route in [
            Route::Token,
            Route::Jwks,
            Route::Discovery,
            Route::Passthrough,
        ] {
            for o in OUTCOMES {
                request_counters.insert(
                    (route.as_str(), *o),
                    metrics.requests.with_label_values(&[route.as_str(), o]),
                );
            }
        }
        Ok(App {
            config,
            keys: RwLock::new(Arc::new(keys)),
            verifier,
            hooks: RwLock::new(hooks),
            hooks_fingerprint: ChangeWatch::new(fingerprint),
            keys_fingerprint: ChangeWatch::new(keys_fingerprint),
            worker_command,
            upstream,
            passthrough_peer,
            routes,
            metrics,
            request_counters,
            policy,
            shutting_down: AtomicBool::new(false),
            pool_stats,
        })
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key files if they changed. A set that does not load (a bad file, no
    /// active key) is refused and the current keys keep signing. Returns whether a
    /// change was applied, or None when nothing changed.
    pub fn reload_keys(&self) -> Option<bool> {
        let cfg = &self.config.signing;
        let fp = crate::keys::fingerprint(&cfg.keys);
        if !self.keys_fingerprint.due(fp) {
            return None;
        }
        match KeySet::load(&cfg.keys, cfg.algorithm, true) {
            Ok(set) => {
                let before = self.keys();
                let kid = &set.active().kid;
                if !before.all().iter().any(|k| &k.key.kid == kid) {
                    // Resource servers that cached the old JWKS reject its tokens until
                    // they refetch: it should have been published as `next` first.
                    tracing::warn!(active = %kid, "the new active key was not published before; stage keys as `next` first");
                }
                tracing::info!(
                    active = %set.active().kid,
                    published = set.all().len(),
                    "signing keys reloaded"
                );
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.keys_fingerprint.record(fp, true);
                self.metrics.key_reloads.with_label_values(&["ok"]).inc();
                Some(true)
            }
            Err(errors) => {
                for (key, msg) in errors {
                    tracing::error!(key = %key, error = %msg, "new signing keys refused; the current keys keep signing");
                }
                self.keys_fingerprint.record(fp, false);
                self.metrics.key_reloads.with_label_values(&["error"]).inc();
                Some(false)
            }
        }
    }

    /// The running hook, if one is enabled. Callers hold the `Arc` for the whole call,
    /// so a hot reload never cuts off a request in flight.
    pub fn hooks(&self) -> Option<Arc<HookPool>> {
        self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Checks the hooks folder and, if it changed, starts the new version and swaps it
    /// in. A version that does not load keeps the old one serving. Blocking: run it
    /// off the I/O threads.
    pub fn reload_hooks(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
        let cfg = &self.config.hooks;
        let fp = crate::hooks::manifest::fingerprint(&cfg.dir, env);
        if !self.hooks_fingerprint.due(fp) {
            return None;
        }
        let outcome = match crate::hooks::manifest::load_enabled(&cfg.dir, cfg.timeout, env) {
            Ok(None) => {
                *self.hooks.write().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!("hooks reloaded: no hook enabled");
                Ok(())
            }
            Ok(Some(spec)) => {
                let name = spec.name.clone();
                let cache = self.hooks().map(|h| h.cache().clone()).unwrap_or_default();
                match HookPool::start_with(
                    spec,
                    cfg,
                    self.worker_command.clone(),
                    cache,
                    self.pool_stats.clone(),
                ) {
                    Ok(pool) => {
                        pool.attach_counters(&self.metrics.hook_outcomes);
                        *self.hooks.write().unwrap_or_else(|e| e.into_inner()) =
                            Some(Arc::new(pool));
                        tracing::info!(hook = %name, "hooks reloaded");
                        Ok(())
                    }
                    Err(e) => Err(format!("hook {name:?}: {e}")),
                }
            }
            Err(problems) => Err(problems
                .iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")),
        };
        match outcome {
            Ok(()) => {
                self.hooks_fingerprint.record(fp, true);
                self.metrics.hook_reloads.with_label_values(&["ok"]).inc();
                Some(true)
            }
            Err(e) => {
                self.hooks_fingerprint.record(fp, false);
                self.metrics
                    .hook_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(error = %e, "new hook version refused; the previous one keeps serving");
                Some(false)
            }
        }
    }

    pub fn claim_policy(&self) -> ClaimPolicy {
        self.policy
    }

    /// What the hook sees as `client`: from the registry, or `{id, name: id}` (D14).
    pub fn client_for(&self, id: &str) -> HookClient {
        let info = self
            .config
            .clients
            .get(id)
            .cloned()
            .unwrap_or_else(ClientInfo::default);
        HookClient {
            id: id.to_owned(),
            name: info.name.unwrap_or_else(|| id.to_owned()),
            tenant: info.tenant,
            metadata: info.metadata,
        }
    }

    pub fn requests_handle(&self, route: Route, outcome: &'static str) -> &IntCounter {
        self.request_counters
            .get(&(route.as_str(), outcome))
            .or_else(|| self.request_counters.get(&(route.as_str(), "error")))
            .expect("every route has an error counter")
    }

    /// Ready: keys loaded and hook compiled (both at build), upstream JWKS fetched, hook
    /// workers able to serve, and not shutting down.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && self.verifier.has_keys()
            && self.hooks().is_none_or(|h| h.can_serve())
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Fetches the upstream JWKS now (for the refresher and startup); the verifier counts
    /// the result. `starting`: the IdP has not answered yet since startup; containers of
    /// one pod start in any order, so early failures are logged at info, not as warnings.
    /// A failure keeps the last good keys (stale-if-error).
    pub async fn refresh_jwks(&self, rate_limited: bool, starting: bool) -> bool {
        match self.verifier.refresh(rate_limited).await {
            Ok(_) => true,
            Err(e) => {
                if starting {
                    tracing::info!(error = %e, "waiting for the IdP's JWKS");
                } else {
                    tracing::warn!(error = %e, "upstream JWKS refresh failed; the last good keys stay in use");
                }
                false
            }
        }
    }

    /// Gauges computed when scraped rather than kept up to date on the hot path.
    pub fn update_scrape_gauges(&self) {
        if let Some(age) = self.verifier.age() {
            self.metrics.upstream_jwks_age.set(age.as_secs_f64());
        }
        self.metrics.ready.set(i64::from(self.ready()));
        let keys = self.keys();
        let now = SystemTime::now();
        self.metrics.signing_key_info.reset();
        self.metrics.signing_key_age.reset();
        for k in keys.all() {
            let state = k.state.as_str();
            self.metrics
                .signing_key_info
                .with_label_values(&[k.key.kid.as_str(), &format!("{:?}", k.key.alg), state])
                .set(1);
            if let Some(age) = k.modified.and_then(|m| now.duration_since(m).ok()) {
                self.metrics
                    .signing_key_age
                    .with_label_values(&[k.key.kid.as_str(), state])
                    .set(age.as_secs_f64());
            }
        }
        let s = &self.pool_stats;
        self.metrics
            .hook_queue_depth
            .set(self.hooks().map_or(0, |h| h.queue_len()) as i64);
        self.metrics
            .hook_workers_busy
            .set(s.busy.load(Ordering::Relaxed) as i64);
        self.metrics
            .hook_workers_up
            .set(s.up.load(Ordering::Relaxed) as i64);
        let replaced = s.replaced.load(Ordering::Relaxed) as u64;
        let counted = self.metrics.hook_workers_replaced.get();
        if replaced > counted {
            self.metrics
                .hook_workers_replaced
                .inc_by(replaced - counted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChangeWatch;

    #[test]
    fn a_failed_version_is_retried_later_not_every_poll() {
        let w = ChangeWatch::new(1);
        assert!(!w.due(1), "already applied");
        assert!(w.due(2));
        w.record(2, false);
        assert!(!w.due(2), "failed just now: wait before retrying");
        assert!(w.due(3), "a newer version is tried at once");
        w.record(3, true);
        assert!(!w.due(3));
        assert!(w.due(2), "going back to an older version is a change too");
    }
}
