//! The IdP's token response: `upstream::decode_content`, `token::classify` and the strict
//! verifier against a fixed in-memory JWKS.
//! The body is `tokenhook::fuzzing::token_response`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::token_response(data));
