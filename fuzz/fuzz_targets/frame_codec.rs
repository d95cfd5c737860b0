//! The hook worker frame codec: `hooks::protocol` and `hooks::engine::parse_finished`.
//! The body is `tokenhook::fuzzing::frame_codec`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::frame_codec(data));
