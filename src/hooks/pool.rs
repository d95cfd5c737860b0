//! The hook worker pool: N child processes of this binary, each running one engine with
//! the hook compiled once, fed through a bounded queue with a oneshot reply.
//!
//! Each worker process is driven by a plain thread doing blocking pipe I/O: a call costs
//! one wake-up of that thread, the pipe round trip, and the reply's wake-up of the
//! waiting request, with no async runtime in between (measured in `benches/hot_path.rs`).
//!
//! Bounds, and how they are enforced:
//! - time: a watchdog thread kills (SIGKILL) a worker still running a call past its
//!   limit plus a small grace, so a runaway regex or native builtin stops burning CPU at
//!   once; the worker is replaced. Timer-bound hooks answer their own timeout.
//! - memory: each worker runs under RLIMIT_AS (`hooks.memory_limit_mb`); an allocation
//!   past it aborts the worker, which fails that request and is replaced.
//! - plain-JS loops and recursion: Boa's runtime limits end them inside the worker
//!   with a clear error, without a restart.
//! - stuck workers: a call still running after 100 ms while other calls wait is set
//!   aside (it still answers its own client, by its deadline at the latest, and its
//!   process is then killed) and a fresh worker takes its place, so runaway hooks on
//!   every worker at once do not stall other clients. At most `hooks.max_stuck_workers`
//!   calls are set aside at a time; beyond, calls wait.
//! - queue: `hooks.queue` pending calls; beyond, 503 `temporarily_unavailable`.
//! - replacements: a worker that keeps failing to start is retried with backoff, never
//!   in a tight loop; readiness fails while no worker is up.

use super::engine::{Form, RawOutcome};
use super::manifest::HookSpec;
use super::protocol::{self, Done, FromWorker, ToWorker};
use crate::config::HooksConfig;
use crate::error::OAuthError;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Live counters the metrics read at scrape time.
#[derive(Default, Debug)]
pub struct PoolStats {
    pub up: AtomicUsize,
    pub busy: AtomicUsize,
    pub replaced: AtomicUsize,
}

pub(crate) struct Job {
    pub input: serde_json::Value,
    pub deadline: Instant,
    pub reply: tokio::sync::oneshot::Sender<Result<Done, String>>,
}

/// A call that has run this long while others wait is treated as stuck (hook calls
/// normally take microseconds to a few milliseconds).
const STUCK_AFTER: Duration = Duration::from_millis(100);
/// How long a worker may take to start and compile the hook.
const START_LIMIT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker process. Dropping it kills and reaps the process.
struct Worker {
    child: Arc<Mutex<Child>>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stats: Arc<PoolStats>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let mut c = lock(&self.child);
        let _ = c.kill();
        let _ = c.wait();
        self.stats.up.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker {
    fn spawn(shared: &Shared) -> Result<(Worker, Form), String> {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(&shared.command.program)
            .args(&shared.command.args)
            // Its own process group: a Ctrl-C meant for the sidecar's terminal does not
            // kill workers mid-call; they end when the sidecar closes their stdin.
            .process_group(0)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a hook worker: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("hook worker has no pipes".into());
        };
        shared.stats.up.fetch_add(1, Ordering::Relaxed);
        let mut w = Worker {
            child: Arc::new(Mutex::new(child)),
            stdin,
            stdout: BufReader::new(stdout),
            stats: shared.stats.clone(),
        };
        // The watchdog bounds the start too (a hook whose top level never ends).
        let token = shared.watch(&w, Instant::now() + START_LIMIT);
        let first = w
            .stdin
            .write_all(&shared.init)
            .and_then(|_| w.stdin.flush())
            .map_err(|e| format!("hook worker did not take its hook: {e}"))
            .and_then(|_| {
                protocol::read_blocking::<FromWorker>(&mut w.stdout)
                    .map_err(|e| format!("hook worker failed while starting: {e}"))
            });
        let killed = shared.unwatch(token).killed;
        match first {
            _ if killed => Err(format!(
                "hook worker did not start within {} s",
                START_LIMIT.as_secs()
            )),
            Ok(Some(FromWorker::Ready { form })) => {
                let form = if form == "action" {
                    Form::Action
                } else {
                    Form::Legacy
                };
                Ok((w, form))
            }
            Ok(Some(FromWorker::CompileError { message })) => Err(message),
            Ok(Some(FromWorker::Done(_))) => Err("hook worker answered out of turn".into()),
            Ok(None) => Err(w.exit_reason("exited while starting")),
            Err(e) => Err(e),
        }
    }

    fn call(&mut self, input: serde_json::Value, limit: Duration) -> Result<Done, ()> {
        let msg = protocol::encode(&ToWorker::Call {
            input,
            timeout_ms: limit.as_millis() as u64,
        });
        self.stdin.write_all(&msg).map_err(|_| ())?;
        self.stdin.flush().map_err(|_| ())?;
        match protocol::read_blocking::<FromWorker>(&mut self.stdout) {
            Ok(Some(FromWorker::Done(d))) => Ok(d),
            _ => Err(()),
        }
    }

