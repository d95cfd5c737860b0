//! The hook worker pool: N child processes of this binary, each running one engine with
//! the hook compiled once, fed from one bounded queue, each call answered by a oneshot.
//!
//! Each worker process is driven by an async task on the runtime of the requests that
//! use it, doing non-blocking pipe I/O: the first call starts the tasks on its runtime
//! (the proxy's, which lives as long as the sidecar; a pool outlives no runtime). A
//! call costs the worker's wake-up and the reply's wake-up of that runtime, nothing
//! else: no thread in between. Under load calls are pipelined (`DEPTH`): each answer
//! refills the worker's pipe, so a busy worker finds its next call waiting and does not
//! sleep between calls; behind a slow call, calls stay in the shared queue instead.
//! The cost is measured in `benches/hot_path.rs` (latency) and `examples/pool_load.rs`
//! (CPU per call under load).
//!
//! Bounds, and how they are enforced:
//! - time: the task kills (SIGKILL) a worker still running a call past its limit plus a
//!   small grace, so a runaway regex or native builtin stops burning CPU at once; the
//!   worker is replaced. Timer-bound hooks answer their own timeout.
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
//!   aside at a time; beyond, calls wait.
//! - queue: `hooks.queue` pending calls; beyond, 503 `temporarily_unavailable`.
//! - replacements: a worker that keeps failing to start is retried with backoff, never
//!   in a tight loop; readiness fails while no worker is up.

use super::engine::{self, Form, RawOutcome};
use super::manifest::HookSpec;
use super::protocol::{self, Done, Init};
use crate::config::HooksConfig;
use crate::error::OAuthError;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{Notify, oneshot};

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

type ReplyTx = oneshot::Sender<Result<Done, String>>;

pub(crate) struct Job {
    /// From `protocol::call_frame`, encoded by the caller.
    pub frame: Vec<u8>,
    pub deadline: Instant,
    pub reply: ReplyTx,
}

/// A job as queued: its frame encoded once, by the caller.
struct Call {
    frame: Vec<u8>,
    deadline: Instant,
    /// None once the call was handed to another worker (see `set_aside`).
    reply: Option<ReplyTx>,
}

/// A call that has run this long while others wait is treated as stuck (hook calls
/// normally take microseconds to a few milliseconds).
const STUCK_AFTER: Duration = Duration::from_millis(100);
/// How often calls in flight are checked against their deadlines and for being stuck.
const TICK: Duration = Duration::from_millis(10);
/// How long a worker may take to start and compile the hook.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Calls sent to one worker ahead of its answers, once it answers (see `drive`).
/// Deeper pipelines let one wake-up of a worker or of the runtime serve several calls
/// (`examples/pool_load`: CPU per seed call 44 µs at depth 1, 34 at 2, 27 at 4, no
/// better at 8); calls behind a stuck one move to another worker after `STUCK_AFTER`.
const DEPTH: usize = 4;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker process. Dropping the last handle kills and reaps it.
struct Proc {
    child: Mutex<Option<Child>>,
    stats: Arc<PoolStats>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stats.up.fetch_sub(1, Ordering::Relaxed);
        let slot = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = slot.take() else { return };
        let _ = child.kill();
        if matches!(child.try_wait(), Ok(None)) {
            // Tearing down a killed process takes a moment; drops happen on runtime
            // threads, which must not wait for it.
            let spawned = std::thread::Builder::new()
                .name("hook-reap".into())
                .spawn(move || {
                    let _ = child.wait();
                });
            drop(spawned);
        }
    }
}

impl Proc {
    fn kill(&self) {
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
    }

    /// Why the process ended, for the failed call's error and the log.
    fn describe_exit(status: std::process::ExitStatus, what: &str) -> String {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            // Rust aborts on a failed allocation (under RLIMIT_AS) and on a stack
            // overflow (Boa recurses natively on deeply nested data) alike.
            Some(6) => "hook worker ran out of memory (hooks.memory_limit_mb) or stack \
                        (data nested too deeply) and was replaced"
                .into(),
            Some(sig) => format!("hook worker was killed by signal {sig} and was replaced"),
            None => format!("hook worker {what} ({status}) and was replaced"),
        }
    }

    async fn exit_reason(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let polled = match lock(&self.child).as_mut() {
                Some(c) => c.try_wait(),
                None => Ok(None),
            };
            match polled {
                Ok(Some(status)) => return Self::describe_exit(status, what),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                _ => return "hook worker stopped answering and was replaced".into(),
            }
        }
    }
}

