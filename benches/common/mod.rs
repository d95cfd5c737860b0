//! The token request the benchmark programs run hooks for (`benches/hot_path.rs`,
//! `examples/pool_load.rs`, `examples/flow_cost.rs`), so their numbers describe the same
//! call, the flow workloads' Actions, and the CPU time read from `/proc` for this
//! process and its hook workers.

use tokenhook::hooks::{HookCall, HookClient};

/// The bench stub's client with the metadata the example hooks read.
pub fn call() -> HookCall {
    HookCall {
        client: HookClient {
            id: "svc-basic".into(),
            name: "Billing sync".into(),
            tenant: Some("acme".into()),
            metadata: [
                ("region", "eu"),
                ("plan", "enterprise"),
                ("team", "payments"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        },
        scope: Some(vec!["read:data".into(), "write:data".into()]),
        audience: Some("https://api.example.com".into()),
        requested_scope: None,
        body: serde_json::json!({"grant_type": "client_credentials"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ip: Some("203.0.113.7".into()),
        method: "POST".into(),
        ..Default::default()
    }
}

/// User and system CPU of a process, in clock ticks (USER_HZ: 100 per second on Linux).
#[allow(dead_code)]
pub fn ticks_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name (which may hold spaces), from the state:
            // utime and stime are the 14th and 15th of the line.
            let f: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            Some(f.iter().sum())
        })
        .unwrap_or(0)
}

/// This process's live child processes (the hook workers).
#[allow(dead_code)]
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            });
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// The example Action the realistic flow workloads are made of.
const HEAVY_ACTION: &str = include_str!("../../hooks/action-metadata.js");

/// An Action doing, for each of `parts`, what `hooks/action-metadata.js` does (its own
/// body, under a namespace and cache key of that part): ten claims from client metadata
/// and the request, a cache read and write, a scope check.
#[allow(dead_code)]
pub fn realistic_action(parts: &[&str]) -> String {
    let start = HEAVY_ACTION.find("=> {").expect("an arrow function") + "=> {".len();
    let end = HEAVY_ACTION.rfind("};").expect("its end");
    let body = &HEAVY_ACTION[start..end];
    let blocks: String = parts
        .iter()
        .map(|p| {
            let part = body
                .replace(
                    "'https://example.com/'",
                    &format!("'https://example.com/{p}/'"),
                )
                .replace("'tier:'", &format!("'{p}:'"));
            format!("  {{{part}}}\n")
        })
        .collect();
    format!("exports.onExecuteCredentialsExchange = async (event, api) => {{\n{blocks}}};\n")
}

/// An Action that sets `n` claims from the client's metadata, numbered from `from`: the
/// flow benchmark splits nine of them over three Actions.
#[allow(dead_code)]
pub fn claims_action(from: usize, n: usize) -> String {
    let sets: String = (from..from + n)
        .map(|i| {
            format!(
                "  api.accessToken.setCustomClaim('https://bench.example/c{i}', event.client.metadata.region + '-{i}');\n"
            )
        })
        .collect();
    format!("exports.onExecuteCredentialsExchange = async (event, api) => {{\n{sets}}};\n")
}

/// `sources` as the steps of one flow (`NAME0`, `NAME1`, …), each with the default
/// limit and no secrets or egress, for the pools the benchmarks time.
#[allow(dead_code)]
pub fn flow_steps<S: AsRef<str>>(
    name: &str,
    sources: &[S],
) -> Vec<tokenhook::hooks::manifest::HookSpec> {
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| tokenhook::hooks::manifest::HookSpec {
            name: format!("{name}{i}"),
            path: format!("{name}.js").into(),
            source: source.as_ref().into(),
            timeout: std::time::Duration::from_secs(5),
            secrets: Default::default(),
            fetch: None,
        })
        .collect()
}
