//! The hook sandbox under real traffic: runaway hooks fail only their own requests, the
//! pool recovers (killed and replaced workers, CPU back to idle), a full queue answers
//! 503, and hot reload swaps hook versions without one failed request.

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const RUNAWAY: &str = "module.exports = function (client, scope, audience, context, cb) { \
    if (client.id === 'svc-post') { /(a+)+$/.test('a'.repeat(40) + 'b'); } \
    cb(null, {scope: scope, 'https://x/ok': true}); };";

#[test]
fn stuck_workers_fail_their_own_requests_and_the_pool_recovers() {
    let idp = Idp::start();
    let opts = SidecarOpts::new(&idp.url())
        .hook("runaway", RUNAWAY)
        .env("TOKENHOOK_HOOKS_TIMEOUT_MS", "1000");
    let sidecar = Sidecar::start(opts);
    let url = sidecar.url("/oauth/token");

    // Twice as many runaway requests as workers (2), all at once, while others keep
    // coming; up to 2 × workers stuck calls are set aside by default.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let background = {
        let (url, stop, served) = (url.clone(), stop.clone(), served.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (s, body, _) = token_request(&url, BASIC.id, BASIC.secret, true);
                if s == 200 {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push((s, body));
                }
            }
            failures
        })
    };
    let runaways: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let (s, body, _) = token_request(&url, POST.id, POST.secret, false);
                (s, body, t.elapsed())
            })
        })
        .collect();
    let jwks_started = Instant::now();
    let r = raw_request(
        sidecar.port,
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        jwks_started.elapsed() < Duration::from_secs(2),
        "JWKS must not wait for hooks"
    );
    for h in runaways {
        let (s, body, took) = h.join().unwrap();
        assert_eq!(s, 500, "{body}");
        assert_eq!(body["error_description"], "hook timed out after 1000 ms");
        // Queued behind other runaways at worst: bounded by a few limits, not by the regex.
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let failures = background.join().unwrap();
    assert!(failures.is_empty(), "other clients failed: {failures:?}");
    assert!(served.load(Ordering::Relaxed) > 0);

    // Killed workers were replaced; nothing keeps burning CPU.
    let m = sidecar.metrics();
    assert!(
        m.contains(r#"tokenhook_hook_executions_total{hook="runaway",outcome="timeout"} 4"#),
        "{m}"
    );
    let replaced: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("tokenhook_hook_workers_replaced_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(replaced >= 4.0, "{m}");
    // Slots started while calls were stuck retire once idle: back to hooks.workers.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sidecar.metrics().contains("tokenhook_hook_workers_up 2\n") {
        assert!(Instant::now() < deadline, "{}", sidecar.metrics());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = sidecar.cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = sidecar.cpu_ticks() - before;
    assert!(
        used < 20,
        "sidecar and workers used {used} ticks in an idle second"
    );
    assert!(sidecar.ready());
    let (s, body, _) = token_request(&url, BASIC.id, BASIC.secret, true);
    assert_eq!(s, 200, "{body}");
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_readiness_reflects_it() {
    let idp = Idp::start();
    let slow = "module.exports = function (client, scope, audience, context, cb) { setTimeout(function () { cb(null, {scope: scope}); }, 400); };";
    let opts = SidecarOpts::new(&idp.url())
        .hook("slow", slow)
        .env("TOKENHOOK_HOOKS_WORKERS", "1")
        .env("TOKENHOOK_HOOKS_QUEUE", "1")
        // No extra workers for slow calls: saturation as plain as it gets.
        .env("TOKENHOOK_HOOKS_MAX_STUCK_WORKERS", "0");
    let sidecar = Sidecar::start(opts);
    let url = sidecar.url("/oauth/token");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut resp = agent
                    .post(&url)
                    .header("Authorization", &basic(BASIC.id, BASIC.secret))
                    .send_form([("grant_type", "client_credentials")])
                    .unwrap();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let status = resp.status().as_u16();
                let body: Value = resp.body_mut().read_json().unwrap();
                (status, retry, body)
            })
        })
        .collect();
    // Sampled until every request is answered rather than once after a fixed sleep:
    // on a loaded machine the requests may take a while to fill the queue.
    let mut saturated_ready = true;
    while !handles.iter().all(|h| h.is_finished()) {
        saturated_ready &= sidecar.ready();
        std::thread::sleep(Duration::from_millis(10));
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let rejected: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!rejected.is_empty(), "{results:?}");
    for (_, retry, body) in &rejected {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    assert!(
        results.iter().all(|(s, _, _)| *s == 200 || *s == 503),
        "{results:?}"
    );
    assert!(
        !saturated_ready,
        "readiness should fail while the queue is full"
    );
    assert!(sidecar.ready());
}

