//! The hook worker pool: N child processes of this binary, each running one engine with
//! the hook compiled once, fed from one bounded queue, each call answered by a oneshot.
//!
//! Each worker process is driven by an async task on the runtime of the requests that
//! use it, doing non-blocking pipe I/O: the first call starts the tasks on its runtime
//! (the proxy's, which lives as long as the sidecar; a pool outlives no runtime). A
//! call costs the worker's wake-up and the reply's wake-up of that runtime, nothing
//! else: no thread in between. Under load calls are pipelined (`driver::DEPTH`): each
//! answer refills the worker's pipe, so a busy worker finds its next call waiting and
//! does not sleep between calls; behind a slow call, calls stay in the shared queue
//! instead. The cost is measured in `benches/hot_path.rs` (latency) and
//! `examples/pool_load.rs` (CPU per call under load).
//!
//! The parts: this module is the pool's face (start, submit, close on drop);
//! `queue` holds the shared queue and its admission rules; `process` starts, kills and
//! reaps worker processes; `driver` runs one worker slot, its decisions a pure state
//! machine (`driver::Core`) and its I/O a task that feeds it events.
//!
//! Bounds, and how they are enforced:
//! - time: the driver kills (SIGKILL) a worker still running a call past its limit
//!   plus a small grace, so a runaway regex or native builtin stops burning CPU at
//!   once; the worker is replaced. Timer-bound hooks answer their own timeout.
//! - memory: each worker runs under RLIMIT_AS (`hooks.memory_limit_mb`); an allocation
//!   past it aborts the worker, which fails that request and is replaced.
//! - plain-JS loops and recursion: Boa's runtime limits end them inside the worker
//!   with a clear error, without a restart.
//! - stuck workers: a call still running after 100 ms while other calls wait is set
//!   aside (it still answers its own client, by its deadline at the latest, when its
//!   process is killed if it is still running) and a fresh worker takes its place, so
//!   runaway hooks on every worker at once do not stall other clients; once the pool
//!   has more workers than `hooks.workers`, idle ones retire. Calls already in the
//!   stuck worker's pipe go back to the queue for another worker; the stuck worker may
//!   still run them, and its answers are dropped unread, which is safe because a hook's
//!   only effects are in its answer. At most `hooks.max_stuck_workers` calls are set
//!   aside at a time (`queue::Queue::reserve_aside`); beyond, calls wait.
//! - queue: `hooks.queue` pending calls; beyond, 503 `temporarily_unavailable`.
//! - replacements: a worker that keeps failing to start is retried with backoff, never
//!   in a tight loop; readiness fails while no worker is up.

mod driver;
mod process;
mod queue;

pub(crate) use process::OUT_OF_MEMORY;

use super::engine::Form;
use super::manifest::FlowSpec;
use super::protocol::{self, Done, Init, Lost};
use crate::config::HooksConfig;
use crate::error::OAuthError;
use driver::Shared;
use process::{Launcher, Started};
use queue::Queue;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// How the pool starts a worker process.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// This very binary, in worker mode.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args: vec![super::WORKER_ARG.to_owned()],
        })
    }
}

/// Performs hooks' `fetch` requests for the pool: the sidecar's egress
/// (`crate::egress`), which applies each step's allow-list. JSON in and out, as the
/// requests and answers cross the worker pipe.
pub trait Fetcher: Send + Sync {
    /// Request number `nth` of the running call, made by step `step`: a JSON
    /// `egress::FetchRequest` in, a JSON `egress::FetchResult` out, by `deadline`.
    fn fetch(
        &self,
        step: usize,
        request: serde_json::Value,
        deadline: Instant,
        nth: u32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>;
}

/// Live counters the metrics read at scrape time.
#[derive(Default, Debug)]
pub struct PoolStats {
    pub up: AtomicUsize,
    pub busy: AtomicUsize,
    pub replaced: AtomicUsize,
}

type ReplyTx = oneshot::Sender<Result<Done, Lost>>;

pub(crate) struct Job {
    /// From `protocol::call_frame`, encoded by the caller.
    pub frame: Vec<u8>,
    pub deadline: Instant,
    pub reply: ReplyTx,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running pool. Dropping it closes the queue: drivers finish every queued and
/// running call, then end, and their processes are reaped.
pub struct Pool {
    shared: Arc<Shared>,
    /// Workers started by `Pool::start`, waiting for the first call to bring a runtime.
    parked: Mutex<Vec<Started>>,
    pub stats: Arc<PoolStats>,
    /// Each step's form, in flow order.
    pub forms: Vec<Form>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queue.close();
        // Never used: its workers never got a driver.
        lock(&self.parked).clear();
    }
}

impl Pool {
    /// Starts `cfg.workers` processes and waits until each has compiled every step of
    /// the flow, so a step that does not compile is an error here and never a failed
    /// request.
    pub fn start(
        spec: &FlowSpec,
        cfg: &HooksConfig,
        command: WorkerCommand,
        stats: Arc<PoolStats>,
        fetcher: Option<Arc<dyn Fetcher>>,
    ) -> Result<Pool, String> {
        let steps = spec
            .steps
            .iter()
            .map(|s| protocol::StepInit {
                name: s.name.clone(),
                source: s.source.clone(),
                secrets: serde_json::to_string(&s.secrets).unwrap_or_else(|_| "{}".into()),
                timeout_ms: s.timeout.as_millis() as u64,
            })
            .collect();
        let init = serde_json::to_vec(&Init {
            steps,
            allow_unnamespaced: cfg.allow_unnamespaced_claims,
            memory_limit_bytes: cfg.memory_limit_bytes,
            loop_iterations: cfg.loop_iterations,
            recursion: cfg.recursion_limit,
        })
        .map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            queue: Queue::new(cfg.workers.max(1), cfg.max_stuck_workers, cfg.queue),
            launcher: Launcher {
                command,
                init: protocol::frame(protocol::TAG_INIT, &[&init]),
                stats: stats.clone(),
            },
            stats: stats.clone(),
            grace: cfg.kill_grace,
            fetcher,
        });
        // Start every worker at once; all must compile the hook.
        let starting: Vec<_> = (0..shared.queue.target())
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || shared.launcher.start())
            })
            .collect();
        let mut workers = Vec::new();
        let mut forms = Vec::new();
        let mut failure = None;
        for h in starting {
            match h
                .join()
                .unwrap_or_else(|_| Err("hook worker start panicked".into()))
            {
                Ok((w, f)) => {
                    forms = f;
                    workers.push(w);
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(Pool {
            shared,
            parked: Mutex::new(workers),
            stats,
            forms,
        })
    }

    /// Gives parked workers their driver tasks, on the caller's runtime: the replies
    /// then wake the very threads that wait for them.
    fn ensure_running(&self) {
        let mut parked = lock(&self.parked);
        if parked.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for w in parked.drain(..) {
            driver::spawn(&self.shared, Some(w), &rt);
        }
    }

    /// Queues a call; `Err` when the queue is full.
    pub(crate) fn submit(&self, job: Job) -> Result<(), OAuthError> {
        self.ensure_running();
        self.shared.queue.admit(job)
    }

    pub fn queue_len(&self) -> usize {
        self.shared.queue.len()
    }

    pub fn is_full(&self) -> bool {
        self.shared.queue.is_full()
    }
}
