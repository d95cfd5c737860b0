//! Microbenchmarks of the token hot path, each stage alone and the whole rewrite
//! without network. Run: `cargo bench --bench hot_path`. Compare within one run: the
//! machines are shared and noisy, so ratios mean more than absolute numbers.

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokenhook::config::HooksConfig;
use tokenhook::hooks::HookPool;
use tokenhook::hooks::engine::{Engine, Limits};
use tokenhook::hooks::manifest::FlowSpec;
use tokenhook::hooks::pool::WorkerCommand;
use tokenhook::keys::{SigningKey, generate_pem};
use tokenhook::token::claims::{self, ClaimPolicy};
use tokenhook::token::verify::{JwksSource, Verifier};

mod common;
use common::{call, claims_action, realistic_action};

const SEED: &str = include_str!("../hooks/seed.js");
const HEAVY: &str = include_str!("../hooks/action-metadata.js");

fn key(alg: Algorithm) -> SigningKey {
    let pem = generate_pem(alg).unwrap();
    SigningKey::from_pem(pem.as_bytes(), Path::new("bench"), alg).unwrap()
}

fn payload() -> Map<String, Value> {
    json!({"iss": "https://idp.example.com/", "sub": "svc-basic@clients", "aud": "https://api.example.com",
           "iat": 1_795_000_000u64, "exp": 4_000_000_000u64, "scope": "read:data write:data",
           "client_id": "svc-basic", "jti": "a2f4c7e1d9b8"})
    .as_object()
    .cloned()
    .unwrap()
}

fn pool(source: &str) -> HookPool {
    flow_pool(&[source], true)
}

/// A pool running `sources` as one flow (the first the Hook if `has_hook`).
fn flow_pool(sources: &[&str], has_hook: bool) -> HookPool {
    let steps = common::flow_steps("bench", sources);
    let mut cfg = HooksConfig::defaults(".".into());
    cfg.workers = 1;
    let command = WorkerCommand {
        program: env!("CARGO_BIN_EXE_tokenhook").into(),
        args: vec![tokenhook::hooks::WORKER_ARG.into()],
    };
    HookPool::start(FlowSpec { steps, has_hook }, &cfg, command).unwrap()
}

struct Static(bytes::Bytes);

#[async_trait::async_trait]
impl JwksSource for Static {
    async fn fetch(&self) -> Result<bytes::Bytes, String> {
        Ok(self.0.clone())
    }
}