    fn exit_reason(&self, what: &str) -> String {
        use std::os::unix::process::ExitStatusExt;
        let mut c = lock(&self.child);
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    return match status.signal() {
                        Some(6) => {
                            "hook worker ran out of memory (hooks.memory_limit_mb) and was replaced"
                                .into()
                        }
                        Some(sig) => {
                            format!("hook worker was killed by signal {sig} and was replaced")
                        }
                        None => format!("hook worker {what} ({status}) and was replaced"),
                    };
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return "hook worker stopped answering and was replaced".into(),
            }
        }
    }
}

/// A call in progress, as the watchdog sees it.
struct Watched {
    started: Instant,
    deadline: Instant,
    child: Arc<Mutex<Child>>,
    killed: bool,
    set_aside: Arc<AtomicBool>,
    /// Whether the watchdog may set this call aside (real calls, not starts).
    is_call: bool,
}

struct Unwatched {
    killed: bool,
}

/// What every slot thread and the watchdog share.
struct Shared {
    init: Vec<u8>,
    command: WorkerCommand,
    rx: crossbeam_channel::Receiver<Job>,
    stats: Arc<PoolStats>,
    grace: Duration,
    max_aside: usize,
    aside: AtomicUsize,
    /// Slot threads alive, and how many there should be when nothing is stuck.
    live: AtomicUsize,
    target: usize,
    watched: Mutex<HashMap<u64, Watched>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Shared {
    fn watch(&self, w: &Worker, deadline: Instant) -> u64 {
        self.watch_inner(w, deadline, false, Arc::default())
    }

    fn watch_inner(
        &self,
        w: &Worker,
        deadline: Instant,
        is_call: bool,
        set_aside: Arc<AtomicBool>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.watched).insert(
            id,
            Watched {
                started: Instant::now(),
                deadline,
                child: w.child.clone(),
                killed: false,
                set_aside,
                is_call,
            },
        );
        id
    }

    fn unwatch(&self, id: u64) -> Unwatched {
        let killed = lock(&self.watched).remove(&id).is_some_and(|w| w.killed);
        Unwatched { killed }
    }
}

/// The running pool. Dropping it closes the queue; workers finish their current call,
/// then exit and their processes are reaped.
pub struct Pool {
    tx: crossbeam_channel::Sender<Job>,
    shared: Arc<Shared>,
    pub stats: Arc<PoolStats>,
    pub form: Form,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropping `tx` disconnects the queue: slots finish what is queued, then end.
        self.shared.closed.store(true, Ordering::Relaxed);
    }
}

impl Pool {
    /// Starts `cfg.workers` processes and waits until each has compiled the hook, so a
    /// hook that does not compile is an error here and never a failed request.
    pub fn start(
        spec: &HookSpec,
        cfg: &HooksConfig,
        command: WorkerCommand,
        stats: Arc<PoolStats>,
    ) -> Result<Pool, String> {
        let secrets = serde_json::to_string(&spec.secrets).unwrap_or_else(|_| "{}".into());
        let (tx, rx) = crossbeam_channel::bounded::<Job>(cfg.queue);
        let shared = Arc::new(Shared {
            init: protocol::encode(&ToWorker::Init {
                source: spec.source.clone(),
                secrets,
                memory_limit_bytes: cfg.memory_limit_bytes,
                loop_iterations: cfg.loop_iterations,
                recursion: cfg.recursion_limit,
            }),
            command,
            rx,
            stats: stats.clone(),
            grace: cfg.kill_grace,
            max_aside: cfg.max_stuck_workers,
            aside: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            target: cfg.workers.max(1),
            watched: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        std::thread::Builder::new()
            .name(format!("hook-watchdog-{}", spec.name))
            .spawn({
                let shared = shared.clone();
                move || watchdog(&shared)
            })
            .map_err(|e| e.to_string())?;
        // Start every worker at once; all must compile the hook.
        let starting: Vec<_> = (0..cfg.workers.max(1))
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || Worker::spawn(&shared))
            })
            .collect();
        let mut workers = Vec::new();
        let mut form = Form::Legacy;
        let mut failure = None;
        for h in starting {
            match h
                .join()
                .unwrap_or_else(|_| Err("hook worker start panicked".into()))
            {
                Ok((w, f)) => {
                    form = f;
                    workers.push(w);
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            shared.closed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        for w in workers {
            if let Err(e) = spawn_slot(&shared, Some(w)) {
                shared.closed.store(true, Ordering::Relaxed);
                return Err(e.to_string());
            }
        }
        Ok(Pool {
            tx,
            shared,
            stats,
            form,
        })
    }

    /// Queues a call; `Err` when the queue is full or the pool is gone.
    pub(crate) fn submit(&self, job: Job) -> Result<(), OAuthError> {
        self.tx.try_send(job).map_err(|e| {
            let mut err = OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many token requests in progress; retry shortly",
            );
            err.retry_after = Some(1);
            if e.is_disconnected() {
                err.description = "hook workers are not running".into();
            }
            err
        })
    }

    pub fn queue_len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }
}

