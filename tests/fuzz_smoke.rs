//! The fuzz targets of `fuzz/` as ordinary stable tests, so they cannot rot: each body
//! (`tokenhook::fuzzing`) runs over its seed corpus (`fuzz/corpus/TARGET/`, regression
//! seeds included) and then over inputs made deterministically from those seeds by a
//! tiny xorshift mutator. No libFuzzer, no coverage feedback: this checks the bodies
//! build, run and hold their invariants on a bounded sample, in a few seconds of debug.
//!
//! `FUZZ_SMOKE_ITERS` changes the number of generated inputs per target (default 2,000).

use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenhook::fuzzing;

/// Deterministic xorshift64*: the same inputs on every run and machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes a mutation likes to insert: separators and JSON/TOML/JWS punctuation.
const INTERESTING: &[u8] = b"\0\0.=&%+:;,\"{}[]\\ \n-_/01259aAeE";

fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i).min(16) + 1;
                v.drain(i..i + n);
            }
            4 => {
                let i = rng.below(len + 1);
                v.truncate(i);
            }
            5 => {
                // Splice a piece of another seed in.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a) + 1;
                    let i = rng.below(len + 1);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 if len > 1 => {
                // Duplicate a piece in place (repeats keys, frames, segments).
                let a = rng.below(len);
                let b = a + rng.below(len - a).min(64) + 1;
                let piece = v[a..b].to_vec();
                v.splice(b..b, piece);
            }
            _ => {
                // The selector byte: every mode of the target is reached.
                if let Some(first) = v.first_mut() {
                    *first = rng.next() as u8;
                }
            }
        }
    }
    v
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|p| std::fs::read(p).expect("seed"))
        .collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

fn iterations() -> usize {
    std::env::var("FUZZ_SMOKE_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// Runs `body` over the seeds, then over generated inputs: mostly mutated seeds, some
/// random bytes. A panic names the input, which can be replayed with `cargo fuzz run`.
fn smoke(target: &str, body: fn(&[u8])) {
    let start = Instant::now();
    let seeds = seeds(target);
    for s in &seeds {
        body(s);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64);
    for i in 0..iterations() {
        let input = if i % 10 == 9 {
            (0..rng.below(256)).map(|_| rng.next() as u8).collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed, &seeds)
        };
        let outcome = std::panic::catch_unwind(|| body(&input));
        if outcome.is_err() {
            panic!("{target}: input #{i} failed: {input:?}");
        }
    }
    eprintln!(
        "{target}: {} seeds + {} inputs in {:?}",
        seeds.len(),
        iterations(),
        start.elapsed()
    );
}

#[test]
fn token_request() {
    smoke("token_request", fuzzing::token_request);
}

#[test]
fn token_response() {
    smoke("token_response", fuzzing::token_response);
}

#[test]
fn jwks() {
    smoke("jwks", fuzzing::jwks);
}

#[test]
fn claims() {
    smoke("claims", fuzzing::claims);
}

#[test]
fn frame_codec() {
    smoke("frame_codec", fuzzing::frame_codec);
}

#[test]
fn config() {
    smoke("config", fuzzing::config);
}
