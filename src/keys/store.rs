//! The key set in service: swapped whole on rotation (a set that does not load is
//! refused and the current keys keep signing), and the key gauges read at scrape time.

use super::{KeySet, fingerprint};
use crate::config::SigningConfig;
use crate::metrics::Metrics;
use crate::reload::ChangeWatch;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

pub struct KeyStore {
    current: RwLock<Arc<KeySet>>,
    watch: ChangeWatch,
}

impl KeyStore {
    /// Loads every configured key; every problem comes back keyed (`signing.next[0]`).
    pub fn load(cfg: &SigningConfig) -> Result<KeyStore, Vec<(String, String)>> {
        let fp = fingerprint(&cfg.keys);
        let set = KeySet::load(&cfg.keys, cfg.algorithm, false)?;
        Ok(KeyStore {
            current: RwLock::new(Arc::new(set)),
            watch: ChangeWatch::new(fp),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the key files if they changed. Returns whether a change was applied, or
    /// None when nothing changed.
    pub fn reload(&self, cfg: &SigningConfig, metrics: &Metrics) -> Option<bool> {
        let fp = fingerprint(&cfg.keys);
        if !self.watch.due(fp) {
            return None;
        }
        match KeySet::load(&cfg.keys, cfg.algorithm, true) {
            Ok(set) => {
                let kid = &set.active().kid;
                if !self.current().all().iter().any(|k| &k.key.kid == kid) {
                    // Resource servers that cached the old JWKS reject its tokens until
                    // they refetch: it should have been published as `next` first.
                    tracing::warn!(active = %kid, "the new active key was not published before; stage keys as `next` first");
                }
                tracing::info!(
                    active = %set.active().kid,
                    published = set.all().len(),
                    "signing keys reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.watch.record(fp, true);
                metrics.key_reloads.with_label_values(&["ok"]).inc();
                Some(true)
            }
            Err(errors) => {
                for (key, msg) in errors {
                    tracing::error!(key = %key, error = %msg, "new signing keys refused; the current keys keep signing");
                }
                self.watch.record(fp, false);
                metrics.key_reloads.with_label_values(&["error"]).inc();
                Some(false)
            }
        }
    }

    /// `tokenhook_signing_key_info` and `_age_seconds`, set when scraped: kids change
    /// only on rotation, so the label sets are rebuilt rather than kept up to date.
    pub fn observe(&self, metrics: &Metrics) {
        let keys = self.current();
        let now = SystemTime::now();
        metrics.signing_key_info.reset();
        metrics.signing_key_age.reset();
        for k in keys.all() {
            let state = k.state.as_str();
            metrics
                .signing_key_info
                .with_label_values(&[k.key.kid.as_str(), &format!("{:?}", k.key.alg), state])
                .set(1);
            if let Some(age) = k.modified.and_then(|m| now.duration_since(m).ok()) {
                metrics
                    .signing_key_age
                    .with_label_values(&[k.key.kid.as_str(), state])
                    .set(age.as_secs_f64());
            }
        }
    }
}