fn spawn_slot(shared: &Arc<Shared>, worker: Option<Worker>) -> std::io::Result<()> {
    let s = shared.clone();
    shared.live.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("hook-slot".into())
        .spawn(move || {
            // A retired surplus slot has already taken itself out of the count.
            if !slot(&s, worker) {
                s.live.fetch_sub(1, Ordering::Relaxed);
            }
        })
        .map(|_| ())
        .inspect_err(|_| {
            shared.live.fetch_sub(1, Ordering::Relaxed);
        })
}

fn timed_out() -> Result<Done, String> {
    Ok(Done {
        outcome: RawOutcome::TimedOut,
        logs: Vec::new(),
    })
}

/// One worker slot: takes jobs, and replaces its process when it dies or overruns.
/// Slots beyond `target` (started while calls were stuck) end once the queue is empty.
/// Returns true when the slot retired as surplus (and so left the count itself).
fn slot(shared: &Shared, mut worker: Option<Worker>) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        if shared.closed.load(Ordering::Relaxed) && shared.rx.is_empty() {
            return false;
        }
        if worker.is_none() {
            match Worker::spawn(shared) {
                Ok((w, _)) => {
                    worker = Some(w);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    if shared.closed.load(Ordering::Relaxed) {
                        return false;
                    }
                    tracing::error!(error = %e, "cannot start a hook worker; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let job = match shared.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => job,
            // Idle for a while: a slot started while calls were stuck is not needed.
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if retire_surplus(shared) {
                    return true;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return false,
        };
        let now = Instant::now();
        if job.reply.is_closed() {
            continue;
        }
        if now >= job.deadline {
            // Its whole time limit went by in the queue.
            let _ = job.reply.send(timed_out());
            continue;
        }
        let Some(w) = worker.as_mut() else { continue };
        let set_aside = Arc::new(AtomicBool::new(false));
        let id = shared.watch_inner(w, job.deadline + shared.grace, true, set_aside.clone());
        shared.stats.busy.fetch_add(1, Ordering::Relaxed);
        let result = w.call(job.input, job.deadline - now);
        shared.stats.busy.fetch_sub(1, Ordering::Relaxed);
        let killed = shared.unwatch(id).killed;
        let reply = match result {
            Ok(done) => Ok(done),
            // Still running past its limit (a native builtin or regex Boa cannot
            // interrupt): the watchdog killed it.
            Err(()) if killed => timed_out(),
            Err(()) => Err(w.exit_reason("exited")),
        };
        let broken = reply.is_err() || killed;
        let _ = job.reply.send(reply);
        if set_aside.load(Ordering::Relaxed) {
            // No longer stuck; a healthy worker keeps serving.
            shared.aside.fetch_sub(1, Ordering::Relaxed);
        }
        if broken {
            shared.stats.replaced.fetch_add(1, Ordering::Relaxed);
            worker = None; // killed and reaped by Drop
        }
        if shared.rx.is_empty() && retire_surplus(shared) {
            return true;
        }
    }
}

/// Takes this slot out of the count if there are more slots than `target`; the
/// compare-and-swap keeps two slots from both retiring below it.
fn retire_surplus(shared: &Shared) -> bool {
    let mut live = shared.live.load(Ordering::Relaxed);
    while live > shared.target {
        match shared
            .live
            .compare_exchange(live, live - 1, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => live = now,
        }
    }
    false
}

/// Kills workers past their deadline and sets stuck calls aside while others wait.
fn watchdog(shared: &Arc<Shared>) {
    loop {
        let idle = {
            let mut watched = lock(&shared.watched);
            if shared.closed.load(Ordering::Relaxed) && watched.is_empty() && shared.rx.is_empty() {
                return;
            }
            let now = Instant::now();
            let waiting = !shared.rx.is_empty();
            for w in watched.values_mut() {
                if !w.killed && now >= w.deadline {
                    w.killed = true;
                    let _ = lock(&w.child).kill();
                } else if w.is_call
                    && waiting
                    && !w.set_aside.load(Ordering::Relaxed)
                    && now.duration_since(w.started) >= STUCK_AFTER
                    && shared.live.load(Ordering::Relaxed) < shared.target + shared.max_aside
                    && shared.aside.fetch_add(1, Ordering::Relaxed) < shared.max_aside
                {
                    w.set_aside.store(true, Ordering::Relaxed);
                    if spawn_slot(shared, None).is_err() {
                        w.set_aside.store(false, Ordering::Relaxed);
                        shared.aside.fetch_sub(1, Ordering::Relaxed);
                    }
                } else if w.is_call
                    && waiting
                    && !w.set_aside.load(Ordering::Relaxed)
                    && now.duration_since(w.started) >= STUCK_AFTER
                    && shared.live.load(Ordering::Relaxed) < shared.target + shared.max_aside
                {
                    // Over the bound: undo the reservation made by the check above.
                    shared.aside.fetch_sub(1, Ordering::Relaxed);
                }
            }
            watched.is_empty()
        };
        std::thread::sleep(if idle {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(10)
        });
    }
}
