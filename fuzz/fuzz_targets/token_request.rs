//! The token request parser (form, JSON, Basic): `proxy::body::parse_token_request`.
//! The body is `tokenhook::fuzzing::token_request`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::token_request(data));
