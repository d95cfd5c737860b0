//! `api.cache` for Actions: one store shared by every worker, with Auth0's limits.
//!
//! Workers get a snapshot with each call and send back the writes they made; the store
//! applies them after the call. Like Auth0's, it is best-effort: concurrent calls may
//! not see each other's writes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Auth0's limits for a trigger's cache.
pub const MAX_ENTRIES: usize = 20;
pub const MAX_KEY_BYTES: usize = 64;
pub const MAX_VALUE_BYTES: usize = 4096;
pub const MAX_TOTAL_BYTES: usize = 8192;
pub const MAX_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;
pub const DEFAULT_TTL_MS: u64 = 15 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    /// Milliseconds since the epoch.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CacheOp {
    Set {
        key: String,
        value: String,
        expires_at: u64,
    },
    Delete {
        key: String,
    },
}

#[derive(Default)]
pub struct SharedCache {
    entries: Mutex<BTreeMap<String, Entry>>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SharedCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live entries at `now`; expired ones are dropped on the way.
    pub fn snapshot(&self, now: u64) -> BTreeMap<String, Entry> {
        let mut e = self.lock();
        e.retain(|_, v| v.expires_at > now);
        e.clone()
    }

    /// Applies a call's writes, re-checking the limits (another call may have filled
    /// the store meanwhile); a write that does not fit is dropped.
    pub fn apply(&self, ops: Vec<CacheOp>, now: u64) {
        if ops.is_empty() {
            return;
        }
        apply_ops(&mut self.lock(), ops, now);
    }

    pub fn seed(&self, entries: BTreeMap<String, Entry>) {
        *self.lock() = entries;
    }
}

/// Applies writes to a store with Auth0's limits: the shared store after a call, and a
/// worker's snapshot between the steps of a flow, whose Actions share the trigger's
/// cache (a later Action reads what an earlier one wrote).
pub fn apply_ops(e: &mut BTreeMap<String, Entry>, ops: Vec<CacheOp>, now: u64) {
    e.retain(|_, v| v.expires_at > now);
    for op in ops {
        match op {
            CacheOp::Delete { key } => {
                e.remove(&key);
            }
            CacheOp::Set {
                key,
                value,
                expires_at,
            } => {
                if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES || expires_at <= now {
                    continue;
                }
                let expires_at = expires_at.min(now + MAX_LIFETIME_MS);
                let old = e.insert(key.clone(), Entry { value, expires_at });
                let total: usize = e.iter().map(|(k, v)| k.len() + v.value.len()).sum();
                if e.len() > MAX_ENTRIES || total > MAX_TOTAL_BYTES {
                    match old {
                        Some(o) => e.insert(key, o),
                        None => e.remove(&key),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_expiry() {
        let c = SharedCache::default();
        let now = 1_000_000;
        let set = |k: &str, v: &str, exp: u64| CacheOp::Set {
            key: k.into(),
            value: v.into(),
            expires_at: exp,
        };
        c.apply(
            vec![
                set("a", "1", now + 10),
                set(&"k".repeat(65), "x", now + 10),
                set("big", &"v".repeat(4097), now + 10),
            ],
            now,
        );
        assert_eq!(c.snapshot(now).len(), 1);
        assert!(c.snapshot(now + 10).is_empty());
        let ops = (0..25)
            .map(|i| set(&format!("k{i}"), "v", now + 100))
            .collect();
        c.apply(ops, now);
        assert_eq!(c.snapshot(now).len(), MAX_ENTRIES);
        c.apply(vec![CacheOp::Delete { key: "k0".into() }], now);
        assert_eq!(c.snapshot(now).len(), MAX_ENTRIES - 1);
        let c = SharedCache::default();
        c.apply(
            (0..3)
                .map(|i| set(&format!("b{i}"), &"v".repeat(4000), now + 100))
                .collect(),
            now,
        );
        assert_eq!(c.snapshot(now).len(), 2, "8 KB total");
        c.apply(vec![set("long", "v", now + 10 * MAX_LIFETIME_MS)], now);
        assert!(
            c.snapshot(now)
                .get("long")
                .is_none_or(|e| e.expires_at <= now + MAX_LIFETIME_MS)
        );
    }
}
