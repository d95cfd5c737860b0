//! Hot reload bookkeeping shared by the key files and the hooks folder: what was last
//! applied, and a version that failed to load, so a poller retries it later rather than
//! on every poll.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The fingerprint last applied, and a version that failed to load: retried after
/// `RETRY` (the cause may pass, e.g. no memory for a new worker) rather than each poll.
pub struct ChangeWatch(Mutex<(u64, Option<(u64, Instant)>)>);

impl ChangeWatch {
    const RETRY: Duration = Duration::from_secs(30);

    pub fn new(applied: u64) -> Self {
        ChangeWatch(Mutex::new((applied, None)))
    }

    /// Whether `fp` should be loaded now.
    pub fn due(&self, fp: u64) -> bool {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        fp != g.0 && !matches!(g.1, Some((f, at)) if f == fp && at.elapsed() < Self::RETRY)
    }

    pub fn record(&self, fp: u64, ok: bool) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            *g = (fp, None);
        } else {
            g.1 = Some((fp, Instant::now()));
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
