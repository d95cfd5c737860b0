//! The hook worker process (`tokenhook __hook-worker`): one Boa engine, fed calls over
//! stdin, answering on stdout. A process so the pool can truly stop a runaway hook
//! (kill it) and bound its memory (RLIMIT_AS), which a thread cannot offer: Boa cannot
//! interrupt native builtins or regex backtracking and has no heap limit.

use super::engine::{Engine, Limits};
use super::protocol::{self, Done, FromWorker, ToWorker};
use std::io::Write;
use std::time::{Duration, Instant};

/// Runs the worker loop until stdin closes. Returns the process exit code.
pub fn main() -> u8 {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let send = |out: &mut std::io::StdoutLock<'_>, msg: &FromWorker| -> std::io::Result<()> {
        out.write_all(&protocol::encode(msg))?;
        out.flush()
    };
    let init = match protocol::read_blocking::<ToWorker>(&mut input) {
        Ok(Some(ToWorker::Init {
            source,
            secrets,
            memory_limit_bytes,
            loop_iterations,
            recursion,
        })) => (
            source,
            secrets,
            memory_limit_bytes,
            Limits {
                loop_iterations,
                recursion,
            },
        ),
        _ => return 2,
    };
    let (source, secrets, memory, limits) = init;
    if memory > 0 {
        // Beyond this, allocation fails and the process aborts: the pool sees it die,
        // fails that one request and starts a fresh worker.
        let _ = rlimit::setrlimit(rlimit::Resource::AS, memory, memory);
    }
    let mut engine = match Engine::compile(&source, &secrets, limits) {
        Ok(e) => e,
        Err(e) => {
            let _ = send(
                &mut out,
                &FromWorker::CompileError {
                    message: e.to_string(),
                },
            );
            return 1;
        }
    };
    drop(secrets);
    let form = match engine.form() {
        super::engine::Form::Legacy => "legacy",
        super::engine::Form::Action => "action",
    };
    if send(&mut out, &FromWorker::Ready { form: form.into() }).is_err() {
        return 1;
    }
    loop {
        match protocol::read_blocking::<ToWorker>(&mut input) {
            Ok(Some(ToWorker::Call {
                input: json,
                timeout_ms,
            })) => {
                let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                let (outcome, logs) = engine.call(&json, deadline);
                if send(&mut out, &FromWorker::Done(Done { outcome, logs })).is_err() {
                    return 1;
                }
            }
            Ok(None) => return 0,
            Ok(Some(ToWorker::Init { .. })) | Err(_) => return 2,
        }
    }
}
