//! A hook worker process's life, apart from what it is fed: starting it and waiting
//! for its hook to compile, its pipes, killing it, and finding out why it ended.

use super::{PoolStats, WorkerCommand, lock};
use crate::hooks::engine::Form;
use crate::hooks::progress::{self, Page};
use crate::hooks::protocol;
use bytes::BytesMut;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::unix::pipe;

/// How long a worker may take to start and compile the hook.
const START_LIMIT: Duration = Duration::from_secs(30);

/// One worker process. Dropping the last handle kills and reaps it.
pub(super) struct Proc {
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

/// How an aborted worker's reason starts: the one worker exit a hook author can act on,
/// so its client hears of it too (`HookPool::invoke`).
pub(crate) const OUT_OF_MEMORY: &str =
    "hook worker ran out of memory (hooks.memory_limit_mb) or stack (data nested too deeply)";

impl Proc {
    pub(super) fn kill(&self) {
        if let Some(c) = lock(&self.child).as_mut() {
            let _ = c.kill();
        }
    }

    /// Why the process ended, for the log (and, for `OUT_OF_MEMORY`, the client).
    fn describe_exit(status: std::process::ExitStatus, what: &str) -> String {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            // Rust aborts on a failed allocation (under RLIMIT_AS) and on a stack
            // overflow (Boa recurses natively on deeply nested data) alike.
            Some(6) => format!("{OUT_OF_MEMORY} and was replaced"),
            Some(sig) => format!("hook worker was killed by signal {sig} and was replaced"),
            None => format!("hook worker {what} ({status}) and was replaced"),
        }
    }

    pub(super) async fn exit_reason(&self, what: &str) -> String {
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
pub(super) struct Started {
    proc: Arc<Proc>,
    stdin: ChildStdin,
    stdout: ChildStdout,
    progress: Option<Page>,
}

/// What starting a worker takes; shared by every driver, which may replace its worker.
pub(super) struct Launcher {
    pub(super) command: WorkerCommand,
    /// The `TAG_INIT` frame: the hook, its secrets and its limits.
    pub(super) init: Vec<u8>,
    pub(super) stats: Arc<PoolStats>,
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

impl Launcher {
    /// Starts one worker process and waits until it compiled the hook (blocking).
    pub(super) fn start(&self) -> Result<(Started, Vec<Form>), String> {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(&self.command.program);
        command
            .args(&self.command.args)
            // Its own process group: a Ctrl-C meant for the sidecar's terminal does not
            // kill workers mid-call; they end when the sidecar closes their stdin.
            .process_group(0)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        // Without a page (no memfd here) a lost call is blamed on the flow's first step.
        let progress = Page::new().ok();
        match progress.as_ref().and_then(|p| p.share().ok()) {
            Some(fd) => command.env(progress::ENV, fd.to_string()),
            // Not one the sidecar itself was given.
            None => command.env_remove(progress::ENV),
        };
        let spawned = command.spawn();
        if let Some(p) = &progress {
            p.unshare();
        }
        let mut child = spawned.map_err(|e| format!("cannot start a hook worker: {e}"))?;
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("hook worker has no pipes".into());
        };
        self.stats.up.fetch_add(1, Ordering::Relaxed);
        let proc = Arc::new(Proc {
            child: Mutex::new(Some(child)),
            stats: self.stats.clone(),
        });
        let (guard, fired) = start_guard(&proc, START_LIMIT);
        let first = stdin
            .write_all(&self.init)
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
            Ok(Some((protocol::TAG_READY, forms))) => {
                let form = forms
                    .split(|b| *b == b',')
                    .map(|f| {
                        if f == b"action" {
                            Form::Action
                        } else {
                            Form::Legacy
                        }
                    })
                    .collect();
                Ok((
                    Started {
                        proc,
                        stdin,
                        stdout,
                        progress,
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
}

/// A worker's pipes, bound to the driving task's runtime.
pub(super) struct Io {
    pub(super) proc: Arc<Proc>,
    pub(super) tx: pipe::Sender,
    pub(super) rx: pipe::Receiver,
    pub(super) rbuf: BytesMut,
    /// Frames not yet taken by the pipe.
    pub(super) wbuf: Vec<u8>,
    /// Where the worker says which step it is in, read when a call is lost.
    progress: Option<Page>,
}

impl Io {
    /// The step the worker was in during its call `ordinal` (see `hooks::progress`).
    pub(super) fn step_of(&self, ordinal: u32) -> usize {
        self.progress.as_ref().map_or(0, |p| p.step_of(ordinal))
    }
}

impl Io {
    pub(super) fn new(s: Started) -> std::io::Result<Io> {
        Ok(Io {
            tx: pipe::Sender::from_owned_fd(OwnedFd::from(s.stdin))?,
            rx: pipe::Receiver::from_owned_fd(OwnedFd::from(s.stdout))?,
            proc: s.proc,
            progress: s.progress,
            rbuf: BytesMut::with_capacity(8 * 1024),
            wbuf: Vec::new(),
        })
    }
}
