//! What the process boundary costs: CPU time per hook call through the worker pool
//! under concurrent load, against the same hook called in the engine directly, both
//! measured in this one run. CPU comes from `/proc` (this process and its hook workers),
//! so it counts the wake-ups and pipe traffic a latency benchmark hides.
//!
//! Usage: `cargo run --release --example pool_load -- [SECONDS] [CONCURRENCY] [HOOK.js]`
//! (defaults: 3 s, 16, hooks/seed.js; needs `cargo build --release` for the workers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokenhook::hooks::HookPool;
use tokenhook::hooks::engine::{Engine, Limits};

#[path = "../benches/common/mod.rs"]
mod common;
use common::call;

/// CPU ticks of this process and its live children (the hook workers).
fn ticks() -> u64 {
    let mut total = common::ticks_of(std::process::id());
    for pid in common::children() {
        total += common::ticks_of(pid);
    }
    total
}

const TICK_US: f64 = 10_000.0; // USER_HZ is 100 on Linux

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let conc: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let file = args.next().unwrap_or_else(|| "hooks/seed.js".into());
    let source = std::fs::read_to_string(&file).expect("hook file");
    let exe = std::env::current_exe().expect("own path");
    let program = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("tokenhook"))
        .expect("target dir");

    // The engine alone, on this thread: the floor.
    let input = std::rc::Rc::new(tokenhook::hooks::input_json(&call(), None));
    let mut engine = Engine::compile(&source, "{}", Limits::default()).expect("compiles");
    let (t0, c0, mut n) = (Instant::now(), ticks(), 0u64);
    while t0.elapsed() < Duration::from_secs(seconds) {
        engine.call(&input, Instant::now() + Duration::from_secs(5));
        n += 1;
    }
    let inline = (ticks() - c0) as f64 * TICK_US / n as f64;
    drop(engine);

    let spec = tokenhook::hooks::manifest::HookSpec {
        name: "load".into(),
        path: file.clone().into(),
        source,
        timeout: Duration::from_secs(5),
        secrets: Default::default(),
        fetch: None,
    };
    let mut cfg = tokenhook::config::HooksConfig::defaults(".".into());
    // As the sidecar's default: one worker per core.
    cfg.workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.workers;
    let command = tokenhook::hooks::pool::WorkerCommand {
        program,
        args: vec![tokenhook::hooks::WORKER_ARG.into()],
    };
    let pool = Arc::new(
        HookPool::start(
            tokenhook::hooks::manifest::FlowSpec::single(spec),
            &cfg,
            command,
        )
        .expect("pool starts"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Warm up: workers get their drivers on this runtime.
    rt.block_on(pool.invoke(&call()))
        .last_result()
        .expect("hook runs");
    let (t0, c0) = (Instant::now(), ticks());
    rt.block_on(async {
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                let (pool, done, stop) = (pool.clone(), done.clone(), stop.clone());
                tokio::spawn(async move {
                    let c = call();
                    while !stop.load(Ordering::Relaxed) {
                        pool.invoke(&c).await.last_result().expect("hook runs");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
    });
    let calls = done.load(Ordering::Relaxed);
    let pooled = (ticks() - c0) as f64 * TICK_US / calls as f64;
    let rate = calls as f64 / t0.elapsed().as_secs_f64();
    println!("hook {file}, {workers} workers, {conc} concurrent callers, {seconds} s each");
    println!("engine directly:   {inline:7.1} µs CPU per call");
    println!("through the pool:  {pooled:7.1} µs CPU per call ({rate:.0} calls/s)");
    println!(
        "process boundary:  {:7.1} µs CPU per call ({:.2}× the engine)",
        pooled - inline,
        pooled / inline
    );
}
