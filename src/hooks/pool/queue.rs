//! The pool's one queue and its admission rules: which calls wait, how many drivers
//! run, and how many of them may hold a set-aside call, shared by every driver.

use super::{Job, ReplyTx, lock};
use crate::error::OAuthError;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Notify;

/// A job as queued: its frame encoded once, by the caller.
pub(super) struct Call {
    pub(super) frame: Vec<u8>,
    pub(super) deadline: std::time::Instant,
    /// None once the call was handed to another worker (see `Core::set_aside`).
    pub(super) reply: Option<ReplyTx>,
}

/// The answer to a call the queue has no room for.
fn queue_full() -> OAuthError {
    OAuthError::overloaded("too many token requests in progress; retry shortly")
}

pub(super) struct Queue {
    calls: Mutex<VecDeque<Call>>,
    capacity: usize,
    /// Wakes an idle driver when a call is queued (and all of them at close).
    pub(super) notify: Notify,
    /// `hooks.workers`: the drivers the pool keeps besides set-aside ones.
    target: usize,
    max_aside: usize,
    /// Driver tasks alive (each owns one worker, or is starting one).
    pub(super) live: AtomicUsize,
    /// Drivers whose stuck call was set aside.
    aside: AtomicUsize,
    closed: AtomicBool,
}

impl Queue {
    pub(super) fn new(target: usize, max_aside: usize, capacity: usize) -> Queue {
        Queue {
            calls: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            target,
            max_aside,
            live: AtomicUsize::new(0),
            aside: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues a call; `Err` when the queue is full.
    pub(super) fn admit(&self, job: Job) -> Result<(), OAuthError> {
        let mut q = lock(&self.calls);
        if q.len() >= self.capacity {
            return Err(queue_full());
        }
        q.push_back(Call {
            frame: job.frame,
            deadline: job.deadline,
            reply: Some(job.reply),
        });
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.calls).len()
    }

    pub(super) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    pub(super) fn target(&self) -> usize {
        self.target
    }

    pub(super) fn pop(&self) -> Option<Call> {
        lock(&self.calls).pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        lock(&self.calls).is_empty()
    }

    /// Puts calls that never ran back at the head of the queue, in their order.
    pub(super) fn requeue(&self, calls: Vec<Call>) {
        if calls.is_empty() {
            return;
        }
        let mut q = lock(&self.calls);
        for c in calls.into_iter().rev() {
            q.push_front(c);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Drivers finish every queued and running call, then end.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Closed with nothing left to run: a driver with nothing in flight may end.
    pub(super) fn is_done(&self) -> bool {
        self.is_closed() && self.is_empty()
    }

    /// Takes this driver out of the count if there are more than `target` besides the
    /// set-aside ones (whose replacements must stay) and nothing waits; the
    /// compare-and-swap keeps two drivers from both retiring below it.
    pub(super) fn retire_surplus(&self) -> bool {
        // Closing drivers end once everything is answered; retiring then could leave
        // a requeued call without a driver.
        if self.is_closed() || !self.is_empty() {
            return false;
        }
        let mut live = self.live.load(Ordering::Relaxed);
        while live > self.target + self.aside.load(Ordering::Relaxed) {
            match self
                .live
                .compare_exchange(live, live - 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => live = now,
            }
        }
        false
    }

    /// Reserves room for one more set-aside call, if the bound allows.
    pub(super) fn reserve_aside(&self) -> bool {
        if self.live.load(Ordering::Relaxed) >= self.target + self.max_aside {
            return false;
        }
        if self.aside.fetch_add(1, Ordering::Relaxed) < self.max_aside {
            return true;
        }
        self.aside.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// The set-aside call a reservation was for has ended, one way or another.
    pub(super) fn release_aside(&self) {
        self.aside.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn job() -> (
        Job,
        tokio::sync::oneshot::Receiver<
            Result<crate::hooks::protocol::Done, crate::hooks::protocol::Lost>,
        >,
    ) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            frame: vec![7],
            deadline: Instant::now() + Duration::from_secs(1),
            reply,
        };
        (job, rx)
    }

    // Breaks if the capacity check is off by one (`hooks.queue` + 1 calls waiting) or
    // if a full queue stopped answering 503 with a Retry-After.
    #[test]
    fn a_full_queue_answers_503_and_keeps_its_calls() {
        let q = Queue::new(1, 1, 2);
        let (a, _ra) = job();
        let (b, _rb) = job();
        let (c, _rc) = job();
        assert!(q.admit(a).is_ok() && q.admit(b).is_ok());
        assert!(q.is_full());
        let err = q.admit(c).unwrap_err();
        assert_eq!(
            (err.http_status(), err.code().as_str(), err.retry_after()),
            (503, "temporarily_unavailable", Some(1))
        );
        assert_eq!(q.len(), 2);
    }

    // Breaks if requeued calls went to the back (a call behind a stuck one would wait
    // behind everything queued since) or came back reversed.
    #[test]
    fn requeued_calls_go_back_to_the_head_in_their_order() {
        let q = Queue::new(1, 1, 8);
        let (a, _ra) = job();
        q.admit(a).unwrap();
        let call = |b: u8| Call {
            frame: vec![b],
            deadline: Instant::now(),
            reply: None,
        };
        q.requeue(vec![call(1), call(2)]);
        let order: Vec<u8> = std::iter::from_fn(|| q.pop()).map(|c| c.frame[0]).collect();
        assert_eq!(order, [1, 2, 7]);
    }

    // Breaks if `hooks.max_stuck_workers` stopped bounding set-aside calls (runaway
    // hooks would then start workers without end), or if a released place were lost.
    #[test]
    fn set_aside_places_are_bounded_by_max_stuck() {
        let q = Queue::new(1, 1, 8);
        q.live.store(1, Ordering::Relaxed);
        assert!(q.reserve_aside());
        q.live.fetch_add(1, Ordering::Relaxed);
        assert!(
            !q.reserve_aside(),
            "a second place beyond max_stuck_workers = 1"
        );
        q.release_aside();
        q.live.fetch_sub(1, Ordering::Relaxed);
        assert!(q.reserve_aside(), "the released place is free again");
    }

    // Breaks if a driver retired while calls wait or the pool is closing, or if the
    // replacement of a set-aside driver counted as surplus.
    #[test]
    fn only_surplus_drivers_retire_and_never_below_target() {
        let q = Queue::new(1, 2, 8);
        q.live.store(2, Ordering::Relaxed);
        assert!(q.reserve_aside());
        assert!(
            !q.retire_surplus(),
            "one aside + its replacement are not surplus"
        );
        q.release_aside();
        let (a, _ra) = job();
        q.admit(a).unwrap();
        assert!(!q.retire_surplus(), "a call waits");
        let _ = q.pop();
        assert!(q.retire_surplus());
        assert_eq!(q.live.load(Ordering::Relaxed), 1);
        assert!(!q.retire_surplus(), "never below hooks.workers");
        q.live.store(2, Ordering::Relaxed);
        q.close();
        assert!(
            !q.retire_surplus(),
            "closing drivers end, they do not retire"
        );
    }
}
