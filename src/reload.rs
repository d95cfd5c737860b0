//! Hot reload bookkeeping shared by the key files and the hooks folder: what was last
//! applied, and a version that failed to load, so a poller retries it later rather than
//! on every poll.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The fingerprint last applied, a version that failed to load (retried after `RETRY`,
/// as the cause may pass, e.g. no memory for a new worker, rather than each poll), and
/// the version seen on the last poll.
///
/// A change is applied only once two polls in a row saw it: a file is often written in
/// more than one step (an editor's truncate-then-write, a copy), and a half-written
/// manifest can be valid TOML that enables nothing, which would serve tokens without
/// the hook until the next poll.
pub struct ChangeWatch(Mutex<State>);

struct State {
    applied: u64,
    failed: Option<(u64, Instant)>,
    seen: Option<u64>,
}

impl ChangeWatch {
    const RETRY: Duration = Duration::from_secs(30);

    pub fn new(applied: u64) -> Self {
        ChangeWatch(Mutex::new(State {
            applied,
            failed: None,
            seen: None,
        }))
    }

    /// Whether `fp` should be loaded now: it differs from what is applied, was already
    /// seen on the last poll (the folder held still for one interval), and did not just
    /// fail.
    pub fn due(&self, fp: u64) -> bool {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if fp == g.applied {
            g.seen = None;
            return false;
        }
        if matches!(g.failed, Some((f, at)) if f == fp && at.elapsed() < Self::RETRY) {
            return false;
        }
        let settled = g.seen == Some(fp);
        g.seen = Some(fp);
        settled
    }

    pub fn record(&self, fp: u64, ok: bool) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.seen = None;
        if ok {
            g.applied = fp;
            g.failed = None;
        } else {
            g.failed = Some((fp, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChangeWatch;

    // Breaks if a version were applied on the first poll that saw it (a half-written
    // file would be loaded), if a failed one were retried every poll, or if a newer
    // version had to wait for the retry.
    #[test]
    fn a_failed_version_is_retried_later_not_every_poll() {
        let w = ChangeWatch::new(1);
        assert!(!w.due(1), "already applied");
        assert!(!w.due(2), "seen once: maybe half-written");
        assert!(w.due(2), "held still for one poll");
        w.record(2, false);
        assert!(!w.due(2), "failed just now: wait before retrying");
        assert!(!w.due(3));
        assert!(w.due(3), "a newer version is tried once it holds still");
        w.record(3, true);
        assert!(!w.due(3));
        assert!(!w.due(2));
        assert!(w.due(2), "going back to an older version is a change too");
    }

    // Breaks if a file caught mid-write (seen once, then changed again) were applied.
    #[test]
    fn a_version_seen_once_and_replaced_is_never_applied() {
        let w = ChangeWatch::new(1);
        assert!(!w.due(7), "the truncated file");
        assert!(!w.due(8), "the finished one, first seen");
        assert!(w.due(8));
    }
}