fn claim_version(sidecar: &Sidecar) -> Result<i64, String> {
    let (s, body, _) = token_request(&sidecar.url("/oauth/token"), BASIC.id, BASIC.secret, true);
    if s != 200 {
        return Err(format!("{s} {body}"));
    }
    let (_, claims) = sidecar.verify(body["access_token"].as_str().unwrap());
    Ok(claims["https://x/version"].as_i64().unwrap_or(-1))
}

fn versioned(v: i64) -> String {
    format!(
        "module.exports = function (client, scope, audience, context, cb) {{ cb(null, {{scope: scope, 'https://x/version': {v}}}); }};"
    )
}

/// Keeps requesting tokens until stopped; returns the versions seen and any failure.
fn traffic(
    sidecar: Arc<Sidecar>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<i64>, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut seen, mut failed) = (Vec::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match claim_version(&sidecar) {
                Ok(v) => {
                    if seen.last() != Some(&v) {
                        seen.push(v);
                    }
                }
                Err(e) => failed.push(e),
            }
        }
        (seen, failed)
    })
}

fn wait_for_version(sidecar: &Sidecar, v: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while claim_version(sidecar) != Ok(v) {
        assert!(
            Instant::now() < deadline,
            "version {v} never served; logs:\n{}",
            sidecar.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hot_reload_swaps_versions_under_traffic_and_refuses_a_broken_one() {
    let idp = Idp::start();
    let opts = SidecarOpts::new(&idp.url())
        .hook("live", &versioned(1))
        .env("TOKENHOOK_HOOKS_RELOAD_INTERVAL_MS", "100");
    let sidecar = Arc::new(Sidecar::start(opts));
    let stop = Arc::new(AtomicBool::new(false));
    let t = traffic(sidecar.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let dir = sidecar.hooks_dir();
    // Editors and `kubectl cp` replace files; write then rename, as they do.
    std::fs::write(dir.join(".live.js.tmp"), versioned(2)).unwrap();
    std::fs::rename(dir.join(".live.js.tmp"), dir.join("live.js")).unwrap();
    wait_for_version(&sidecar, 2);
    std::fs::write(
        dir.join(".live.js.tmp"),
        "module.exports = function (client, {",
    )
    .unwrap();
    std::fs::rename(dir.join(".live.js.tmp"), dir.join("live.js")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        claim_version(&sidecar),
        Ok(2),
        "a broken version must not replace a working one"
    );
    // Switching the enabled hook is a reload too.
    std::fs::write(dir.join("other.js"), versioned(3)).unwrap();
    std::fs::write(dir.join("hooks.toml"), "enabled = \"other\"\n").unwrap();
    wait_for_version(&sidecar, 3);
    stop.store(true, Ordering::Relaxed);
    let (seen, failed) = t.join().unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during reloads: {failed:?}"
    );
    assert_eq!(seen, vec![1, 2, 3]);
    let m = sidecar.metrics();
    assert!(
        m.contains(r#"tokenhook_hook_reloads_total{result="error"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"tokenhook_hook_reloads_total{result="ok"} 2"#),
        "{m}"
    );
    assert!(sidecar.logs().contains("new hook version refused"));
}

fn kubernetes_layout(hooks: &std::path::Path) {
    // What the kubelet does with a ConfigMap volume: files are symlinks into ..data,
    // itself a symlink to a timestamped folder, swapped atomically on update.
    let v1 = hooks.join("..2026_11_26_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("live.js"), versioned(1)).unwrap();
    std::fs::write(v1.join("hooks.toml"), "enabled = \"live\"\n").unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v1", hooks.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/live.js", hooks.join("live.js")).unwrap();
    std::os::unix::fs::symlink("..data/hooks.toml", hooks.join("hooks.toml")).unwrap();
}

#[test]
fn hot_reload_follows_a_configmap_symlink_swap() {
    let idp = Idp::start();
    let opts = SidecarOpts::new(&idp.url())
        .layout(kubernetes_layout)
        .env("TOKENHOOK_HOOKS_RELOAD_INTERVAL_MS", "100");
    let sidecar = Arc::new(Sidecar::start(opts));
    let stop = Arc::new(AtomicBool::new(false));
    let t = traffic(sidecar.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let hooks = sidecar.hooks_dir();
    let v2 = hooks.join("..2026_11_26_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("live.js"), versioned(2)).unwrap();
    std::fs::write(v2.join("hooks.toml"), "enabled = \"live\"\n").unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v2", hooks.join("..data_tmp")).unwrap();
    std::fs::rename(hooks.join("..data_tmp"), hooks.join("..data")).unwrap();
    std::fs::remove_dir_all(hooks.join("..2026_11_26_v1")).unwrap();
    wait_for_version(&sidecar, 2);
    stop.store(true, Ordering::Relaxed);
    let (seen, failed) = t.join().unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(seen, vec![1, 2]);
}

#[test]
fn slow_but_healthy_hooks_under_load_do_not_churn_workers() {
    let idp = Idp::start();
    let slow = "module.exports = function (client, scope, audience, context, cb) { setTimeout(function () { cb(null, {scope: scope}); }, 150); };";
    let sidecar = Arc::new(Sidecar::start(
        SidecarOpts::new(&idp.url()).hook("slow", slow),
    ));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let s = sidecar.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| token_request(&s.url("/oauth/token"), BASIC.id, BASIC.secret, true).0)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().unwrap().iter().all(|s| *s == 200));
    }
    let m = sidecar.metrics();
    // Calls waited on while others queued were set aside, but none was killed: every
    // worker that answered keeps serving.
    assert!(m.contains("tokenhook_hook_workers_replaced_total 0"), "{m}");
}

/// A pool of this binary's workers, driven directly (no proxy), on a runtime of its own.
fn direct_pool(
    source: &str,
    timeout: Duration,
    max_stuck: usize,
) -> (tokenhook::hooks::HookPool, tokio::runtime::Runtime) {
    let command = tokenhook::hooks::pool::WorkerCommand {
        program: env!("CARGO_BIN_EXE_tokenhook").into(),
        args: vec![tokenhook::hooks::WORKER_ARG.into()],
    };
    pool_with_command(source, timeout, max_stuck, 1, command)
}

fn pool_with_command(
    source: &str,
    timeout: Duration,
    max_stuck: usize,
    workers: usize,
    command: tokenhook::hooks::pool::WorkerCommand,
) -> (tokenhook::hooks::HookPool, tokio::runtime::Runtime) {
    let spec = tokenhook::hooks::manifest::HookSpec {
        name: "direct".into(),
        path: "direct.js".into(),
        source: source.into(),
        timeout,
        secrets: Default::default(),
        fetch: None,
    };
    let mut cfg = tokenhook::config::HooksConfig::defaults(".".into());
    cfg.workers = workers;
    cfg.max_stuck_workers = max_stuck;
    cfg.memory_limit_bytes = 128 << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = tokenhook::hooks::HookPool::start(
        tokenhook::hooks::manifest::FlowSpec::single(spec),
        &cfg,
        command,
    )
    .unwrap();
    (pool, rt)
}

/// One worker, so the calls after the bad one are pipelined behind it in its pipe;
/// they must run on another worker, not share the bad call's fate: one set aside
/// (`max_stuck` > 0), or the replacement of a worker that died.
/// Runs one call for client `id` as a task of its own, so later calls queue behind it.
fn spawn_call(
    pool: &Arc<tokenhook::hooks::HookPool>,
    id: String,
) -> tokio::task::JoinHandle<
    Result<tokenhook::token::claims::HookEffect, tokenhook::hooks::HookFailure>,
> {
    let pool = pool.clone();
    tokio::spawn(async move { pool.invoke(&client_call(&id)).await.last_result() })
}

fn calls_behind_a_bad_call_still_succeed(
    bad: &str,
    limit: Duration,
    max_stuck: usize,
    want_error: &str,
) {
    let source = format!(
        "module.exports = function (client, scope, audience, context, cb) {{ \
         if (client.id === 'bad') {{ {bad} }} cb(null, {{ 'https://x/id': client.id }}); }};"
    );
    let (pool, rt) = direct_pool(&source, limit, max_stuck);
    let pool = Arc::new(pool);
    rt.block_on(async {
        let first = spawn_call(&pool, "bad".into());
        // The bad call is running before the others are queued behind it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let others: Vec<_> = (0..4)
            .map(|i| spawn_call(&pool, format!("good-{i}")))
            .collect();
        for (i, o) in others.into_iter().enumerate() {
            let effect = o
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("good-{i}: {e:?}"));
            assert_eq!(effect.claims["https://x/id"], format!("good-{i}"));
        }
        let failure = first.await.unwrap().unwrap_err();
        let text = failure.error().description().to_owned();
        assert!(text.contains(want_error), "{text}");
    });
    // The bad worker was replaced (or set aside and retired): one is up again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.stats().up.load(Ordering::Relaxed) != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pool.stats().up.load(Ordering::Relaxed), 1);
}

#[test]
fn calls_pipelined_behind_a_runaway_call_run_on_another_worker() {
    calls_behind_a_bad_call_still_succeed(
        "/(a+)+$/.test('a'.repeat(40) + 'b');",
        Duration::from_secs(2),
        2,
        "timed out",
    );
}

#[test]
fn calls_pipelined_behind_a_crashing_call_run_on_another_worker() {
    calls_behind_a_bad_call_still_succeed(
        "var a = []; for (var i = 0; ; i++) { a.push({ n: i, s: 'item-' + i, list: [i, i + 1, i + 2] }); }",
        // Bounded by memory (128 MiB), well before this limit.
        Duration::from_secs(30),
        0,
        "memory",
    );
}

// Boa serializes recursively on the native stack: a deep enough structure overflows it
// and aborts the worker, which must cost only that one call.
#[test]
fn calls_pipelined_behind_a_stack_overflow_run_on_another_worker() {
    calls_behind_a_bad_call_still_succeed(
        "var o = {}, c = o; for (var i = 0; i < 200000; i++) { c.a = {}; c = c.a; } JSON.stringify(o);",
        Duration::from_secs(30),
        0,
        "stack (data nested too deeply)",
    );
}

/// What every stand-in worker below shares: the pool's frames (see
/// `src/hooks/protocol.rs`), and a settled legacy answer that sets `https://x/id` to the
/// calling client's id.
const STAND_IN: &str = r#"
import json, os, struct, sys, time
r, w = sys.stdin.buffer, sys.stdout.buffer
def read():
    head = r.read(4)
    if len(head) < 4:
        sys.exit(0)
    body = r.read(struct.unpack(">I", head)[0])
    return body[0], body[1:]
def send(tag, payload):
    w.write(struct.pack(">I", len(payload) + 1) + bytes([tag]) + payload)
    w.flush()
def settled(client):
    state = {"done": True, "result": {"https://x/id": client}}
    # One entry per step of the flow (here one hook).
    send(5, json.dumps([{"state": state, "logs": []}]).encode())
def calls():
    # Each call's client id; the body is the deadline (8 bytes) and the input JSON.
    while True:
        _, body = read()
        yield json.loads(body[8:])["client"]["id"]
"#;

/// A Python worker made of `STAND_IN` and `script`, given `args`.
fn stand_in(script: &str, args: &[&str]) -> tokenhook::hooks::pool::WorkerCommand {
    let mut all = vec!["-c".to_owned(), format!("{STAND_IN}{script}")];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokenhook::hooks::pool::WorkerCommand {
        program: "python3".into(),
        args: all,
    }
}

/// A stand-in worker that answers a call for client `bad` with a malformed frame, after
/// a pause that lets the next call queue behind it in its pipe, and any other call
/// with that client's id.
const BROKEN_WORKER: &str = r#"
read()
send(3, b"legacy")
for client in calls():
    if client == "bad":
        time.sleep(0.2)
        send(5, b"not json")
    else:
        settled(client)
"#;

#[test]
fn a_malformed_answer_fails_only_its_own_call() {
    let command = stand_in(BROKEN_WORKER, &[]);
    let (pool, rt) = pool_with_command("unused", Duration::from_secs(5), 0, 1, command);
    let pool = Arc::new(pool);
    rt.block_on(async {
        let bad = spawn_call(&pool, "bad".into());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Pipelined behind the bad call in the one worker's pipe.
        let good = pool.invoke(&client_call("good")).await.last_result();
        let effect = good.unwrap_or_else(|e| panic!("the healthy call failed: {e:?}"));
        assert_eq!(effect.claims["https://x/id"], "good");
        let failure = bad.await.unwrap().unwrap_err();
        // The protocol detail ("answered badly: …") is for the log, not the client.
        assert_eq!(
            failure.error().description(),
            "hook failed: its worker process stopped (the sidecar's log says why)",
            "{failure:?}"
        );
    });
    assert!(pool.stats().replaced.load(Ordering::Relaxed) >= 1);
}

/// A stand-in worker that crashes on a call for client `crash`, and whose third and
/// later starts (the replacements) take 30 s: the file named by its argument counts
/// starts.
const SLOW_RESTART_WORKER: &str = r#"
path = sys.argv[1]
# One byte appended per start: O_APPEND makes concurrent starts count right (reading and
# rewriting a number raced: a start could read the file another had just created empty).
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(fd, b"x")
os.close(fd)
starts = os.path.getsize(path) - 1
read()
if starts >= 2:
    time.sleep(30)
send(3, b"legacy")
for client in calls():
    if client == "crash":
        os._exit(1)
    settled(client)
"#;

#[test]
fn a_worker_restarting_does_not_hold_up_calls_an_idle_worker_can_take() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("starts");
    let command = stand_in(SLOW_RESTART_WORKER, &[counter.to_str().unwrap()]);
    let (pool, rt) = pool_with_command("unused", Duration::from_secs(60), 0, 2, command);
    rt.block_on(async {
        assert!(
            pool.invoke(&client_call("crash"))
                .await
                .last_result()
                .is_err()
        );
        // One worker is now restarting (30 s); the other is idle and must take every
        // call, also after it has served one (a bound far below the restart, not a
        // speed measurement).
        for i in 0..3 {
            let started = Instant::now();
            let effect = pool
                .invoke(&client_call(&format!("good-{i}")))
                .await
                .last_result();
            assert!(effect.is_ok(), "{effect:?}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "call {i} waited {:?} for the restarting worker",
                started.elapsed()
            );
        }
    });
    // The restart still runs on a blocking thread; dropping the runtime would wait for it.
    rt.shutdown_background();
}
