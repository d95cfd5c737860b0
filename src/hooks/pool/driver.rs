//! The per-worker driver: what one worker slot does with calls, as a state machine
//! (`Core`) that decides without touching a process, a pipe or the runtime, and the
//! task (`drive`) that does the I/O and feeds it what happened.

use super::process::{Io, Launcher, Started};
use super::queue::{Call, Queue};
use super::{PoolStats, ReplyTx};
use crate::hooks::engine::RawOutcome;
use crate::hooks::protocol::{self, Done, Lost};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A call that has run this long while others wait is treated as stuck (hook calls
/// normally take microseconds to a few milliseconds).
const STUCK_AFTER: Duration = Duration::from_millis(100);
/// How often calls in flight are checked against their deadlines and for being stuck.
/// A coarse tick, not a timer on each call's own deadline: moving a timer would
/// re-register it per call, and tokio wakes a parked runtime thread whenever the
/// earliest timer moves earlier.
const TICK: Duration = Duration::from_millis(10);
/// Calls sent to one worker ahead of its answers, once it answers (see `Core::take`).
/// Deeper pipelines let one wake-up of a worker or of the runtime serve several calls
/// (`examples/pool_load`: CPU per seed call 44 µs at depth 1, 34 at 2, 27 at 4, no
/// better at 8); calls behind a stuck one move to another worker after `STUCK_AFTER`.
const DEPTH: usize = 4;
/// Waits between failed starts of a worker: never a tight loop.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What every driver task shares.
pub(super) struct Shared {
    pub(super) queue: Queue,
    pub(super) launcher: Launcher,
    pub(super) stats: Arc<PoolStats>,
    /// How long past its deadline a call may run before its worker is killed.
    pub(super) grace: Duration,
    /// Performs the hooks' `fetch` requests; None refuses them all.
    pub(super) fetcher: Option<Arc<dyn super::Fetcher>>,
}

/// Where a worker slot stands. What is in flight is `Core::inflight`; a slot is busy
/// exactly while that is not empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No worker: the task is starting one (after a backoff if the last start failed).
    Starting,
    /// A worker with nothing in flight: the only state that takes a queued call
    /// without having just been answered, and that waits for the queue's wake-ups.
    Idle,
    /// Calls in flight, the front one running.
    Running,
    /// The front call ran past `STUCK_AFTER` while others waited: the calls behind it
    /// went back to the queue and another driver took this one's place. It takes no
    /// call until its pipe is empty, and holds a set-aside place until then.
    Aside,
    /// SIGKILL sent because the front call overran its deadline plus the grace; the
    /// worker is replaced once its pipe breaks. `culprit` while that call has not
    /// answered; `aside` while the slot still holds a set-aside place.
    Killed { culprit: bool, aside: bool },
}

/// A call sent to this driver's worker, in the order sent.
struct InFlight {
    call: Call,
    /// When the worker began it: when it was sent, or when the call ahead of it ended.
    started: Instant,
    /// Its place among the calls sent to this worker process, from 1, as the worker
    /// counts them too (`hooks::progress`).
    ordinal: u32,
}

/// What happened to a driver, as the core sees it.
pub(super) enum Event<'a> {
    /// A worker is up, with nothing in flight.
    Started,
    /// The worker's pipe was read into `buf`; `open` is false at its end or on an error.
    Read { buf: &'a mut BytesMut, open: bool },
    /// The pipe took some of the frames waiting for it.
    Wrote,
    /// The pipe refused a write: the worker is gone.
    WriteFailed,
    /// The tick, with whether the shared queue was empty then.
    Tick { queue_empty: bool },
    /// A call was queued.
    Notified,
}

/// What the core decided, for the task to carry out in order.
pub(super) enum Action {
    Reply(ReplyTx, Result<Done, Lost>),
    /// The running call's hook asked for these `fetch` requests (a `TAG_FETCH` payload);
    /// `live` is false when nobody waits for the call's answer any more, so they must
    /// not reach the network.
    Fetch {
        payload: bytes::Bytes,
        deadline: Instant,
        live: bool,
    },
    /// The worker died in this call (its `ordinal`): it fails with the process's exit
    /// reason, found without holding up the driver, in the step the worker was in.
    ReplyExitReason(ReplyTx, u32),
    /// The worker was killed in this call, past its deadline: it timed out in the step
    /// the worker was in.
    ReplyKilled(ReplyTx, u32),
    Kill,
    /// Calls that never ran here, or ran without effect: another worker takes them.
    Requeue(Vec<Call>),
    /// Set the front call aside if `hooks.max_stuck_workers` leaves room
    /// (`Queue::reserve_aside`): then `Core::set_aside`, and a new driver.
    SetAside,
    /// The set-aside call ended; its place is free.
    ReleaseAside,
    /// Drop the (killed) worker and start another; it counts as replaced.
    Replace,
}

/// A queued call offered to the core.
pub(super) enum Offered<'a> {
    /// In flight now: these bytes go to the worker's pipe.
    Send(&'a [u8]),
    /// Not for the worker: answer it at once.
    Reply(ReplyTx, Result<Done, Lost>),
    /// Nobody waits for it any more.
    Drop,
}

/// The driver's decisions: pure, stepped by events and the clock reading they came
/// with.
pub(super) struct Core {
    slot: Slot,
    inflight: VecDeque<InFlight>,
    grace: Duration,
    /// When calls in flight are next checked: armed when a call goes in flight with
    /// none pending, moved on at each tick. Like the timer it stands for, it keeps a
    /// past instant while nothing is in flight.
    tick_at: Option<Instant>,
    /// Calls sent to the current worker process.
    sent: u32,
}

impl Core {
    pub(super) fn new(grace: Duration) -> Core {
        Core {
            slot: Slot::Starting,
            inflight: VecDeque::with_capacity(DEPTH),
            grace,
            tick_at: None,
            sent: 0,
        }
    }

