//! The JWKS parser: `token::verify::parse_jwks`, then key selection.
//! The body is `tokenhook::fuzzing::jwks`, shared with `tests/fuzz_smoke.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tokenhook::fuzzing::jwks(data));