/// A worker that compiled the hook, with its pipes still blocking, not yet bound to a
/// runtime.
struct Started {
    proc: Arc<Proc>,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// Kills the process if the start takes longer than `limit` (a hook whose top level
/// never ends); a plain thread, since starts are blocking and rare.
fn start_guard(
    proc: &Arc<Proc>,
    limit: Duration,
) -> (std::sync::mpsc::Sender<()>, Arc<AtomicBool>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let fired = Arc::new(AtomicBool::new(false));
    let (p, f) = (proc.clone(), fired.clone());
    let _ = std::thread::Builder::new()
        .name("hook-start".into())
        .spawn(move || {
            if rx.recv_timeout(limit) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                f.store(true, Ordering::Relaxed);
                p.kill();
            }
        });
    (tx, fired)
}

/// Starts one worker process and waits until it compiled the hook (blocking).
fn start_worker(shared: &Shared) -> Result<(Started, Form), String> {
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
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("hook worker has no pipes".into());
    };
    shared.stats.up.fetch_add(1, Ordering::Relaxed);
    let proc = Arc::new(Proc {
        child: Mutex::new(Some(child)),
        stats: shared.stats.clone(),
    });
    let (guard, fired) = start_guard(&proc, START_LIMIT);
    let first = stdin
        .write_all(&shared.init)
        .map_err(|e| format!("hook worker did not take its hook: {e}"))
        .and_then(|_| {
            protocol::read_blocking(&mut stdout)
                .map_err(|e| format!("hook worker failed while starting: {e}"))
        });
    drop(guard);
    let status = || lock(&proc.child).as_mut().and_then(|c| c.wait().ok());
    match first {
        _ if fired.load(Ordering::Relaxed) => Err(format!(
            "hook worker did not start within {} s",
            START_LIMIT.as_secs()
        )),
        Ok(Some((protocol::TAG_READY, form))) => {
            let form = if form == b"action" {
                Form::Action
            } else {
                Form::Legacy
            };
            Ok((
                Started {
                    proc,
                    stdin,
                    stdout,
                },
                form,
            ))
        }
        Ok(Some((protocol::TAG_COMPILE_ERROR, message))) => {
            Err(String::from_utf8_lossy(&message).into_owned())
        }
        Ok(Some(_)) => Err("hook worker answered out of turn".into()),
        Ok(None) => Err(match status() {
            Some(s) => Proc::describe_exit(s, "exited while starting"),
            None => "hook worker exited while starting".into(),
        }),
        Err(e) => Err(e),
    }
}

/// A worker's pipes, bound to the driving task's runtime.
struct Io {
    proc: Arc<Proc>,
    tx: pipe::Sender,
    rx: pipe::Receiver,
    rbuf: BytesMut,
    /// Frames not yet taken by the pipe.
    wbuf: Vec<u8>,
}

impl Io {
    fn new(s: Started) -> std::io::Result<Io> {
        Ok(Io {
            tx: pipe::Sender::from_owned_fd(OwnedFd::from(s.stdin))?,
            rx: pipe::Receiver::from_owned_fd(OwnedFd::from(s.stdout))?,
            proc: s.proc,
            rbuf: BytesMut::with_capacity(8 * 1024),
            wbuf: Vec::new(),
        })
    }
}

/// What every driver task shares.
struct Shared {
    init: Vec<u8>,
    command: WorkerCommand,
    stats: Arc<PoolStats>,
    grace: Duration,
    target: usize,
    max_aside: usize,
    capacity: usize,
    queue: Mutex<VecDeque<Call>>,
    /// Wakes an idle driver when a call is queued (and all of them at close).
    notify: Notify,
    /// Driver tasks alive (each owns one worker, or is starting one).
    live: AtomicUsize,
    /// Drivers whose stuck call was set aside.
    aside: AtomicUsize,
    closed: AtomicBool,
    /// Workers started by `Pool::start`, waiting for the first call to bring a runtime.
    parked: Mutex<Vec<Started>>,
}

impl Shared {
    fn pop(&self) -> Option<Call> {
        lock(&self.queue).pop_front()
    }

