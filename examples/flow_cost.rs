//! The flow's cost (issue 12: a three-Action flow within 1.3× of one Action doing the
//! same work) in two measures that machine noise does not move much, for A/B runs of
//! two builds. `bench/flow_instructions.sh` runs it under callgrind for counts of
//! instructions, which are the same from run to run.
//!
//! - `flow_cost inline WORKLOAD N`: N calls of one engine in this process, nothing else
//!   in it (a second engine would enlarge the heap Boa's collector walks). Workloads:
//!   `one9`/`three3` (nine claims in one Action, or three in each of three), `real1`/
//!   `real3` (three realistic Actions' work in one, or the three), `empty1`/`empty3`
//!   (Actions that do nothing: a step's fixed cost).
//! - `flow_cost pool [CALLS]`: CPU per call of the caller and its worker through the
//!   pool, for each pair, the minimum of 5 rounds of CALLS calls (default 4000) taken
//!   in turn. Needs the `tokenhook` binary of the same profile built beside it.

use std::rc::Rc;
use std::time::{Duration, Instant};
use tokenhook::config::HooksConfig;
use tokenhook::hooks::HookPool;
use tokenhook::hooks::engine::{Engine, Limits};
use tokenhook::hooks::manifest::FlowSpec;
use tokenhook::hooks::pool::WorkerCommand;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{claims_action, realistic_action};

const EMPTY: &str = "exports.onExecuteCredentialsExchange = async (event, api) => {};\n";

/// The Actions of a workload, in flow order.
fn workload(name: &str) -> Option<Vec<String>> {
    Some(match name {
        "one9" => vec![claims_action(0, 9)],
        "three3" => vec![
            claims_action(0, 3),
            claims_action(3, 3),
            claims_action(6, 3),
        ],
        "real1" => vec![realistic_action(&["a", "b", "c"])],
        "real3" => ["a", "b", "c"]
            .iter()
            .map(|p| realistic_action(&[p]))
            .collect(),
        "empty1" => vec![EMPTY.into()],
        "empty3" => vec![EMPTY.into(); 3],
        _ => return None,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["inline", name, n] => inline(name, n.parse().expect("N: a number of calls")),
        ["pool"] => pool(4000),
        ["pool", calls] => pool(calls.parse().expect("CALLS: a number of calls")),
        _ => {
            eprintln!("usage: flow_cost inline WORKLOAD N | flow_cost pool [CALLS]");
            std::process::exit(2);
        }
    }
}

fn inline(name: &str, n: usize) {
    let Some(sources) = workload(name) else {
        eprintln!("no workload {name:?}");
        std::process::exit(2);
    };
    let steps: Vec<(&str, &str)> = sources.iter().map(|s| (s.as_str(), "{}")).collect();
    let mut engine = Engine::compile_steps(&steps, Limits::default())
        .unwrap_or_else(|(i, e)| panic!("step {i}: {e}"));
    let input = Rc::new(tokenhook::hooks::input_json(&common::call(), None));
    let limits = vec![Duration::from_secs(5); steps.len()];
    for _ in 0..n {
        std::hint::black_box(engine.call_steps(
            &input,
            Instant::now() + Duration::from_secs(5),
            &limits,
        ));
    }
}

/// A pool of one worker running `sources` as bound Actions, and the worker's pid.
fn flow_pool(sources: &[String]) -> (HookPool, Vec<u32>) {
    let steps = common::flow_steps("step", sources);
    let mut cfg = HooksConfig::defaults(".".into());
    cfg.workers = 1;
    // Examples sit in `examples/` under the profile's directory, the binary above it.
    let exe = std::env::current_exe().expect("this program's path");
    let program = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("the profile's directory")
        .join("tokenhook");
    let command = WorkerCommand {
        program,
        args: vec![tokenhook::hooks::WORKER_ARG.into()],
    };
    let before = common::children();
    let pool = HookPool::start(
        FlowSpec {
            steps,
            has_hook: false,
        },
        &cfg,
        command,
    )
    .expect("the pool starts (build the tokenhook binary of this profile)");
    let workers = common::children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    (pool, workers)
}

/// Nanoseconds a thread ran, from the scheduler (finer than `ticks_of`).
fn ran_ns(stat: &str) -> u64 {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// This process's threads' run time: the caller's side of every call.
fn own_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| ran_ns(&format!("{}/schedstat", t.path().display())))
        .sum()
}

fn pool(calls: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let call = common::call();
    for (what, one, three) in [
        ("nine claims", "one9", "three3"),
        ("realistic", "real1", "real3"),
    ] {
        let pools = [one, three].map(|w| flow_pool(&workload(w).expect("a workload")));
        for (p, _) in &pools {
            for _ in 0..500 {
                std::hint::black_box(rt.block_on(p.invoke(&call)));
            }
        }
        // Caller and worker µs per call, the minimum of 5 rounds, the pools in turn.
        let mut best = [(f64::MAX, f64::MAX); 2];
        for _ in 0..5 {
            for (i, (p, workers)) in pools.iter().enumerate() {
                let worker_ns = || -> u64 {
                    workers
                        .iter()
                        .map(|w| ran_ns(&format!("/proc/{w}/schedstat")))
                        .sum()
                };
                let (c0, w0) = (own_ns(), worker_ns());
                for _ in 0..calls {
                    let inv = rt.block_on(p.invoke(&call));
                    assert!(inv.failure().is_none());
                }
                let per = |a: u64, b: u64| (b - a) as f64 / 1e3 / f64::from(calls);
                let (c, w) = (per(c0, own_ns()), per(w0, worker_ns()));
                if c + w < best[i].0 + best[i].1 {
                    best[i] = (c, w);
                }
            }
        }
        let [(c1, w1), (c3, w3)] = best;
        println!(
            "flow_cost pool ({what}): one Action {:.1} µs (caller {c1:.1}, worker {w1:.1}), three-Action flow {:.1} µs (caller {c3:.1}, worker {w3:.1}) of CPU per call, minimum of 5 rounds of {calls}: ratio {:.3}",
            c1 + w1,
            c3 + w3,
            (c3 + w3) / (c1 + w1)
        );
    }
}
