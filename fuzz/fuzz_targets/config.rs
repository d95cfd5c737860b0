//! The config loader: `config::Config::from_toml` with arbitrary text and environment.
//! The body is `tokenhook::fuzzing::config`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::config(data));