    fn queue_is_empty(&self) -> bool {
        lock(&self.queue).is_empty()
    }

    /// Puts calls that never ran back at the head of the queue, in their order.
    fn requeue(&self, calls: Vec<Call>) {
        if calls.is_empty() {
            return;
        }
        let mut q = lock(&self.queue);
        for c in calls.into_iter().rev() {
            q.push_front(c);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Takes this driver out of the count if there are more than `target` besides the
    /// set-aside ones (whose replacements must stay) and nothing waits; the
    /// compare-and-swap keeps two drivers from both retiring below it.
    fn retire_surplus(&self) -> bool {
        // Closing drivers end once everything is answered; retiring then could leave
        // a requeued call without a driver.
        if self.closed.load(Ordering::Relaxed) || !self.queue_is_empty() {
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
    fn reserve_aside(&self) -> bool {
        if self.live.load(Ordering::Relaxed) >= self.target + self.max_aside {
            return false;
        }
        if self.aside.fetch_add(1, Ordering::Relaxed) < self.max_aside {
            return true;
        }
        self.aside.fetch_sub(1, Ordering::Relaxed);
        false
    }
}

/// The running pool. Dropping it closes the queue: drivers finish every queued and
/// running call, then end, and their processes are reaped.
pub struct Pool {
    shared: Arc<Shared>,
    pub stats: Arc<PoolStats>,
    pub form: Form,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.notify.notify_waiters();
        // Never used: its workers never got a driver.
        lock(&self.shared.parked).clear();
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
        let init = serde_json::to_vec(&Init {
            source: spec.source.clone(),
            secrets,
            memory_limit_bytes: cfg.memory_limit_bytes,
            loop_iterations: cfg.loop_iterations,
            recursion: cfg.recursion_limit,
        })
        .map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            init: protocol::frame(protocol::TAG_INIT, &[&init]),
            command,
            stats: stats.clone(),
            grace: cfg.kill_grace,
            target: cfg.workers.max(1),
            max_aside: cfg.max_stuck_workers,
            capacity: cfg.queue,
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            live: AtomicUsize::new(0),
            aside: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            parked: Mutex::new(Vec::new()),
        });
        // Start every worker at once; all must compile the hook.
        let starting: Vec<_> = (0..shared.target)
            .map(|_| {
                let shared = shared.clone();
                std::thread::spawn(move || start_worker(&shared))
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
            return Err(e);
        }
        *lock(&shared.parked) = workers;
        Ok(Pool {
            shared,
            stats,
            form,
        })
    }

    /// Gives parked workers their driver tasks, on the caller's runtime: the replies
    /// then wake the very threads that wait for them.
    fn ensure_running(&self) {
        let mut parked = lock(&self.shared.parked);
        if parked.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for w in parked.drain(..) {
            self.shared.live.fetch_add(1, Ordering::Relaxed);
            rt.spawn(driver(self.shared.clone(), Some(w)));
        }
    }

    /// Queues a call; `Err` when the queue is full.
    pub(crate) fn submit(&self, job: Job) -> Result<(), OAuthError> {
        self.ensure_running();
        let mut q = lock(&self.shared.queue);
        if q.len() >= self.shared.capacity {
            let mut err = OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many token requests in progress; retry shortly",
            );
            err.retry_after = Some(1);
            return Err(err);
        }
        q.push_back(Call {
            frame: job.frame,
            deadline: job.deadline,
            reply: Some(job.reply),
        });
        drop(q);
        self.shared.notify.notify_one();
        Ok(())
    }

    pub fn queue_len(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    pub fn is_full(&self) -> bool {
        self.queue_len() >= self.shared.capacity
    }
}

fn timed_out() -> Result<Done, String> {
    Ok(Done {
        outcome: RawOutcome::TimedOut,
        logs: Vec::new(),
    })
}

/// Reads one answer frame into the call's result.
fn answer(tag: u8, payload: &[u8]) -> Result<Done, String> {
    match tag {
        protocol::TAG_FINISHED => {
            let text = std::str::from_utf8(payload)
                .map_err(|_| "hook worker answered with invalid UTF-8".to_owned())?;
            let (outcome, logs) = engine::parse_finished(text);
            Ok(Done { outcome, logs })
        }
        protocol::TAG_ENDED => serde_json::from_slice::<Done>(payload)
            .map_err(|e| format!("hook worker answered badly: {e}")),
        _ => Err("hook worker answered out of turn".into()),
    }
}

/// A call sent to this driver's worker, in the order sent.
struct InFlight {
    call: Call,
    /// When the worker began it: when it was sent, or when the call ahead of it ended.
    started: Instant,
}

/// `drive` boxed: a driver starts another when it sets a call aside.
fn driver(
    shared: Arc<Shared>,
    first: Option<Started>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(drive(shared, first))
}

/// Drives one worker slot for the pool's life: feeds it calls, reads its answers,
/// kills it past a deadline, replaces it when it dies, and sets a stuck call aside.
async fn drive(shared: Arc<Shared>, first: Option<Started>) {
    let mut io = first.and_then(|s| Io::new(s).ok());
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut aside = false;
    // SIGKILL sent; `culprit` while the call that overran has not answered.
    let mut killed = false;
    let mut culprit = false;
    let mut busy = false;
    let mut backoff = Duration::from_millis(50);
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut timer_armed = false;
    // The last event brought answers: the worker keeps up, its pipe may be refilled.
    let mut answered = false;
    loop {
        if busy == inflight.is_empty() {
            busy = !busy;
            if busy {
                shared.stats.busy.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.stats.busy.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if inflight.is_empty() {
            if aside {
                aside = false;
                shared.aside.fetch_sub(1, Ordering::Relaxed);
            }
            if shared.closed.load(Ordering::Relaxed) && shared.queue_is_empty() {
                break;
            }
            if shared.retire_surplus() {
                return;
            }
        }
        let Some(w) = io.as_mut() else {
            let s = shared.clone();
            let started = tokio::task::spawn_blocking(move || start_worker(&s))
                .await
                .unwrap_or_else(|_| Err("hook worker start panicked".into()))
                .and_then(|(started, _)| {
                    Io::new(started).map_err(|e| format!("cannot drive a hook worker: {e}"))
                });
            match started {
                Ok(started) => {
                    io = Some(started);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    if shared.closed.load(Ordering::Relaxed) {
                        break;
                    }
                    tracing::error!(error = %e, "cannot start a hook worker; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        };

        // Only a driver with nothing in flight waits for queue wake-ups, so `notify_one`
        // reaches a driver that can start a call at once: not one restarting its
        // worker, nor one busy with calls. Registered before the queue is looked at, so
        // no wake-up is missed.
        let free = inflight.is_empty() && !aside && !killed;
        let mut waiter = free.then(|| {
            let mut n = Box::pin(shared.notify.notified());
            n.as_mut().enable();
            n
        });
        // A free worker takes one call. More go into its pipe behind others only right
        // after it answered, i.e. while it visibly keeps up: under load that pipelines,
        // and calls behind a slow one stay in the queue, where any worker (or one set
        // aside for them) can take them and where they count against `hooks.queue`.
        let take = if answered {
            DEPTH.saturating_sub(inflight.len())
        } else if free {
            1
        } else {
            0
        };
        answered = false;
        let mut room = !aside && !killed && take > 0;
        let mut taken = 0;
        while room {
            let Some(call) = shared.pop() else { break };
            let now = Instant::now();
            let Some(reply) = call.reply.as_ref() else {
                continue;
            };
            if reply.is_closed() {
                continue;
            }
            if now >= call.deadline {
                // Its whole time limit went by in the queue.
                if let Some(r) = call.reply {
                    let _ = r.send(timed_out());
                }
                continue;
            }
            w.wbuf.extend_from_slice(&call.frame);
            inflight.push_back(InFlight { call, started: now });
            taken += 1;
            room = taken < take;
        }
        if !inflight.is_empty() {
            // Busy now: a wake-up this waiter caught passes on to a free driver.
            waiter = None;
            if !shared.queue_is_empty() {
                shared.notify.notify_one();
            }
        }

        // While calls are in flight a coarse tick checks deadlines and stuck calls.
        // Moving a timer to each call's own deadline would re-register it per call, and
        // tokio wakes a parked runtime thread whenever the earliest timer moves earlier.
        let ticking = !inflight.is_empty();
        if ticking && !timer_armed {
            timer.as_mut().reset((Instant::now() + TICK).into());
            timer_armed = true;
        }
        let listening = waiter.is_some();
        let event = tokio::select! {
            biased;
            read = w.rx.read_buf(&mut w.rbuf) => Event::Read(read.is_ok_and(|n| n > 0)),
            wrote = w.tx.write(&w.wbuf), if !w.wbuf.is_empty() => Event::Wrote(wrote),
            _ = timer.as_mut(), if ticking => Event::Tick,
            _ = async {
                match waiter.as_mut() {
                    Some(n) => n.as_mut().await,
                    None => std::future::pending().await,
                }
            }, if listening => Event::Notified,
        };
        match event {
            Event::Read(open) => {
                let mut broken = !open;
                // The worker answered out of protocol: it is replaced, but the call
                // that got that answer has had its reply.
                let mut answered_badly = false;
                while !broken {
                    match protocol::split_frame(&mut w.rbuf) {
                        Ok(Some((tag, payload))) => {
                            let Some(done) = inflight.pop_front() else {
                                broken = true;
                                break;
                            };
                            culprit = false;
                            answered = true;
                            let result = answer(tag, &payload);
                            answered_badly = result.is_err();
                            broken = answered_badly;
                            if let Some(r) = done.call.reply {
                                let _ = r.send(result);
                            }
                            if let Some(next) = inflight.front_mut() {
                                next.started = Instant::now();
                            }
                        }
                        Ok(None) => break,
                        Err(_) => broken = true,
                    }
                }
                if broken && let Some(w) = io.take() {
                    w.proc.kill();
                    if killed && culprit {
                        // Still running past its limit (a native builtin or regex Boa
                        // cannot interrupt): the call times out.
                        if let Some(r) = inflight.pop_front().and_then(|f| f.call.reply) {
                            let _ = r.send(timed_out());
                        }
                    } else if !killed && !answered_badly {
                        // It died in the call at the front (out of memory, a crash):
                        // that call fails with the reason, found without holding up
                        // this driver.
                        if let Some(r) = inflight.pop_front().and_then(|f| f.call.reply) {
                            let proc = w.proc.clone();
                            tokio::spawn(async move {
                                let _ = r.send(Err(proc.exit_reason("exited").await));
                            });
                        }
                    }
                    // The rest never started, or ran without effect: another worker
                    // takes them.
                    shared.requeue(
                        inflight
                            .drain(..)
                            .filter(|f| f.call.reply.is_some())
                            .map(|f| f.call)
                            .collect(),
                    );
                    shared.stats.replaced.fetch_add(1, Ordering::Relaxed);
                    killed = false;
                    culprit = false;
                }
            }
            Event::Wrote(Ok(n)) => {
                w.wbuf.drain(..n);
            }
            Event::Wrote(Err(_)) => {
                // The worker is gone; its read side reports how.
                w.wbuf.clear();
                w.proc.kill();
            }
            Event::Tick => {
                timer_armed = false;
                let now = Instant::now();
                let Some(front) = inflight.front() else {
                    continue;
                };
                if !killed && now >= front.call.deadline.max(front.started) + shared.grace {
                    killed = true;
                    culprit = true;
                    w.proc.kill();
                } else if !killed
                    && !aside
                    && now.duration_since(front.started) >= STUCK_AFTER
                    && (inflight.len() > 1 || !shared.queue_is_empty())
                    && shared.reserve_aside()
                {
                    aside = true;
                    set_aside(&shared, &mut inflight);
                    shared.live.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(driver(shared.clone(), None));
                }
            }
            Event::Notified => {}
        }
    }
    shared.live.fetch_sub(1, Ordering::Relaxed);
    if busy {
        shared.stats.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What woke a driver.
enum Event {
    /// The worker's pipe was read; false at its end or on an error.
    Read(bool),
    Wrote(std::io::Result<usize>),
    Tick,
    Notified,
}

/// Hands the calls queued behind a stuck one to other workers. Their frames are
/// already in this worker's pipe: it will still run them, and their answers are
/// dropped unread (a hook's effects are only in its answer, so that is safe).
fn set_aside(shared: &Shared, inflight: &mut VecDeque<InFlight>) {
    let moved = inflight
        .iter_mut()
        .skip(1)
        .filter_map(|f| {
            f.call.reply.take().map(|reply| Call {
                frame: f.call.frame.clone(),
                deadline: f.call.deadline,
                reply: Some(reply),
            })
        })
        .collect();
    shared.requeue(moved);
}