    pub(super) fn busy(&self) -> bool {
        !self.inflight.is_empty()
    }

    /// Waiting for a call: the one state that listens to the queue's wake-ups.
    pub(super) fn is_free(&self) -> bool {
        self.slot == Slot::Idle
    }

    /// When the task's timer should fire next; `None` while nothing is in flight.
    pub(super) fn tick_at(&self) -> Option<Instant> {
        self.tick_at.filter(|_| self.busy())
    }

    /// Steps the slot by one event; returns how many queued calls it may take now
    /// (offered one by one with `offer`). Decisions go to `out`, in order.
    pub(super) fn on_event(
        &mut self,
        event: Event<'_>,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> usize {
        let mut answered = false;
        match event {
            Event::Started => {
                debug_assert_eq!(self.slot, Slot::Starting);
                self.slot = Slot::Idle;
                self.sent = 0;
            }
            Event::Read { buf, open } => answered = self.read(buf, open, now, out),
            Event::WriteFailed => {
                // The worker is gone; its read side reports how.
                out.push(Action::Kill);
            }
            Event::Tick { queue_empty } => self.tick(queue_empty, now, out),
            Event::Wrote | Event::Notified => {}
        }
        self.take(answered)
    }

    /// A free worker takes one call. More go into its pipe behind others only right
    /// after it answered, i.e. while it visibly keeps up: under load that pipelines,
    /// and calls behind a slow one stay in the queue, where any worker (or one set
    /// aside for them) can take them and where they count against `hooks.queue`.
    fn take(&self, answered: bool) -> usize {
        match self.slot {
            Slot::Idle | Slot::Running if answered => DEPTH.saturating_sub(self.inflight.len()),
            Slot::Idle => 1,
            _ => 0,
        }
    }

    /// Takes a queued call, if it is still worth running.
    pub(super) fn offer(&mut self, call: Call, now: Instant) -> Offered<'_> {
        debug_assert!(matches!(self.slot, Slot::Idle | Slot::Running));
        match &call.reply {
            None => return Offered::Drop,
            Some(reply) if reply.is_closed() => return Offered::Drop,
            Some(_) if now >= call.deadline => {
                // Its whole time limit went by in the queue.
                return match call.reply {
                    Some(r) => Offered::Reply(r, timed_out()),
                    None => Offered::Drop,
                };
            }
            Some(_) => {}
        }
        // Wrapping, as the worker counts: equal on both sides whatever the count.
        self.sent = self.sent.wrapping_add(1);
        self.inflight.push_back(InFlight {
            call,
            started: now,
            ordinal: self.sent,
        });
        self.tick_at.get_or_insert(now + TICK);
        self.slot = match self.slot {
            Slot::Idle => Slot::Running,
            s => s,
        };
        match self.inflight.back() {
            Some(f) => Offered::Send(&f.call.frame),
            None => Offered::Drop,
        }
    }

    /// Hands the calls queued behind a stuck one to other workers, once the task won a
    /// set-aside place for it. Their frames are already in this worker's pipe: it will
    /// still run them, and their answers are dropped unread (a hook's effects are only
    /// in its answer, so that is safe).
    pub(super) fn set_aside(&mut self) -> Vec<Call> {
        debug_assert_eq!(self.slot, Slot::Running);
        self.slot = Slot::Aside;
        self.inflight
            .iter_mut()
            .skip(1)
            .filter_map(|f| {
                f.call.reply.take().map(|reply| Call {
                    frame: f.call.frame.clone(),
                    deadline: f.call.deadline,
                    reply: Some(reply),
                })
            })
            .collect()
    }

    /// Answers calls from the frames read; true if any was answered.
    fn read(
        &mut self,
        buf: &mut BytesMut,
        open: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> bool {
        let mut broken = !open;
        let mut answered = false;
        // The worker answered out of protocol: it is replaced, but the call that got
        // that answer has had its reply.
        let mut answered_badly = false;
        while !broken {
            match protocol::split_frame(buf) {
                Ok(Some((protocol::TAG_FETCH, payload))) => {
                    // The worker runs calls in order: the requests are the front one's.
                    let Some(front) = self.inflight.front() else {
                        broken = true;
                        break;
                    };
                    out.push(Action::Fetch {
                        payload,
                        deadline: front.call.deadline,
                        live: front.call.reply.is_some(),
                    });
                }
                Ok(Some((tag, payload))) => {
                    let Some(done) = self.inflight.pop_front() else {
                        broken = true;
                        break;
                    };
                    if let Slot::Killed { culprit, .. } = &mut self.slot {
                        *culprit = false;
                    }
                    answered = true;
                    let result = answer(tag, &payload);
                    answered_badly = result.is_err();
                    broken = answered_badly;
                    if let Some(r) = done.call.reply {
                        out.push(Action::Reply(r, result));
                    }
                    if let Some(next) = self.inflight.front_mut() {
                        next.started = now;
                    }
                }
                Ok(None) => break,
                Err(_) => broken = true,
            }
        }
        if broken {
            self.replace(answered_badly, out);
        } else if self.inflight.is_empty() {
            self.emptied(out);
        }
        answered
    }

    /// Everything sent was answered and the worker is still up.
    fn emptied(&mut self, out: &mut Vec<Action>) {
        match self.slot {
            Slot::Running => self.slot = Slot::Idle,
            Slot::Aside => {
                self.slot = Slot::Idle;
                out.push(Action::ReleaseAside);
            }
            Slot::Killed {
                culprit,
                aside: true,
            } => {
                self.slot = Slot::Killed {
                    culprit,
                    aside: false,
                };
                out.push(Action::ReleaseAside);
            }
            Slot::Starting | Slot::Idle | Slot::Killed { .. } => {}
        }
    }

    /// The worker's pipe broke (or it answered out of protocol): it is killed and
    /// replaced, and its calls are settled.
    fn replace(&mut self, answered_badly: bool, out: &mut Vec<Action>) {
        out.push(Action::Kill);
        let (killed, culprit, aside) = match self.slot {
            Slot::Killed { culprit, aside } => (true, culprit, aside),
            Slot::Aside => (false, false, true),
            Slot::Starting | Slot::Idle | Slot::Running => (false, false, false),
        };
        if culprit {
            // Still running past its limit (a native builtin or regex Boa cannot
            // interrupt): the call times out.
            if let Some(f) = self.inflight.pop_front()
                && let Some(r) = f.call.reply
            {
                out.push(Action::ReplyKilled(r, f.ordinal));
            }
        } else if !killed && !answered_badly {
            // It died in the call at the front (out of memory, a crash).
            if let Some(f) = self.inflight.pop_front()
                && let Some(r) = f.call.reply
            {
                out.push(Action::ReplyExitReason(r, f.ordinal));
            }
        }
        // The rest never started, or ran without effect.
        let rest: Vec<Call> = self
            .inflight
            .drain(..)
            .filter(|f| f.call.reply.is_some())
            .map(|f| f.call)
            .collect();
        if !rest.is_empty() {
            out.push(Action::Requeue(rest));
        }
        out.push(Action::Replace);
        if aside {
            out.push(Action::ReleaseAside);
        }
        self.slot = Slot::Starting;
    }

    /// Checks the front call against its deadline and for being stuck.
    fn tick(&mut self, queue_empty: bool, now: Instant, out: &mut Vec<Action>) {
        self.tick_at = self.busy().then(|| now + TICK);
        let Some(front) = self.inflight.front() else {
            return;
        };
        let aside = match self.slot {
            Slot::Running => false,
            Slot::Aside => true,
            // Killed already: its pipe breaks soon.
            Slot::Killed { .. } | Slot::Starting | Slot::Idle => return,
        };
        if now >= front.call.deadline.max(front.started) + self.grace {
            self.slot = Slot::Killed {
                culprit: true,
                aside,
            };
            out.push(Action::Kill);
        } else if !aside
            && now.duration_since(front.started) >= STUCK_AFTER
            && (self.inflight.len() > 1 || !queue_empty)
        {
            out.push(Action::SetAside);
        }
    }
}