fn bench_hooks(c: &mut Criterion) {
    let mut g = c.benchmark_group("hook");
    g.bench_function("context_create_and_compile", |b| {
        b.iter(|| Engine::compile(black_box(SEED), "{}", Limits::default()).unwrap())
    });
    let input = std::rc::Rc::new(tokenhook::hooks::input_json(&call(), None));
    let mut engine = Engine::compile(SEED, "{}", Limits::default()).unwrap();
    g.bench_function("seed_inline_warm", |b| {
        b.iter(|| {
            engine.call(
                black_box(&input),
                std::time::Instant::now() + Duration::from_secs(5),
            )
        })
    });
    let mut heavy_engine = Engine::compile(HEAVY, "{}", Limits::default()).unwrap();
    g.bench_function("action_inline_warm", |b| {
        b.iter(|| {
            heavy_engine.call(
                black_box(&input),
                std::time::Instant::now() + Duration::from_secs(5),
            )
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seed = pool(SEED);
    let c1 = call();
    g.bench_function("seed_through_pool", |b| {
        b.iter(|| {
            rt.block_on(seed.invoke(black_box(&c1)))
                .last_result()
                .unwrap()
        })
    });
    let heavy = pool(HEAVY);
    g.bench_function("action_ten_claims_through_pool", |b| {
        b.iter(|| {
            rt.block_on(heavy.invoke(black_box(&c1)))
                .last_result()
                .unwrap()
        })
    });
    g.finish();
    // The flow's cost (issue: within 1.3x): three bound Actions setting three claims
    // each, against one Action setting all nine, side by side in one run.
    let mut g = c.benchmark_group("flow");
    // One engine alone, without the pool: what one Action call costs in Boa, for the
    // nine claims in one Action and three of them in one (a step of the flow).
    let input = std::rc::Rc::new(tokenhook::hooks::input_json(&call(), None));
    for (name, n) in [
        ("inline_action_nine_claims", 9),
        ("inline_action_three_claims", 3),
    ] {
        let mut e = Engine::compile(&claims_action(0, n), "{}", Limits::default()).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                e.call(
                    black_box(&input),
                    std::time::Instant::now() + Duration::from_secs(5),
                )
            })
        });
    }
    // Each pool's worker process, found as the child it added, for its CPU time.
    let before = common::children();
    let one = flow_pool(&[&claims_action(0, 9)], false);
    let one_worker = new_children(&before);
    let (a, b2, c3) = (
        claims_action(0, 3),
        claims_action(3, 3),
        claims_action(6, 3),
    );
    let before = common::children();
    let three = flow_pool(&[&a, &b2, &c3], false);
    let three_worker = new_children(&before);
    // The same with realistic Actions (each doing what hooks/action-metadata.js does:
    // ten claims, a cache read and write, a scope check): three of them, against one
    // Action doing all three's work.
    let before = common::children();
    let real_one = flow_pool(&[&realistic_action(&["a", "b", "c"])], false);
    let real_one_worker = new_children(&before);
    let (ra, rb, rc) = (
        realistic_action(&["a"]),
        realistic_action(&["b"]),
        realistic_action(&["c"]),
    );
    let before = common::children();
    let real_three = flow_pool(&[&ra, &rb, &rc], false);
    let real_three_worker = new_children(&before);
    for (name, p) in [
        ("one_action_nine_claims", &one),
        ("three_actions_three_claims_each", &three),
        ("one_action_doing_three_realistic_actions_work", &real_one),
        ("three_realistic_actions", &real_three),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let inv = rt.block_on(p.invoke(black_box(&c1)));
                assert!(inv.failure().is_none());
                inv
            })
        });
    }
    g.finish();
    // The same pairs measured interleaved, one call of each in turn, so both see the
    // same machine (these are shared and noisy). A round trip between two processes is
    // bimodal there (a wake-up is quick or waits for the scheduler), so the fast tenth
    // (p10) is printed beside the median. Then CPU time per call, the caller's and its
    // worker's together, in five rounds of each in turn: it does not move with
    // scheduling delays, so its median ratio is the steadier measure of the work a
    // flow adds.
    for (what, one, one_worker, three, three_worker) in [
        ("nine claims", &one, &one_worker, &three, &three_worker),
        (
            "three realistic Actions' work",
            &real_one,
            &real_one_worker,
            &real_three,
            &real_three_worker,
        ),
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..3000 {
            let t = std::time::Instant::now();
            black_box(rt.block_on(one.invoke(&c1)));
            a.push(t.elapsed());
            let t = std::time::Instant::now();
            black_box(rt.block_on(three.invoke(&c1)));
            b.push(t.elapsed());
        }
        a.sort();
        b.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (ma, mb, fa, fb) = (us(a[1500]), us(b[1500]), us(a[300]), us(b[300]));
        println!(
            "flow/interleaved ({what}): one Action {ma:.1} µs, three-Action flow {mb:.1} µs (medians of 3000 calls each), ratio {:.2}; p10 {fa:.1} / {fb:.1} µs, ratio {:.2}",
            mb / ma,
            fb / fa
        );
        let worker_ticks = |w: &[u32]| w.iter().map(|p| common::ticks_of(*p)).sum::<u64>();
        let me = std::process::id();
        let per_call = |p: &HookPool, worker: &[u32]| {
            const CALLS: u32 = 1000;
            let (s0, w0) = (common::ticks_of(me), worker_ticks(worker));
            for _ in 0..CALLS {
                black_box(rt.block_on(p.invoke(&c1)));
            }
            let ticks = (common::ticks_of(me) - s0) + (worker_ticks(worker) - w0);
            // 100 ticks a second.
            ticks as f64 * 1e4 / f64::from(CALLS)
        };
        let (mut ca, mut cb) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            ca.push(per_call(one, one_worker));
            cb.push(per_call(three, three_worker));
        }
        ca.sort_by(f64::total_cmp);
        cb.sort_by(f64::total_cmp);
        println!(
            "flow/cpu ({what}): one Action {:.0} µs, three-Action flow {:.0} µs of CPU per call (caller and worker; medians of 5 rounds of 1000 calls), ratio {:.2}",
            ca[2],
            cb[2],
            cb[2] / ca[2]
        );
    }
}

