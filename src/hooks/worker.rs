//! The hook worker process (`tokenhook __hook-worker`): the flow's Boa engines (a
//! legacy Hook in its own, the Actions together, D21), fed calls over stdin, answering
//! each call, the whole flow, on stdout. A process so the pool can truly stop a runaway hook
//! (kill it) and bound its memory (RLIMIT_AS), which a thread cannot offer: Boa cannot
//! interrupt native builtins or regex backtracking and has no heap limit.

use super::engine::{Engine, Form, Host, Limits, RawOutcome, Reply};
use super::flow::View;
use super::protocol::{self, Init, StepDone};
use crate::token::claims::ClaimPolicy;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    let groups = match compile(&init.steps, limits) {
        Ok(groups) => groups,
        Err(message) => {
            let _ = send(&mut out, protocol::TAG_COMPILE_ERROR, message.as_bytes());
            return 1;
        }
    };
    let policy = ClaimPolicy {
        allow_unnamespaced: init.allow_unnamespaced,
    };
    let forms: Vec<&str> = groups
        .iter()
        .flat_map(|g| {
            let form = match g.engine.form() {
                Form::Legacy => "legacy",
                Form::Action => "action",
            };
            std::iter::repeat_n(form, g.limits.len())
        })
        .collect();
    if send(&mut out, protocol::TAG_READY, forms.join(",").as_bytes()).is_err() {
        return 1;
    }
    let chan = Rc::new(RefCell::new(Channel {
        input,
        out,
        calls: VecDeque::new(),
        ordinal: 0,
        // Only a flow of more than one step has another step to name.
        progress: (init.steps.len() > 1)
            .then(super::progress::Mark::from_env)
            .flatten(),
    }));
    let mut groups = groups;
    for g in groups.iter_mut() {
        g.engine.set_host(Box::new(StepHost {
            chan: chan.clone(),
            first: g.first,
        }));
    }
    let mut answer = Vec::with_capacity(4096);
    loop {
        let body = match chan.borrow_mut().next_call() {
            Some(body) if body.len() >= 8 => body,
            Some(_) => return 2,
            None => return 0,
        };
        let due = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
        answer.clear();
        answer.extend_from_slice(&[0, 0, 0, 0, protocol::TAG_FINISHED]);
        run_flow(&mut groups, &body[8..], due, policy, &mut answer);
        let len = (answer.len() - 4) as u32;
        answer[..4].copy_from_slice(&len.to_be_bytes());
        if chan.borrow_mut().out.write_all(&answer).is_err() {
            return 1;
        }
    }
}

/// The worker's pipes, shared by the steps' engines: calls come in on them, and so do
/// the answers to a hook's `fetch` requests, which the sidecar performs. A call the
/// sidecar pipelined while a hook waits for an answer is kept for the main loop.
struct Channel {
    input: BufReader<std::fs::File>,
    out: std::fs::File,
    calls: VecDeque<Vec<u8>>,
    /// The calls taken so far, the current one's ordinal (`hooks::progress`).
    ordinal: u32,
    /// Where the pool reads which step a lost call was in.
    progress: Option<super::progress::Mark>,
}

impl Channel {
    /// The next call's payload; `None` once the sidecar closed the pipe (or broke the
    /// protocol, which ends the worker the same way).
    fn next_call(&mut self) -> Option<Vec<u8>> {
        if let Some(c) = self.calls.pop_front() {
            self.ordinal = self.ordinal.wrapping_add(1);
            return Some(c);
        }
        loop {
            match protocol::read_blocking(&mut self.input).ok()?? {
                (protocol::TAG_CALL, body) => {
                    self.ordinal = self.ordinal.wrapping_add(1);
                    return Some(body);
                }
                // An answer to a request of a call that is over.
                (protocol::TAG_FETCH_REPLY, _) => continue,
                _ => return None,
            }
        }
    }

    /// Whether a frame starts within `max`. The sidecar writes each frame whole, so the
    /// rest follows at once.
    fn readable(&self, max: Duration) -> bool {
        if !self.input.buffer().is_empty() {
            return true;
        }
        let fd = self.input.get_ref();
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: max.as_secs() as _,
            tv_nsec: max.subsec_nanos() as _,
        };
        rustix::event::poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
    }
}

/// An engine's view of the channel: requests carry their step's index in the flow, so
/// the sidecar applies that hook's egress policy.
struct StepHost {
    chan: Rc<RefCell<Channel>>,
    /// The flow index of the engine's first step.
    first: usize,
}

impl Host for StepHost {
    fn send(&mut self, step: usize, requests: &str) -> bool {
        let head = format!("{{\"step\":{},\"requests\":", self.first + step);
        let frame = protocol::frame(
            protocol::TAG_FETCH,
            &[head.as_bytes(), requests.as_bytes(), b"}"],
        );
        self.chan.borrow_mut().out.write_all(&frame).is_ok()
    }

    fn step_started(&mut self, step: usize) {
        let step = self.first + step;
        let chan = self.chan.borrow();
        // A call with no mark was in its first step.
        if step > 0
            && let Some(mark) = &chan.progress
        {
            mark.mark(chan.ordinal, step);
        }
    }

