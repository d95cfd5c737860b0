//! The hook worker pool: N child processes of this binary, each running one engine with
//! the hook compiled once, fed through a bounded queue with a oneshot reply.
//!
//! Bounds, and how they are enforced:
//! - time: the pool waits for a worker's answer until the hook's limit (plus a small
//!   grace); past it the worker is killed (SIGKILL) and replaced, so a runaway regex or
//!   native builtin stops burning CPU at once. Timer-bound hooks answer their own timeout.
//! - memory: each worker runs under RLIMIT_AS (`hooks.memory_limit_mb`); an allocation
//!   past it aborts the worker, which fails that request and is replaced.
//! - plain-JS loops and recursion: Boa's runtime limits end them inside the worker
//!   with a clear error, without a restart.
//! - stuck workers: a call still running after 100 ms while other calls wait is set
//!   aside (it still answers its own client, by its deadline at the latest, and its
//!   process is then killed) and the slot starts a fresh worker, so runaway hooks on
//!   every worker at once do not stall other clients. At most
//!   `hooks.max_stuck_workers` calls are set aside at a time; beyond, calls wait.
//! - queue: `hooks.queue` pending calls; beyond, 503 `temporarily_unavailable`.
//! - replacements: a worker that keeps failing to start is retried with backoff, never
//!   in a tight loop; readiness fails while no worker is up.

use super::engine::{Form, RawOutcome};
use super::manifest::HookSpec;
use super::protocol::{self, Done, FromWorker, ToWorker};
use crate::config::HooksConfig;
use crate::error::OAuthError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout};

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

