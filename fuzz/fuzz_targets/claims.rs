//! Auth0's claim and scope rules on arbitrary hook results: `token::claims::{legacy_effect,
//! apply}` behind `hooks::interpret`, with their invariants asserted.
//! The body is `tokenhook::fuzzing::claims`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::claims(data));