    fn wait(&mut self, max: Duration) -> Option<String> {
        let until = Instant::now() + max;
        let mut chan = self.chan.borrow_mut();
        loop {
            if !chan.readable(until.saturating_duration_since(Instant::now())) {
                return None;
            }
            match protocol::read_blocking(&mut chan.input) {
                Ok(Some((protocol::TAG_FETCH_REPLY, body))) => {
                    return String::from_utf8(body).ok();
                }
                Ok(Some((protocol::TAG_CALL, body))) => chan.calls.push_back(body),
                // The pipe closed or broke: no answer will come; the main loop ends.
                _ => return None,
            }
            if Instant::now() >= until {
                return None;
            }
        }
    }
}

/// Steps of the flow that share one engine, compiled once: the legacy Hook alone, or
/// the Actions (and an enabled Hook in that form) together, which then run in one
/// engine call (D21).
struct Group {
    engine: Engine,
    /// The flow index of its first step.
    first: usize,
    /// Each step's own time limit.
    limits: Vec<Duration>,
}

/// Compiles the flow's steps into groups; an error names the step.
fn compile(steps: &[protocol::StepInit], limits: Limits) -> Result<Vec<Group>, String> {
    let named = |i: usize, e: super::engine::CompileError| format!("hook {:?}: {e}", steps[i].name);
    let sources: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s.source.as_str(), s.secrets.as_str()))
        .collect();
    let limit_of = |s: &protocol::StepInit| Duration::from_millis(s.timeout_ms);
    let mut groups = Vec::new();
    if steps.is_empty() {
        return Ok(groups);
    }
    let mut first = 0;
    // All in one engine unless the first is a legacy Hook, which runs in its own.
    let all = match Engine::compile_steps(&sources, limits) {
        Ok(engine) => Some(engine),
        Err((0, super::engine::CompileError::NotAnAction)) => None,
        Err((i, e)) => return Err(named(i, e)),
    };
    let engine = match all {
        Some(engine) => engine,
        None => {
            let hook =
                Engine::compile_steps(&sources[..1], limits).map_err(|(_, e)| named(0, e))?;
            groups.push(Group {
                engine: hook,
                first: 0,
                limits: vec![limit_of(&steps[0])],
            });
            first = 1;
            Engine::compile_steps(&sources[1..], limits).map_err(|(i, e)| named(i + 1, e))?
        }
    };
    groups.push(Group {
        engine,
        first,
        limits: steps[first..].iter().map(limit_of).collect(),
    });
    Ok(groups)
}

/// Runs the steps of one call in order until one does not let the request go on,
/// appending the `TAG_FINISHED` array to `out`: each step's driver text as it came, or
/// the outcome decided here. Each step runs until its own limit or the flow's
/// deadline (`due`), whichever is first.
fn run_flow(groups: &mut [Group], input: &[u8], due: u64, policy: ClaimPolicy, out: &mut Vec<u8>) {
    out.push(b'[');
    // Shared with the events made from it (`engine::event`).
    let mut json: Rc<serde_json::Value> = match serde_json::from_slice(input) {
        Ok(v) => Rc::new(v),
        Err(e) => {
            ended(
                out,
                RawOutcome::Aborted {
                    message: format!("bad call input: {e}"),
                },
                Vec::new(),
            );
            out.push(b']');
            return;
        }
    };
    let mut view = View::default();
    let last = groups.len().saturating_sub(1);
    let mut wrote = false;
    'groups: for (g, group) in groups.iter_mut().enumerate() {
        let left = protocol::remaining(due);
        if left.is_zero() {
            // The flow's whole time went by (while it waited, or in earlier steps).
            if wrote {
                out.push(b',');
            }
            ended(out, RawOutcome::TimedOut, Vec::new());
            break;
        }
        let form = group.engine.form();
        let replies = group
            .engine
            .call_steps(&json, Instant::now() + left, &group.limits);
        let n = replies.len();
        for (k, reply) in replies.into_iter().enumerate() {
            if wrote {
                out.push(b',');
            }
            wrote = true;
            match reply {
                Reply::Finished(text) => {
                    out.extend_from_slice(text.as_bytes());
                    // The group's last step that ran: the next group goes on from it.
                    if k + 1 == n && g < last && !advance(&mut view, form, policy, &text, &mut json)
                    {
                        break 'groups;
                    }
                }
                // Timed out or aborted: the request ends here.
                Reply::Ended(outcome, logs) => {
                    ended(out, outcome, logs);
                    break 'groups;
                }
            }
        }
    }
    out.push(b']');
}

/// After the legacy Hook settled: whether it lets the request go on (Auth0's rules,
/// as the sidecar applies them) and, if so, what the Actions see of it, written into
/// the input (D19). The Actions of a flow go on from each other inside their engine.
fn advance(
    view: &mut View,
    form: Form,
    policy: ClaimPolicy,
    text: &str,
    json: &mut Rc<serde_json::Value>,
) -> bool {
    let outcome = super::engine::parse_finished(text).0;
    let (result, _) = super::interpret(form, "", outcome, Duration::ZERO);
    let Ok(effect) = result else {
        return false;
    };
    view.absorb(form, &effect, policy);
    view.write_input(Rc::make_mut(json));
    true
}

/// An outcome decided in the worker, as one entry of the answer array.
fn ended(out: &mut Vec<u8>, outcome: RawOutcome, logs: Vec<super::engine::LogLine>) {
    let done = StepDone { outcome, logs };
    // Plain data with string keys: serializing it into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &done);
}