fn new_children(before: &[u32]) -> Vec<u32> {
    let now = common::children();
    assert!(
        !now.is_empty(),
        "the bench reads its workers' CPU from /proc"
    );
    now.into_iter().filter(|p| !before.contains(p)).collect()
}

fn bench_crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("sign");
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let k = key(alg);
        let p = payload();
        g.bench_function(format!("{alg:?}_prepared_key"), |b| {
            b.iter(|| tokenhook::token::sign(&k, Some("at+jwt"), black_box(&p)).unwrap())
        });
    }
    // jsonwebtoken's own encode re-parses the RSA key per call: the cost we avoid.
    let pem = generate_pem(Algorithm::RS256).unwrap();
    let ek = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(Algorithm::RS256);
    let p = payload();
    g.bench_function("RS256_jsonwebtoken_encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&p), &ek).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("verify");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let k = key(alg);
        let jwks = serde_json::to_vec(&json!({"keys": [k.jwk]})).unwrap();
        let v = Verifier::new(
            Arc::new(Static(jwks.into())),
            vec![alg],
            30,
            Duration::from_secs(10),
        );
        let token = tokenhook::token::sign(&k, Some("at+jwt"), &payload()).unwrap();
        rt.block_on(v.refresh(false)).unwrap();
        g.bench_function(format!("{alg:?}_upstream_token"), |b| {
            b.iter(|| {
                rt.block_on(v.verify(black_box(&token), 1_800_000_000))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_rewrite(c: &mut Criterion) {
    // Verify the IdP's RS256 token, run the seed hook through the pool, apply the
    // rules, sign with ES256: the whole rewrite minus network and HTTP.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idp = key(Algorithm::RS256);
    let jwks = serde_json::to_vec(&json!({"keys": [idp.jwk]})).unwrap();
    let v = Verifier::new(
        Arc::new(Static(jwks.into())),
        vec![Algorithm::RS256],
        30,
        Duration::from_secs(10),
    );
    rt.block_on(v.refresh(false)).unwrap();
    let upstream = tokenhook::token::sign(&idp, Some("at+jwt"), &payload()).unwrap();
    let ours = key(Algorithm::ES256);
    let seed = pool(SEED);
    let c1 = call();
    let policy = ClaimPolicy {
        allow_unnamespaced: false,
    };
    c.bench_function("rewrite/rs256_verify_seed_hook_es256_sign", |b| {
        b.iter(|| {
            let p = rt
                .block_on(v.verify(black_box(&upstream), 1_800_000_000))
                .unwrap();
            let effect = rt.block_on(seed.invoke(&c1)).last_result().unwrap();
            let applied = claims::apply(p, effect, policy).unwrap();
            tokenhook::token::sign(&ours, Some("at+jwt"), &applied.payload).unwrap()
        })
    });
}

/// The pass-through guard's first look at an IdP answer on another path: what every
/// relayed JSON answer pays, against parsing the same body (what a guard without the
/// first look would pay for every answer).
fn bench_guard(c: &mut Criterion) {
    let introspection =
        json!({"active": true, "client_id": "svc-basic", "scope": "read:data write:data",
        "exp": 4_000_000_000u64, "iat": 1_795_000_000u64, "sub": "svc-basic@clients",
        "aud": "https://api.example.com", "iss": "https://idp.example.com/",
        "metadata": {"region": "eu", "team": "payments", "notes": "x".repeat(600)}})
        .to_string();
    let body = introspection.as_bytes();
    c.bench_function("guard/first_look_json_1k_no_token", |b| {
        b.iter(|| {
            tokenhook::token::may_carry_token(
                black_box(Some("application/json; charset=utf-8")),
                false,
                black_box(body),
            )
        })
    });
    c.bench_function("guard/first_look_html", |b| {
        b.iter(|| {
            tokenhook::token::may_carry_token(black_box(Some("text/html")), false, black_box(body))
        })
    });
    c.bench_function("guard/parse_json_1k", |b| {
        b.iter(|| serde_json::from_slice::<Map<String, Value>>(black_box(body)).ok())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_hooks, bench_crypto, bench_rewrite, bench_guard
}
criterion_main!(benches);
