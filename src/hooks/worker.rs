//! The hook worker process (`tokenhook __hook-worker`): one Boa engine, fed calls over
//! stdin, answering on stdout. A process so the pool can truly stop a runaway hook
//! (kill it) and bound its memory (RLIMIT_AS), which a thread cannot offer: Boa cannot
//! interrupt native builtins or regex backtracking and has no heap limit.

use super::engine::{Engine, Limits, RawOutcome, Reply};
use super::protocol::{self, Done, Init};
use std::io::{BufReader, Write};
use std::os::fd::AsFd;
use std::time::Instant;

/// Runs the worker loop until stdin closes. Returns the process exit code.
pub fn main() -> u8 {
    // The pipes as plain files: std's stdout is line-buffered and would split a frame
    // at any 0x0A byte of its length into two writes. Reads are buffered here, since a
    // pipelined next call often arrives in the same read as the current one.
    let (Ok(stdin), Ok(stdout)) = (
        std::io::stdin().as_fd().try_clone_to_owned(),
        std::io::stdout().as_fd().try_clone_to_owned(),
    ) else {
        return 2;
    };
    let mut input = BufReader::with_capacity(64 * 1024, std::fs::File::from(stdin));
    let mut out = std::fs::File::from(stdout);
    let send = |out: &mut std::fs::File, tag: u8, payload: &[u8]| {
        out.write_all(&protocol::frame(tag, &[payload]))
    };
    let init: Init = match protocol::read_blocking(&mut input) {
        Ok(Some((protocol::TAG_INIT, body))) => match serde_json::from_slice(&body) {
            Ok(init) => init,
            Err(_) => return 2,
        },
        _ => return 2,
    };
    if init.memory_limit_bytes > 0 {
        // Beyond this, allocation fails and the process aborts: the pool sees it die,
        // fails that one request and starts a fresh worker.
        let _ = rlimit::setrlimit(
            rlimit::Resource::AS,
            init.memory_limit_bytes,
            init.memory_limit_bytes,
        );
    }
    let limits = Limits {
        loop_iterations: init.loop_iterations,
        recursion: init.recursion,
    };
    let mut engine = match Engine::compile(&init.source, &init.secrets, limits) {
        Ok(e) => e,
        Err(e) => {
            let _ = send(
                &mut out,
                protocol::TAG_COMPILE_ERROR,
                e.to_string().as_bytes(),
            );
            return 1;
        }
    };
    drop(init);
    let form = match engine.form() {
        super::engine::Form::Legacy => "legacy",
        super::engine::Form::Action => "action",
    };
    if send(&mut out, protocol::TAG_READY, form.as_bytes()).is_err() {
        return 1;
    }
    loop {
        let body = match protocol::read_blocking(&mut input) {
            Ok(Some((protocol::TAG_CALL, body))) if body.len() >= 8 => body,
            Ok(None) => return 0,
            _ => return 2,
        };
        let due = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
        let left = protocol::remaining(due);
        let reply = if left.is_zero() {
            // Its whole time limit went by while it waited: not run at all.
            Reply::Ended(RawOutcome::TimedOut, Vec::new())
        } else {
            match serde_json::from_slice(&body[8..]) {
                Ok(json) => engine.call_raw(&json, Instant::now() + left),
                Err(e) => Reply::Ended(
                    RawOutcome::Aborted {
                        message: format!("bad call input: {e}"),
                    },
                    Vec::new(),
                ),
            }
        };
        let sent = match reply {
            Reply::Finished(text) => send(&mut out, protocol::TAG_FINISHED, text.as_bytes()),
            Reply::Ended(outcome, logs) => {
                let done = serde_json::to_vec(&Done { outcome, logs }).unwrap_or_default();
                send(&mut out, protocol::TAG_ENDED, &done)
            }
        };
        if sent.is_err() {
            return 1;
        }
    }
}