fn timed_out() -> Result<Done, Lost> {
    Ok(Done::ended(RawOutcome::TimedOut))
}

/// Reads one answer frame into the call's result.
fn answer(tag: u8, payload: &[u8]) -> Result<Done, Lost> {
    match tag {
        protocol::TAG_FINISHED => Done::parse(payload).map_err(Lost::from),
        _ => Err(Lost::from("hook worker answered out of turn".to_owned())),
    }
}

/// Starts a driver task for one worker slot on `rt`; `first` is a worker the pool
/// started already.
pub(super) fn spawn(shared: &Arc<Shared>, first: Option<Started>, rt: &tokio::runtime::Handle) {
    shared.queue.live.fetch_add(1, Ordering::Relaxed);
    rt.spawn(driver(shared.clone(), first));
}

/// `drive` boxed: a driver starts another when it sets a call aside.
fn driver(
    shared: Arc<Shared>,
    first: Option<Started>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(drive(shared, first))
}

/// What woke the task.
enum Woke {
    /// The worker's pipe was read; false at its end or on an error.
    Read(bool),
    Wrote(std::io::Result<usize>),
    Tick,
    Notified,
    /// A `fetch` request finished: its answer frame for the worker.
    Fetched(Vec<u8>),
}

/// Drives one worker slot for the pool's life: does the core's I/O (starts workers,
/// moves frames through the pipes, keeps the tick, listens to the queue) and carries
/// out what it decides.
async fn drive(shared: Arc<Shared>, first: Option<Started>) {
    let mut io = first.and_then(|s| Io::new(s).ok());
    let mut core = Core::new(shared.grace);
    // The running call's `fetch` requests: cancelled (dropped) once it is answered or
    // its worker goes, so a timed-out or killed hook leaves no request behind.
    let mut fetches = Fetches::default();
    let mut out = Vec::with_capacity(8);
    let mut backoff = FIRST_BACKOFF;
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut now = Instant::now();
    // How many queued calls the last step lets this driver take.
    let mut take = match io {
        Some(_) => core.on_event(Event::Started, now, &mut out),
        None => 0,
    };
    loop {
        if !core.busy() {
            if shared.queue.is_done() {
                break;
            }
            if shared.queue.retire_surplus() {
                return;
            }
        }
        let Some(w) = io.as_mut() else {
            let s = shared.clone();
            let started = tokio::task::spawn_blocking(move || s.launcher.start())
                .await
                .unwrap_or_else(|_| Err("hook worker start panicked".into()))
                .and_then(|(started, _)| {
                    Io::new(started).map_err(|e| format!("cannot drive a hook worker: {e}"))
                });
            match started {
                Ok(started) => {
                    io = Some(started);
                    backoff = FIRST_BACKOFF;
                    now = Instant::now();
                    take = core.on_event(Event::Started, now, &mut out);
                }
                Err(e) => {
                    if shared.queue.is_closed() {
                        break;
                    }
                    tracing::error!(error = %e, "cannot start a hook worker; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };

        // Only a driver with nothing in flight waits for queue wake-ups, so `notify_one`
        // reaches a driver that can start a call at once: not one restarting its
        // worker, nor one busy with calls. Registered before the queue is looked at, so
        // no wake-up is missed.
        let mut waiter = core.is_free().then(|| {
            let mut n = Box::pin(shared.queue.notify.notified());
            n.as_mut().enable();
            n
        });
        let was_busy = core.busy();
        while take > 0 {
            let Some(call) = shared.queue.pop() else {
                break;
            };
            match core.offer(call, now) {
                Offered::Send(frame) => {
                    w.wbuf.extend_from_slice(frame);
                    take -= 1;
                }
                Offered::Reply(r, result) => {
                    let _ = r.send(result);
                }
                Offered::Drop => {}
            }
        }
        count_busy(&shared.stats, was_busy, core.busy());
        if core.busy() {
            // Busy now: a wake-up this waiter caught passes on to a free driver.
            waiter = None;
            if !shared.queue.is_empty() {
                shared.queue.notify.notify_one();
            }
        }

        let ticking = core.tick_at().map(tokio::time::Instant::from_std);
        if let Some(at) = ticking
            && timer.deadline() != at
        {
            timer.as_mut().reset(at);
        }
        let listening = waiter.is_some();
        let woke = tokio::select! {
            biased;
            read = w.rx.read_buf(&mut w.rbuf) => Woke::Read(read.is_ok_and(|n| n > 0)),
            wrote = w.tx.write(&w.wbuf), if !w.wbuf.is_empty() => Woke::Wrote(wrote),
            _ = timer.as_mut(), if ticking.is_some() => Woke::Tick,
            _ = async {
                match waiter.as_mut() {
                    Some(n) => n.as_mut().await,
                    None => std::future::pending().await,
                }
            }, if listening => Woke::Notified,
            Some(done) = fetches.tasks.join_next(), if !fetches.tasks.is_empty() => {
                Woke::Fetched(done.unwrap_or_default())
            }
        };
        now = Instant::now();
        let event = match woke {
            Woke::Read(open) => Event::Read {
                buf: &mut w.rbuf,
                open,
            },
            Woke::Wrote(Ok(n)) => {
                w.wbuf.drain(..n);
                Event::Wrote
            }
            Woke::Wrote(Err(_)) => {
                w.wbuf.clear();
                Event::WriteFailed
            }
            Woke::Tick => Event::Tick {
                queue_empty: shared.queue.is_empty(),
            },
            Woke::Notified => Event::Notified,
            Woke::Fetched(frame) => {
                w.wbuf.extend_from_slice(&frame);
                Event::Wrote
            }
        };
        let was_busy = core.busy();
        take = core.on_event(event, now, &mut out);
        perform(&shared, &mut io, &mut core, &mut out, &mut fetches);
        count_busy(&shared.stats, was_busy, core.busy());
    }
    shared.queue.live.fetch_sub(1, Ordering::Relaxed);
    count_busy(&shared.stats, core.busy(), false);
}

/// The running call's `fetch` requests.
#[derive(Default)]
struct Fetches {
    tasks: tokio::task::JoinSet<Vec<u8>>,
    /// Requests this call made so far, for the hook's `max_requests`.
    count: u32,
}

impl Fetches {
    /// The call ended without a clean finish (timed out, failed, denied, its worker
    /// gone): its requests in flight are cancelled.
    fn end_call(&mut self) {
        self.tasks.abort_all();
        self.count = 0;
    }

    /// The call finished cleanly: requests it left running (a webhook it did not
    /// await, as in Node) go on, still bounded by the call's deadline.
    fn finish_call(&mut self) {
        self.tasks.detach_all();
        self.count = 0;
    }

    /// Starts the requests of one `TAG_FETCH` payload; answers what is refused at once.
    fn start(
        &mut self,
        shared: &Shared,
        payload: &[u8],
        deadline: Instant,
        live: bool,
        wbuf: Option<&mut Vec<u8>>,
    ) {
        #[derive(serde::Deserialize)]
        struct Batch {
            step: usize,
            requests: Vec<One>,
        }
        #[derive(serde::Deserialize)]
        struct One {
            id: u64,
            request: serde_json::Value,
        }
        let Ok(batch) = serde_json::from_slice::<Batch>(payload) else {
            return;
        };
        let mut refused = Vec::new();
        for one in batch.requests {
            self.count += 1;
            match (&shared.fetcher, live) {
                (Some(f), true) => {
                    let fut = f.fetch(batch.step, one.request, deadline, self.count);
                    self.tasks
                        .spawn(async move { answer_frame(one.id, &fut.await) });
                }
                (f, _) => refused.push(answer_frame(
                    one.id,
                    &serde_json::json!({"kind": "error", "reason": "refused",
                    "message": if f.is_none() {
                        "this hook has no network here (no egress in this process)"
                    } else {
                        "request not made: the call is no longer awaited"
                    }}),
                )),
            }
        }
        if let Some(w) = wbuf {
            for f in refused {
                w.extend_from_slice(&f);
            }
        }
    }
}

/// Every step ran to its end without an error or a denial.
fn finished_cleanly(done: &Done) -> bool {
    done.steps.iter().all(|s| match &s.outcome {
        RawOutcome::Finished { state } => {
            state.done && state.error.is_none() && state.deny.is_none()
        }
        _ => false,
    })
}

/// A `TAG_FETCH_REPLY` frame.
fn answer_frame(id: u64, result: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::json!({"id": id, "result": result}).to_string();
    protocol::frame(protocol::TAG_FETCH_REPLY, &[body.as_bytes()])
}

/// Carries out the core's decisions, in order.
fn perform(
    shared: &Arc<Shared>,
    io: &mut Option<Io>,
    core: &mut Core,
    out: &mut Vec<Action>,
    fetches: &mut Fetches,
) {
    for action in out.drain(..) {
        match action {
            Action::Reply(r, result) => {
                if result.as_ref().is_ok_and(finished_cleanly) {
                    fetches.finish_call();
                } else {
                    fetches.end_call();
                }
                let _ = r.send(result);
            }
            Action::Fetch {
                payload,
                deadline,
                live,
            } => fetches.start(
                shared,
                &payload,
                deadline,
                live,
                io.as_mut().map(|w| &mut w.wbuf),
            ),
            Action::ReplyExitReason(r, ordinal) => match io.as_ref() {
                Some(w) => {
                    let (proc, step) = (w.proc.clone(), w.step_of(ordinal));
                    tokio::spawn(async move {
                        let reason = proc.exit_reason("exited").await;
                        let _ = r.send(Err(Lost { reason, step }));
                    });
                }
                None => {
                    let reason = "hook worker stopped answering and was replaced".to_owned();
                    let _ = r.send(Err(Lost::from(reason)));
                }
            },
            Action::ReplyKilled(r, ordinal) => {
                fetches.end_call();
                let step = io.as_ref().map_or(0, |w| w.step_of(ordinal));
                let _ = r.send(Ok(Done::ended_at(step, RawOutcome::TimedOut)));
            }
            Action::Kill => {
                if let Some(w) = io.as_ref() {
                    w.proc.kill();
                }
            }
            Action::Requeue(calls) => shared.queue.requeue(calls),
            Action::SetAside => {
                if shared.queue.reserve_aside() {
                    shared.queue.requeue(core.set_aside());
                    spawn(shared, None, &tokio::runtime::Handle::current());
                }
            }
            Action::ReleaseAside => shared.queue.release_aside(),
            Action::Replace => {
                fetches.end_call();
                *io = None;
                shared.stats.replaced.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Keeps `PoolStats::busy` in step with whether this slot has calls in flight.
fn count_busy(stats: &PoolStats, was: bool, is: bool) {
    if is && !was {
        stats.busy.fetch_add(1, Ordering::Relaxed);
    } else if was && !is {
        stats.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    type Rx = oneshot::Receiver<Result<Done, Lost>>;

    const GRACE: Duration = Duration::from_millis(100);
    const MS: Duration = Duration::from_millis(1);

    fn call(id: u8, deadline: Instant) -> (Call, Rx) {
        let (tx, rx) = oneshot::channel();
        let call = Call {
            frame: vec![id],
            deadline,
            reply: Some(tx),
        };
        (call, rx)
    }

    /// A worker up with calls `ids` in flight, sent at `t0`, each due `due` later.
    fn running(t0: Instant, due: Duration, ids: &[u8]) -> (Core, Vec<Rx>) {
        let mut core = Core::new(GRACE);
        assert_eq!(core.on_event(Event::Started, t0, &mut Vec::new()), 1);
        let rxs = ids
            .iter()
            .map(|&id| {
                let (c, rx) = call(id, t0 + due);
                assert!(matches!(core.offer(c, t0), Offered::Send(f) if f == [id]));
                rx
            })
            .collect();
        (core, rxs)
    }

    /// An action as a test compares it. Replies are delivered (an exit reason as the
    /// task would find it), so the receivers tell who got what.
    #[derive(Debug, PartialEq)]
    enum Did {
        Reply,
        /// `live`: the call is still awaited, so its requests may go out.
        Fetch(bool),
        ExitReason,
        Kill,
        Requeue(Vec<u8>),
        SetAside,
        ReleaseAside,
        Replace,
    }

    thread_local! {
        static REQUEUED: std::cell::RefCell<Vec<Call>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn step(core: &mut Core, event: Event<'_>, now: Instant) -> (usize, Vec<Did>) {
        let mut out = Vec::new();
        let take = core.on_event(event, now, &mut out);
        (take, did(out))
    }

    fn did(out: Vec<Action>) -> Vec<Did> {
        out.into_iter()
            .map(|a| match a {
                Action::Reply(r, result) => {
                    let _ = r.send(result);
                    Did::Reply
                }
                // The ordinal stands in for the step the task would read for it.
                Action::ReplyExitReason(r, ordinal) => {
                    let reason = "exited".to_owned();
                    let _ = r.send(Err(Lost {
                        reason,
                        step: ordinal as usize,
                    }));
                    Did::ExitReason
                }
                Action::ReplyKilled(r, ordinal) => {
                    let _ = r.send(Ok(Done::ended_at(ordinal as usize, RawOutcome::TimedOut)));
                    Did::Reply
                }
                Action::Fetch { live, .. } => Did::Fetch(live),
                Action::Kill => Did::Kill,
                Action::Requeue(calls) => {
                    let ids = calls.iter().map(|c| c.frame[0]).collect();
                    // Kept as the queue would keep them: their clients still wait.
                    REQUEUED.with(|q| q.borrow_mut().extend(calls));
                    Did::Requeue(ids)
                }
                Action::SetAside => Did::SetAside,
                Action::ReleaseAside => Did::ReleaseAside,
                Action::Replace => Did::Replace,
            })
            .collect()
    }

    /// What a call's client got so far.
    fn got(rx: &mut Rx) -> String {
        match rx.try_recv() {
            Ok(Ok(done)) => match done.steps.into_iter().next().map(|s| s.outcome) {
                Some(RawOutcome::TimedOut) => "timed out".into(),
                Some(RawOutcome::Aborted { message }) => message,
                _ => "finished".into(),
            },
            Ok(Err(e)) => format!("error: {}", e.reason),
            Err(oneshot::error::TryRecvError::Empty) => "nothing yet".into(),
            Err(oneshot::error::TryRecvError::Closed) => "dropped".into(),
        }
    }

    /// A well-formed answer the client can tell apart: an abort carrying `message`.
    fn answer_frame(message: &str) -> Vec<u8> {
        let step = protocol::StepDone {
            outcome: RawOutcome::Aborted {
                message: message.into(),
            },
            logs: Vec::new(),
        };
        let json = serde_json::to_vec(&[step]).unwrap_or_default();
        protocol::frame(protocol::TAG_FINISHED, &[&json])
    }

    fn read<'a>(buf: &'a mut BytesMut, frames: &[&[u8]], open: bool) -> Event<'a> {
        for f in frames {
            buf.extend_from_slice(f);
        }
        Event::Read { buf, open }
    }

    // Breaks if the kill ignored the grace (a timer-bound hook answering its own
    // timeout right at the deadline would be killed), never came (a runaway regex
    // would keep burning CPU), came twice, or if a killed slot still took calls.
    #[test]
    fn a_call_past_its_deadline_and_grace_is_killed_once() {
        let t0 = Instant::now();
        let (mut core, _rx) = running(t0, 50 * MS, &[1]);
        let just_before = t0 + 50 * MS + GRACE - MS;
        let queue_empty = true;
        assert_eq!(
            step(&mut core, Event::Tick { queue_empty }, just_before),
            (0, vec![])
        );
        let at = t0 + 50 * MS + GRACE;
        assert_eq!(
            step(&mut core, Event::Tick { queue_empty }, at),
            (0, vec![Did::Kill])
        );
        assert_eq!(
            core.slot,
            Slot::Killed {
                culprit: true,
                aside: false
            }
        );
        assert_eq!(
            step(&mut core, Event::Tick { queue_empty }, at + GRACE),
            (0, vec![])
        );
        assert_eq!(step(&mut core, Event::Notified, at + GRACE).0, 0);
        assert!(!core.is_free());
    }

    // Breaks if the killed call got the process's exit reason ("killed by signal 9")
    // instead of its timeout, or if the calls behind it failed with it instead of
    // going back to the queue.
    #[test]
    fn the_culprit_times_out_when_the_pipe_then_breaks() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, 50 * MS, &[1, 2]);
        let at = t0 + 50 * MS + GRACE;
        let (_, did) = step(&mut core, Event::Tick { queue_empty: true }, at);
        assert_eq!(did, [Did::Kill]);
        let mut buf = BytesMut::new();
        let (take, did) = step(&mut core, read(&mut buf, &[], false), at + MS);
        assert_eq!(
            did,
            [Did::Kill, Did::Reply, Did::Requeue(vec![2]), Did::Replace]
        );
        assert_eq!((take, core.slot, core.busy()), (0, Slot::Starting, false));
        assert_eq!(got(&mut rx[0]), "timed out");
        assert_eq!(got(&mut rx[1]), "nothing yet");
    }

    // Breaks if a culprit that did answer before the kill landed were also told it
    // timed out (a second reply), or if the call behind it were failed instead of
    // requeued.
    #[test]
    fn a_killed_worker_whose_culprit_answered_requeues_the_rest() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, 50 * MS, &[1, 2]);
        let at = t0 + 50 * MS + GRACE;
        step(&mut core, Event::Tick { queue_empty: true }, at);
        let mut buf = BytesMut::new();
        let (take, did) = step(&mut core, read(&mut buf, &[&answer_frame("one")], true), at);
        assert_eq!((take, did), (0, vec![Did::Reply]), "killed: takes nothing");
        assert_eq!(
            core.slot,
            Slot::Killed {
                culprit: false,
                aside: false
            }
        );
        let (_, did) = step(&mut core, read(&mut buf, &[], false), at);
        assert_eq!(did, [Did::Kill, Did::Requeue(vec![2]), Did::Replace]);
        assert_eq!(got(&mut rx[0]), "one");
        assert_eq!(got(&mut rx[1]), "nothing yet");
    }

    /// The ordinal a lost call carries (the test's `did` passes it on as the step).
    fn lost_at(rx: &mut Rx) -> usize {
        match rx.try_recv() {
            Ok(Ok(done)) => done.first,
            Ok(Err(lost)) => lost.step,
            other => panic!("not lost: {other:?}"),
        }
    }

    // A lost call is told its ordinal on its worker process, so the step the worker
    // marked for it is read (`hooks::progress`). Breaks if the ordinal were not the
    // lost call's (the one after it, or a count across workers): the step read would
    // belong to another call, or be none.
    #[test]
    fn a_lost_call_carries_its_ordinal_on_its_worker() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, 50 * MS, &[1, 2, 3]);
        let mut buf = BytesMut::new();
        let (_, did) = step(&mut core, read(&mut buf, &[&answer_frame("one")], true), t0);
        assert_eq!(did, [Did::Reply]);
        // The second overruns: killed; the third is requeued.
        let at = t0 + 50 * MS + GRACE;
        step(&mut core, Event::Tick { queue_empty: true }, at);
        let (_, did) = step(&mut core, read(&mut buf, &[], false), at);
        assert_eq!(
            did,
            [Did::Kill, Did::Reply, Did::Requeue(vec![3]), Did::Replace]
        );
        assert_eq!(lost_at(&mut rx[1]), 2);
        // A new process counts from 1 again: its first call dies.
        step(&mut core, Event::Started, at);
        let (c, mut rx4) = call(4, at + 50 * MS);
        assert!(matches!(core.offer(c, at), Offered::Send(_)));
        let (_, did) = step(&mut core, read(&mut buf, &[], false), at + MS);
        assert_eq!(did, [Did::Kill, Did::ExitReason, Did::Replace]);
        assert_eq!(lost_at(&mut rx4), 1);
    }

    // Breaks if the call a worker died in were requeued (an out-of-memory hook would
    // then take down worker after worker) or if the calls behind it failed with it.
    #[test]
    fn a_worker_dying_in_its_front_call_fails_that_call_and_requeues_the_rest() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, Duration::from_secs(1), &[1, 2, 3]);
        let mut buf = BytesMut::new();
        let (take, did) = step(&mut core, read(&mut buf, &[], false), t0 + MS);
        assert_eq!(
            did,
            [
                Did::Kill,
                Did::ExitReason,
                Did::Requeue(vec![2, 3]),
                Did::Replace
            ]
        );
        assert_eq!((take, core.slot), (0, Slot::Starting));
        assert_eq!(got(&mut rx[0]), "error: exited");
        assert_eq!(got(&mut rx[1]), "nothing yet");
        assert_eq!(got(&mut rx[2]), "nothing yet");
    }

    // Breaks if a slow call kept the calls behind it in its pipe (they would wait for
    // it), if a second set-aside were asked for the same slot, if the moved calls'
    // late answers reached their clients (who are served elsewhere), or if the slot
    // never gave its set-aside place back.
    #[test]
    fn a_call_running_past_100ms_while_others_wait_is_set_aside() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, Duration::from_secs(1), &[1, 2, 3]);
        let tick = Event::Tick { queue_empty: true };
        assert_eq!(step(&mut core, tick, t0 + STUCK_AFTER - MS), (0, vec![]));
        let tick = Event::Tick { queue_empty: true };
        assert_eq!(
            step(&mut core, tick, t0 + STUCK_AFTER),
            (0, vec![Did::SetAside])
        );
        let moved = core.set_aside();
        assert_eq!(moved.iter().map(|c| c.frame[0]).collect::<Vec<_>>(), [2, 3]);
        assert!(moved.iter().all(|c| c.reply.is_some()));
        assert_eq!((core.slot, core.busy()), (Slot::Aside, true));
        let tick = Event::Tick { queue_empty: false };
        assert_eq!(step(&mut core, tick, t0 + 2 * STUCK_AFTER), (0, vec![]));
        let mut buf = BytesMut::new();
        let frames: [&[u8]; 3] = [
            &answer_frame("one"),
            &answer_frame("two"),
            &answer_frame("three"),
        ];
        let (_, did) = step(
            &mut core,
            read(&mut buf, &frames, true),
            t0 + 3 * STUCK_AFTER,
        );
        assert_eq!(did, [Did::Reply, Did::ReleaseAside]);
        assert_eq!(got(&mut rx[0]), "one");
        assert_eq!(
            got(&mut rx[1]),
            "nothing yet",
            "its reply went with the moved call"
        );
        assert_eq!(core.slot, Slot::Idle);
    }

    // Breaks if a lone slow call were set aside with nothing waiting (a worker started
    // for nobody), or not set aside when the shared queue holds calls.
    #[test]
    fn a_lone_slow_call_is_set_aside_only_while_the_queue_holds_calls() {
        let t0 = Instant::now();
        let (mut core, _rx) = running(t0, Duration::from_secs(1), &[1]);
        let at = t0 + 2 * STUCK_AFTER;
        assert_eq!(step(&mut core, Event::Tick { queue_empty: true }, at).1, []);
        let (_, did) = step(&mut core, Event::Tick { queue_empty: false }, at);
        assert_eq!(did, [Did::SetAside]);
        assert!(core.set_aside().is_empty());
    }

    // Breaks if `hooks.max_stuck_workers` stopped bounding the set-aside slots when
    // every worker is stuck at once (each would start a fresh worker without end): the
    // second stuck slot must keep its calls and wait.
    #[test]
    fn set_aside_is_bounded_by_max_stuck_workers() {
        let queue = Queue::new(2, 1, 8);
        queue.live.store(2, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut slots = [
            running(t0, Duration::from_secs(1), &[1, 2]),
            running(t0, Duration::from_secs(1), &[3, 4]),
        ];
        for (core, _) in &mut slots {
            let (_, did) = step(core, Event::Tick { queue_empty: true }, t0 + STUCK_AFTER);
            assert_eq!(did, [Did::SetAside]);
            // As `perform` does it.
            if queue.reserve_aside() {
                queue.requeue(core.set_aside());
                queue.live.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert_eq!(
            (slots[0].0.slot, slots[1].0.slot),
            (Slot::Aside, Slot::Running)
        );
        let queued: Vec<u8> = std::iter::from_fn(|| queue.pop())
            .map(|c| c.frame[0])
            .collect();
        assert_eq!(queued, [2]);
    }

    // Breaks if a set-aside call past its deadline escaped the kill (it would run
    // forever on a worker nobody replaces), or if its set-aside place were kept after
    // its pipe broke.
    #[test]
    fn a_set_aside_call_is_still_killed_and_frees_its_place() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, 200 * MS, &[1, 2]);
        step(
            &mut core,
            Event::Tick { queue_empty: true },
            t0 + STUCK_AFTER,
        );
        let _moved = core.set_aside();
        let at = t0 + 200 * MS + GRACE;
        let (_, did) = step(&mut core, Event::Tick { queue_empty: true }, at);
        assert_eq!(did, [Did::Kill]);
        assert_eq!(
            core.slot,
            Slot::Killed {
                culprit: true,
                aside: true
            }
        );
        let mut buf = BytesMut::new();
        let (_, did) = step(&mut core, read(&mut buf, &[], false), at);
        assert_eq!(
            did,
            [Did::Kill, Did::Reply, Did::Replace, Did::ReleaseAside]
        );
        assert_eq!(got(&mut rx[0]), "timed out");
    }

    // Breaks if a fetch frame were taken for an answer (the call would end before its
    // hook got the response), if it were attributed to a call behind the running one,
    // or if a set-aside call's requests (nobody awaits its answer) could reach the
    // network.
    #[test]
    fn fetch_frames_belong_to_the_running_call_and_end_nothing() {
        let t0 = Instant::now();
        let (mut core, mut rx) = running(t0, Duration::from_secs(1), &[1, 2]);
        let mut buf = BytesMut::new();
        let fetch = protocol::frame(protocol::TAG_FETCH, &[b"{}"]);
        let (_, did) = step(&mut core, read(&mut buf, &[&fetch], true), t0);
        assert_eq!(did, [Did::Fetch(true)]);
        assert_eq!(got(&mut rx[0]), "nothing yet");
        let done = answer_frame("one");
        let (_, did) = step(&mut core, read(&mut buf, &[&done, &fetch], true), t0);
        assert_eq!(did, [Did::Reply, Did::Fetch(true)], "the second call's now");
        assert_eq!(got(&mut rx[0]), "one");
        // Set aside: its answer will be dropped unread, so its requests are not live.
        let (mut core, _rx) = running(t0, Duration::from_secs(1), &[1, 2]);
        let stuck = t0 + STUCK_AFTER;
        let (_, did) = step(&mut core, Event::Tick { queue_empty: false }, stuck);
        assert_eq!(did, [Did::SetAside]);
        let _ = core.set_aside();
        let (_, did) = step(&mut core, read(&mut buf, &[&done, &fetch], true), stuck);
        assert_eq!(did, [Did::Reply, Did::Fetch(false)]);
    }

    // Breaks if the call after a malformed answer failed with it (one bad frame would
    // fail every pipelined call), if the worker that broke the protocol were kept, or
    // if the replacement could not take the requeued call.
    #[test]
    fn a_malformed_answer_fails_that_call_only_and_replaces_the_worker() {
        for bad in [
            protocol::frame(99, &[b"?"]),
            protocol::frame(protocol::TAG_FINISHED, &[&[0xff, 0xfe]]),
            protocol::frame(protocol::TAG_FINISHED, &[b"{"]),
        ] {
            let t0 = Instant::now();
            let (mut core, mut rx) = running(t0, Duration::from_secs(1), &[1, 2]);
            let mut buf = BytesMut::new();
            let (take, did) = step(&mut core, read(&mut buf, &[&bad], true), t0);
            assert_eq!(
                did,
                [Did::Reply, Did::Kill, Did::Requeue(vec![2]), Did::Replace]
            );
            assert_eq!(take, 0);
            assert!(got(&mut rx[0]).starts_with("error: hook worker answered"));
            assert_eq!(got(&mut rx[1]), "nothing yet");
            assert_eq!(step(&mut core, Event::Started, t0).0, 1);
            let (again, _rx2) = call(2, t0 + Duration::from_secs(1));
            assert!(matches!(core.offer(again, t0), Offered::Send(_)));
        }
    }

    // Breaks if a worker were fed several calls before it ever answered (calls would
    // wait behind a slow first one instead of in the shared queue), or if it never
    // went deeper than one call (CPU per call 44 µs instead of 27 under load).
    #[test]
    fn pipelining_deepens_to_four_only_after_an_answer() {
        let t0 = Instant::now();
        let (mut core, _rx) = running(t0, Duration::from_secs(1), &[1]);
        assert_eq!(step(&mut core, Event::Wrote, t0).0, 0);
        assert_eq!(step(&mut core, Event::Notified, t0).0, 0);
        let mut buf = BytesMut::new();
        let (take, _) = step(&mut core, read(&mut buf, &[&answer_frame("one")], true), t0);
        assert_eq!((take, core.slot), (DEPTH, Slot::Idle));
        let _rxs: Vec<Rx> = (2..6)
            .map(|id| {
                let (c, rx) = call(id, t0 + Duration::from_secs(1));
                assert!(matches!(core.offer(c, t0), Offered::Send(_)));
                rx
            })
            .collect();
        let frames: [&[u8]; 2] = [&answer_frame("two"), &answer_frame("three")[..3]];
        assert_eq!(
            step(&mut core, read(&mut buf, &frames, true), t0).0,
            DEPTH - 3
        );
        let rest = answer_frame("three");
        assert_eq!(
            step(&mut core, read(&mut buf, &[], true), t0).0,
            0,
            "no answer yet"
        );
        assert_eq!(
            step(&mut core, read(&mut buf, &[&rest[3..]], true), t0).0,
            DEPTH - 2
        );
        assert_eq!(
            step(&mut core, Event::Tick { queue_empty: true }, t0 + TICK).0,
            0
        );
    }

    // Breaks if a woken free driver filled its pipe from the queue (a slow first call
    // would hold the others), or if a call whose client left or whose whole time limit
    // went by in the queue were sent to the worker.
    #[test]
    fn a_free_driver_takes_exactly_one_call() {
        let t0 = Instant::now();
        let mut core = Core::new(GRACE);
        assert_eq!(step(&mut core, Event::Notified, t0).0, 0, "no worker yet");
        assert_eq!(step(&mut core, Event::Started, t0).0, 1);
        assert_eq!(step(&mut core, Event::Notified, t0).0, 1);
        let (gone, rx) = call(1, t0 + Duration::from_secs(1));
        drop(rx);
        assert!(matches!(core.offer(gone, t0), Offered::Drop));
        let (late, _rx) = call(2, t0);
        match core.offer(late, t0) {
            Offered::Reply(_, Ok(done)) => {
                assert!(matches!(done.steps[0].outcome, RawOutcome::TimedOut))
            }
            _ => panic!("a call past its deadline is answered at once"),
        }
        assert!(core.is_free(), "neither went in flight");
        let (c, _rx) = call(3, t0 + Duration::from_secs(1));
        assert!(matches!(core.offer(c, t0), Offered::Send(_)));
        assert_eq!(step(&mut core, Event::Notified, t0).0, 0);
        assert!(!core.is_free());
    }

    // Breaks if the tick ran while nothing is in flight (a wake-up every 10 ms per
    // idle worker) or were moved per call instead of once per tick.
    #[test]
    fn the_tick_runs_only_while_calls_are_in_flight() {
        let t0 = Instant::now();
        let (mut core, _rx) = running(t0, Duration::from_secs(1), &[1]);
        assert_eq!(core.tick_at(), Some(t0 + TICK));
        let (c, _rx2) = call(2, t0 + Duration::from_secs(1));
        let _ = core.offer(c, t0 + MS);
        assert_eq!(core.tick_at(), Some(t0 + TICK), "not moved by a call");
        step(&mut core, Event::Tick { queue_empty: true }, t0 + TICK);
        assert_eq!(core.tick_at(), Some(t0 + 2 * TICK));
        let mut buf = BytesMut::new();
        let frames: [&[u8]; 2] = [&answer_frame("one"), &answer_frame("two")];
        step(&mut core, read(&mut buf, &frames, true), t0 + TICK);
        assert_eq!(core.tick_at(), None);
    }
}
