//! The hook version in service: started at startup, swapped whole by a hot reload once
//! every worker of the new version compiled it (a version that does not load is refused
//! and the previous one keeps serving), and the pool gauges read at scrape time.

use super::HookPool;
use super::manifest::{self, Problem};
use super::pool::{PoolStats, WorkerCommand};
use crate::config::HooksConfig;
use crate::metrics::Metrics;
use crate::reload::ChangeWatch;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

pub struct HookSlot {
    current: RwLock<Option<Arc<HookPool>>>,
    watch: ChangeWatch,
    command: WorkerCommand,
    /// The process's one HTTP client for hooks' `fetch` (pooled across versions).
    egress: Option<Arc<crate::egress::Egress>>,
    /// Shared by every version, so replacements are counted across reloads.
    stats: Arc<PoolStats>,
}

impl HookSlot {
    /// Starts the enabled hook's workers; a hook that does not compile is an error here,
    /// keyed like config errors, never a failed request.
    pub fn start(
        cfg: &HooksConfig,
        env: &dyn Fn(&str) -> Option<String>,
        command: WorkerCommand,
        metrics: &Metrics,
    ) -> Result<HookSlot, Vec<Problem>> {
        let fp = manifest::fingerprint(&cfg.dir, env);
        let stats: Arc<PoolStats> = Default::default();
        let egress = match crate::egress::Egress::new(&cfg.fetch_roots) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => {
                // Hooks still run; each fetch is refused, and this says why.
                tracing::error!(error = %e, "cannot set up the HTTP client for hooks' fetch");
                None
            }
        };
        let pool = Self::load(
            cfg,
            env,
            &command,
            Default::default(),
            &stats,
            metrics,
            &egress,
        )?;
        Ok(HookSlot {
            current: RwLock::new(pool),
            watch: ChangeWatch::new(fp),
            command,
            egress,
            stats,
        })
    }

    fn load(
        cfg: &HooksConfig,
        env: &dyn Fn(&str) -> Option<String>,
        command: &WorkerCommand,
        cache: Arc<super::cache::SharedCache>,
        stats: &Arc<PoolStats>,
        metrics: &Metrics,
        egress: &Option<Arc<crate::egress::Egress>>,
    ) -> Result<Option<Arc<HookPool>>, Vec<Problem>> {
        let Some(spec) = manifest::load_flow(&cfg.dir, cfg.timeout, env)? else {
            return Ok(None);
        };
        // The whole flow starts, or none of it: a step that fails to load refuses the
        // version (D19).
        let key = if spec.has_hook && spec.steps.len() == 1 {
            "enabled"
        } else {
            "flow"
        };
        let pool = HookPool::start_with(
            spec,
            cfg,
            command.clone(),
            cache,
            stats.clone(),
            egress.clone(),
        )
        .map_err(|e| vec![(format!("hooks.dir/{}: {key}", manifest::MANIFEST), e)])?;
        pool.attach_counters(&metrics.hook_outcomes);
        pool.attach_fetch_metrics(&metrics.hook_fetches, &metrics.hook_fetch_duration);
        Ok(Some(Arc::new(pool)))
    }

    /// The running hook, if one is enabled. Callers hold the `Arc` for the whole call,
    /// so a hot reload never cuts off a request in flight.
    pub fn current(&self) -> Option<Arc<HookPool>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the hooks folder and, if it changed, starts the new version and swaps it
    /// in. Blocking (it starts processes): run it off the I/O threads. Returns whether a
    /// change was applied, or None when nothing changed.
    pub fn reload(
        &self,
        cfg: &HooksConfig,
        env: &dyn Fn(&str) -> Option<String>,
        metrics: &Metrics,
    ) -> Option<bool> {
        let fp = manifest::fingerprint(&cfg.dir, env);
        if !self.watch.due(fp) {
            return None;
        }
        // A reload keeps `api.cache` contents.
        let cache = self
            .current()
            .map(|h| h.cache().clone())
            .unwrap_or_default();
        match Self::load(
            cfg,
            env,
            &self.command,
            cache,
            &self.stats,
            metrics,
            &self.egress,
        ) {
            Ok(pool) => {
                match &pool {
                    Some(p) => tracing::info!(hook = %p.name(), "hooks reloaded"),
                    None => tracing::info!("hooks reloaded: no hook enabled"),
                }
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = pool;
                self.watch.record(fp, true);
                metrics.hook_reloads.with_label_values(&["ok"]).inc();
                Some(true)
            }
            Err(problems) => {
                let e = problems
                    .iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.watch.record(fp, false);
                metrics.hook_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "new hook version refused; the previous one keeps serving");
                Some(false)
            }
        }
    }

    /// Workers are up and the queue has room (or no hook is enabled).
    pub fn can_serve(&self) -> bool {
        self.current().is_none_or(|h| h.can_serve())
    }

    /// The pool gauges, read from live counters when scraped rather than kept up to date
    /// on the hot path.
    pub fn observe(&self, metrics: &Metrics) {
        let s = &self.stats;
        metrics
            .hook_queue_depth
            .set(self.current().map_or(0, |h| h.queue_len()) as i64);
        metrics
            .hook_workers_busy
            .set(s.busy.load(Ordering::Relaxed) as i64);
        metrics
            .hook_workers_up
            .set(s.up.load(Ordering::Relaxed) as i64);
        let replaced = s.replaced.load(Ordering::Relaxed) as u64;
        let counted = metrics.hook_workers_replaced.get();
        if replaced > counted {
            metrics.hook_workers_replaced.inc_by(replaced - counted);
        }
    }
}
