//! Everything the sidecar holds at run time, built once from the config: keys, the IdP
//! verifier, the hook in service, the upstream client, metrics, and readiness.

use crate::config::{Config, ConfigError};
use crate::exchange::Exchange;
use crate::hooks::pool::WorkerCommand;
use crate::hooks::{HookPool, HookSlot};
use crate::keys::{KeySet, KeyStore};
use crate::metrics::Metrics;
use crate::token::claims::ClaimPolicy;
use crate::token::verify::{RefreshCounters, Verifier};
use crate::upstream::{JwksFetcher, UpstreamClient};
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct App {
    pub config: Config,
    pub keys: KeyStore,
    pub verifier: Arc<Verifier>,
    pub hooks: HookSlot,
    pub upstream: UpstreamClient,
    pub passthrough_peer: HttpPeer,
    pub metrics: Metrics,
    policy: ClaimPolicy,
    shutting_down: AtomicBool,
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
        let metrics = Metrics::new();
        let keyed = |es: Vec<(String, String)>| es.into_iter().map(|(k, m)| ConfigError::new(k, m));
        let keys = KeyStore::load(&config.signing);
        let hooks = HookSlot::start(&config.hooks, env, worker_command, &metrics);
        let (keys, hooks) = match (keys, hooks) {
            (Ok(k), Ok(h)) => (k, h),
            (k, h) => {
                let mut errors = Vec::new();
                errors.extend(k.err().into_iter().flat_map(keyed));
                errors.extend(h.err().into_iter().flat_map(keyed));
                return Err(errors);
            }
        };
        let policy = ClaimPolicy {
            allow_unnamespaced: config.hooks.allow_unnamespaced_claims,
        };
        let up = &config.upstream;
        let upstream = UpstreamClient::new(up.address, up.connect_timeout, up.timeout);
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
        Ok(App {
            config,
            keys,
            verifier,
            hooks,
            upstream,
            passthrough_peer,
            metrics,
            policy,
            shutting_down: AtomicBool::new(false),
        })
    }

    /// The key set signing now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.current()
    }

    /// The running hook, if one is enabled.
    pub fn hooks(&self) -> Option<Arc<HookPool>> {
        self.hooks.current()
    }

    /// Re-reads the key files if they changed (see `KeyStore::reload`).
    pub fn reload_keys(&self) -> Option<bool> {
        self.keys.reload(&self.config.signing, &self.metrics)
    }

    /// Reloads the hooks folder if it changed (see `HookSlot::reload`). Blocking.
    pub fn reload_hooks(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
        self.hooks.reload(&self.config.hooks, env, &self.metrics)
    }

    /// The exchange core as this sidecar runs it now: the current hook version, the
    /// client registry and the claim rules.
    pub fn exchange(&self) -> Exchange<'_> {
        Exchange {
            hook: self.hooks(),
            clients: &self.config.clients,
            policy: self.policy,
            issuer: &self.config.signing.issuer,
            ignored_claims: Some(&self.metrics.hook_ignored_claims),
            log_console: true,
        }
    }

    /// Ready: keys loaded and hook compiled (both at build), upstream JWKS fetched, hook
    /// workers able to serve, and not shutting down.
    pub fn ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed)
            && self.verifier.has_keys()
            && self.hooks.can_serve()
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
        self.keys.observe(&self.metrics);
        self.hooks.observe(&self.metrics);
    }
}