struct Init {
    msg: Vec<u8>,
    command: WorkerCommand,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl Worker {
    async fn spawn(init: &Init) -> Result<(Worker, Form), String> {
        let mut child = tokio::process::Command::new(&init.command.program)
            .args(&init.command.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a hook worker: {e}"))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("hook worker has no pipes".into());
        };
        stdin
            .write_all(&init.msg)
            .await
            .map_err(|e| format!("hook worker did not take its hook: {e}"))?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        let first = tokio::time::timeout(
            Duration::from_secs(30),
            protocol::read_async::<FromWorker>(&mut stdout),
        )
        .await
        .map_err(|_| "hook worker did not start within 30 s".to_owned())?
        .map_err(|e| format!("hook worker exited while starting: {e}"))?;
        match first {
            FromWorker::Ready { form } => {
                let form = if form == "action" {
                    Form::Action
                } else {
                    Form::Legacy
                };
                Ok((
                    Worker {
                        child,
                        stdin,
                        stdout,
                    },
                    form,
                ))
            }
            FromWorker::CompileError { message } => Err(message),
            FromWorker::Done(_) => Err("hook worker answered out of turn".into()),
        }
    }

    async fn call(&mut self, input: serde_json::Value, timeout: Duration) -> Result<Done, String> {
        let msg = protocol::encode(&ToWorker::Call {
            input,
            timeout_ms: timeout.as_millis() as u64,
        });
        self.stdin
            .write_all(&msg)
            .await
            .map_err(|e| e.to_string())?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        match protocol::read_async::<FromWorker>(&mut self.stdout).await {
            Ok(FromWorker::Done(d)) => Ok(d),
            Ok(_) => Err("hook worker answered out of turn".into()),
            Err(_) => Err(self.exit_reason().await),
        }
    }

    async fn exit_reason(&mut self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await {
            Ok(Ok(status)) => match status.signal() {
                Some(6) => {
                    "hook worker ran out of memory (hooks.memory_limit_mb) and was replaced".into()
                }
                Some(sig) => format!("hook worker was killed by signal {sig} and was replaced"),
                None => format!("hook worker exited with {status} and was replaced"),
            },
            _ => "hook worker stopped answering and was replaced".into(),
        }
    }

    async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The running pool. Dropping it closes the queue; workers finish their current call,
/// then exit and their processes are reaped.
pub struct Pool {
    tx: async_channel::Sender<Job>,
    pub stats: Arc<PoolStats>,
    pub form: Form,
    _thread: std::thread::JoinHandle<()>,
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
        let init = Arc::new(Init {
            msg: protocol::encode(&ToWorker::Init {
                source: spec.source.clone(),
                secrets,
                memory_limit_bytes: cfg.memory_limit_bytes,
                loop_iterations: cfg.loop_iterations,
                recursion: cfg.recursion_limit,
            }),
            command,
        });
        let (tx, rx) = async_channel::bounded::<Job>(cfg.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Form, String>>();
        let workers = cfg.workers.max(1);
        let grace = cfg.kill_grace;
        let max_aside = cfg.max_stuck_workers;
        let stats2 = stats.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hook-pool-{}", spec.name))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut spawning = tokio::task::JoinSet::new();
                    for _ in 0..workers {
                        let init = init.clone();
                        spawning.spawn(async move { Worker::spawn(&init).await });
                    }
                    let mut started = Vec::new();
                    while let Some(r) = spawning.join_next().await {
                        match r.map_err(|e| e.to_string()).and_then(|r| r) {
                            Ok((w, form)) => {
                                let _ = ready_tx.send(Ok(form));
                                started.push(w);
                            }
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                            }
                        }
                    }
                    if started.len() < workers {
                        for w in started {
                            w.kill().await;
                        }
                        return;
                    }
                    let local = tokio::task::LocalSet::new();
                    let aside = Arc::new(AtomicUsize::new(0));
                    for w in started {
                        stats2.up.fetch_add(1, Ordering::Relaxed);
                        local.spawn_local(slot(
                            w,
                            init.clone(),
                            rx.clone(),
                            stats2.clone(),
                            grace,
                            aside.clone(),
                            max_aside,
                        ));
                    }
                    drop(rx);
                    local.await;
                });
            })
            .map_err(|e| e.to_string())?;
        let mut form = Form::Legacy;
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(f)) => form = f,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("hook pool stopped while starting".into()),
            }
        }
        Ok(Pool {
            tx,
            stats,
            form,
            _thread: thread,
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
            if e.is_closed() {
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

/// A call that has run this long while others wait is treated as stuck: its worker is
/// set aside to finish (or be killed at its deadline) and the slot starts a fresh one.
/// Hook calls normally take microseconds to a few milliseconds.
const STUCK_AFTER: Duration = Duration::from_millis(100);

/// One call on `w`, bounded by `limit` + `grace`; the worker comes back only if it is
/// still sound.
async fn run_call(
    mut w: Worker,
    input: serde_json::Value,
    limit: Duration,
    grace: Duration,
) -> (Option<Worker>, Result<Done, String>) {
    match tokio::time::timeout(limit + grace, w.call(input, limit)).await {
        Ok(Ok(done)) => (Some(w), Ok(done)),
        Ok(Err(reason)) => {
            w.kill().await;
            (None, Err(reason))
        }
        Err(_) => {
            // Still running past its limit: a native builtin or regex that Boa cannot
            // interrupt. Only killing the process stops it.
            w.kill().await;
            (
                None,
                Ok(Done {
                    outcome: RawOutcome::TimedOut,
                    logs: Vec::new(),
                }),
            )
        }
    }
}

/// One worker slot: takes jobs, and replaces its process when it dies, overruns, or is
/// set aside as stuck while other calls wait (at most `max_aside` at once per pool).
async fn slot(
    worker: Worker,
    init: Arc<Init>,
    rx: async_channel::Receiver<Job>,
    stats: Arc<PoolStats>,
    grace: Duration,
    aside: Arc<AtomicUsize>,
    max_aside: usize,
) {
    let mut worker = Some(worker);
    let mut backoff = Duration::from_millis(50);
    loop {
        if worker.is_none() {
            match Worker::spawn(&init).await {
                Ok((w, _)) => {
                    worker = Some(w);
                    stats.up.fetch_add(1, Ordering::Relaxed);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a hook worker; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if rx.is_closed() && rx.is_empty() {
                        return;
                    }
                    continue;
                }
            }
        }
        let Ok(job) = rx.recv().await else {
            break;
        };
        let now = Instant::now();
        if job.reply.is_closed() {
            continue;
        }
        if now >= job.deadline {
            // Its whole time limit went by in the queue.
            let _ = job.reply.send(Ok(Done {
                outcome: RawOutcome::TimedOut,
                logs: Vec::new(),
            }));
            continue;
        }
        let Some(w) = worker.take() else { continue };
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let limit = job.deadline - now;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_local(async move {
            let _ = done_tx.send(run_call(w, job.input, limit, grace).await);
        });
        let started = Instant::now();
        let finished = loop {
            tokio::select! {
                r = &mut done_rx => break r.ok(),
                _ = tokio::time::sleep(STUCK_AFTER / 2) => {
                    let waiting = !rx.is_empty();
                    if waiting && started.elapsed() >= STUCK_AFTER
                        && aside.fetch_add(1, Ordering::Relaxed) < max_aside
                    {
                        break None;
                    }
                    if waiting && started.elapsed() >= STUCK_AFTER {
                        aside.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        };
        match finished {
            Some((back, result)) => {
                stats.busy.fetch_sub(1, Ordering::Relaxed);
                if back.is_none() {
                    stats.up.fetch_sub(1, Ordering::Relaxed);
                    stats.replaced.fetch_add(1, Ordering::Relaxed);
                }
                worker = back;
                let _ = job.reply.send(result);
            }
            None => {
                // Set the stuck call aside: it answers its own client when it ends (by
                // its deadline at the latest), then its process goes.
                let (stats2, aside2) = (stats.clone(), aside.clone());
                let reply = job.reply;
                tokio::task::spawn_local(async move {
                    let result = match done_rx.await {
                        Ok((back, result)) => {
                            if let Some(w) = back {
                                w.kill().await;
                            }
                            result
                        }
                        Err(_) => Err("hook worker stopped".to_owned()),
                    };
                    stats2.busy.fetch_sub(1, Ordering::Relaxed);
                    stats2.up.fetch_sub(1, Ordering::Relaxed);
                    stats2.replaced.fetch_add(1, Ordering::Relaxed);
                    aside2.fetch_sub(1, Ordering::Relaxed);
                    let _ = reply.send(result);
                });
            }
        }
    }
    if let Some(w) = worker.take() {
        stats.up.fetch_sub(1, Ordering::Relaxed);
        w.kill().await;
    }
}
