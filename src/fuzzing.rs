//! Fuzz target bodies, shared by the libFuzzer targets in `fuzz/` and the stable smoke
//! test `tests/fuzz_smoke.rs`, so every target builds and runs on stable and cannot rot.
//!
//! Not an API: the modules under test are `pub(crate)`, and this one module is the only
//! door the fuzzers get. Each body takes arbitrary bytes, must not panic, and asserts
//! the invariants of the code under test: a failed assertion is a finding, like a crash.
//! Inputs are laid out so that a mutator reaches the interesting code: a selector byte
//! first, then NUL-separated parts (NUL never occurs in JSON or TOML text outside an
//! escape, so it is a separator that mutation rarely breaks).

use crate::exchange::SECRET_PARAMS;
use crate::hooks::engine::{Form, RawOutcome, State};
use crate::hooks::protocol;
use crate::keys::{SigningKey, generate_pem};
use crate::token::claims::{self, ClaimPolicy, EffectForm, HookEffect, RESTRICTED};
use crate::token::verify::{self, JwksSource, Verifier, VerifyError};
use crate::token::{self as tok, TokenShape};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::{Bytes, BytesMut};
use jsonwebtoken::Algorithm;
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// `now` for every verification: fixed, so a finding replays the same way.
const NOW: u64 = 1_800_000_000;
const LEEWAY: u64 = 30;
const ISSUER: &str = "https://idp.example/";

/// The selector byte and the rest.
fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&s, rest)) => (s, rest),
        None => (0, data),
    }
}

/// The bytes before the first NUL and those after it.
fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// `application/x-www-form-urlencoded` value decoding, written out independently of
/// `form_urlencoded` so that it can check the parser: `+` is a space, `%XY` a byte,
/// invalid UTF-8 replaced.
fn form_value(s: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// 1. The token request parser.

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "application/json; charset=utf-8",
    "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
    "text/plain",
    "",
];

/// `proxy::body::parse_token_request`. Selector: bits 0-2 the content type (past the
/// table: none sent), bit 3 `Content-Encoding: gzip`, bit 4 `identity`, bit 5 the
/// first part is sent as `Basic base64(part)` rather than as the raw `Authorization`
/// value. Then `authorization NUL body`.
pub fn token_request(data: &[u8]) {
    let (sel, rest) = selector(data);
    let (auth, body) = split_nul(rest);
    let mut req = RequestHeader::build("POST", b"/oauth/token", None).expect("static request");
    if let Some(ct) = CONTENT_TYPES.get(usize::from(sel & 7)) {
        req.insert_header("Content-Type", *ct)
            .expect("static value");
    }
    if sel & 0x08 != 0 {
        req.insert_header("Content-Encoding", "gzip")
            .expect("static value");
    } else if sel & 0x10 != 0 {
        req.insert_header("Content-Encoding", "Identity")
            .expect("static value");
    }
    let basic = sel & 0x20 != 0;
    let auth_value = if basic {
        format!("Basic {}", STANDARD.encode(auth)).into_bytes()
    } else {
        auth.to_vec()
    };
    let sent_auth = !auth.is_empty() && req.insert_header("Authorization", auth_value).is_ok();
    let Ok(t) = crate::proxy::body::parse_token_request(&req, body) else {
        return;
    };
    assert!(
        sel & 0x08 == 0,
        "a compressed token request must be refused"
    );
    for k in SECRET_PARAMS {
        assert!(
            !t.params.contains_key(*k),
            "credential {k:?} reached the hook"
        );
    }
    if let Some(scope) = &t.scope {
        assert!(
            scope
                .iter()
                .all(|s| !s.is_empty() && !s.contains(char::is_whitespace)),
            "scope split into {scope:?}"
        );
    }
    if let Some(g) = &t.grant_type {
        assert_eq!(
            t.params.get("grant_type").and_then(Value::as_str),
            Some(&**g)
        );
    }
    let media = CONTENT_TYPES
        .get(usize::from(sel & 7))
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if media != "application/json" {
        // Form: no parameter repeats, and every one not a credential is there.
        let pairs: Vec<_> = form_urlencoded::parse(body).collect();
        let mut keys: Vec<_> = pairs.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), pairs.len(), "a repeated parameter was accepted");
        let kept = pairs
            .iter()
            .filter(|(k, _)| !SECRET_PARAMS.contains(&k.as_ref()))
            .count();
        assert_eq!(kept, t.params.len());
    }
    if basic && sent_auth {
        // RFC 6749 §2.3.1: the client id is the form-decoded user part, all of it.
        if let Some(user) = std::str::from_utf8(auth)
            .ok()
            .and_then(|a| a.split_once(':'))
            .map(|(id, _)| id)
        {
            assert_eq!(
                t.client_id.as_deref(),
                Some(&*form_value(user.as_bytes())),
                "Basic user {user:?}"
            );
        }
    } else if !sent_auth {
        let param = t.params.get("client_id").and_then(Value::as_str);
        assert_eq!(t.client_id.as_deref(), param);
    }
}

// ---------------------------------------------------------------------------------------
// 2. The IdP's token response: content decoding, classification, strict verification.

/// The JWKS the verifier holds: fixed bytes, as `verify/tests.rs`'s fake source.
struct FixedJwks(Bytes);

#[async_trait::async_trait]
impl JwksSource for FixedJwks {
    async fn fetch(&self) -> Result<Bytes, String> {
        Ok(self.0.clone())
    }
}

/// An RSA public key (no private half anywhere): RS256 and PS256 tokens reach a real
/// RSA verification without a slow key generation at start-up.
const RSA_N: &str = "miA9BfbAVH8nxYjPF56L5J5X_LgsniCy1Edp_Jj2m9Vu4iMDCm2an-sRvT0pEIFDw1N_cpsCTrdcUlJlG8gLei_dR4ShJA25wpbPWqIuBOs9tWzXn9lpXu-BFHxe-gwPSour0H3IIzTWxC6rQZypqfN8Fto7VFwB4bD6_jqcuSDzNZuRFfO6tn1-5WGJN44jDAfJYEBQaeu43TYwFEVjWLhyR_JisYBTCtwA5fJ4mt424w1qX15v0HrxURulUeGY0OMlpGGwnPej3xBf7x90KeBDroFGgyrfCVNoohC1Jje5xtGcpDwlMoq7qhmVxyXctwaDWLQxAWMZ_MuQlYL1EQ";

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    /// Two ES256 keys (so a kid-less ES256 token has two candidates) and one Ed25519.
    signers: [SigningKey; 3],
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = |alg, name: &str| {
            let pem = generate_pem(alg).expect("key generation");
            SigningKey::from_pem(pem.as_bytes(), std::path::Path::new(name), alg)
                .expect("generated key parses")
        };
        let signers = [
            key(Algorithm::ES256, "es-a"),
            key(Algorithm::ES256, "es-b"),
            key(Algorithm::EdDSA, "ed"),
        ];
        let mut keys: Vec<Value> = signers.iter().map(|k| k.jwk.clone()).collect();
        keys.push(json!({"kty": "RSA", "kid": "rsa-fixed", "use": "sig", "n": RSA_N, "e": "AQAB"}));
        let doc = serde_json::to_vec(&json!({ "keys": keys })).expect("plain JSON");
        let verifier = Verifier::new(
            Arc::new(FixedJwks(Bytes::from(doc))),
            vec![
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
            ],
            LEEWAY,
            // Never refreshed after the first fetch: every input sees the same keys.
            Duration::from_secs(1 << 30),
        )
        .with_issuer(Some(ISSUER.into()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        rt.block_on(verifier.refresh(false))
            .expect("fixed JWKS loads");
        Fixture {
            rt,
            verifier,
            signers,
        }
    })
}

const ENCODINGS: &[&str] = &["", "identity", "gzip", "x-gzip", "deflate", "br", " GZIP "];

fn compress(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::fast();
    match encoding.trim().to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).expect("in memory");
            e.finish().expect("in memory")
        }
        _ => data.to_vec(),
    }
}

/// `upstream::decode_content` and the token route's reading of the result (JSON object,
/// `access_token`, `token::classify`, then `Verifier::verify_typed`). Selector bits 0-1:
///
/// - 0: the rest is the IdP's body, bits 2-4 pick `Content-Encoding`, bit 5 has the
///   fuzzer's bytes compressed here first (so the JSON behind gzip is reached), bits
///   6-7 the cap;
/// - 1: the rest is an access token, classified and verified;
/// - 2: the rest is a payload, signed here by a key of the JWKS (bits 2-3 which, bit 4
///   with or without `kid`, bit 5 with `typ`) and verified: the accept path;
/// - 3: `Content-Encoding` value NUL body, both arbitrary.
pub fn token_response(data: &[u8]) {
    let (sel, rest) = selector(data);
    match sel & 3 {
        0 => {
            let encoding = ENCODINGS[usize::from(sel >> 2 & 7) % ENCODINGS.len()];
            let cap = [64, 1024, 16 * 1024, 1 << 20][usize::from(sel >> 6)];
            let ours = sel & 0x20 != 0;
            let body = if ours {
                compress(encoding, rest)
            } else {
                rest.to_vec()
            };
            let Some(decoded) = decode(encoding.as_bytes(), body, cap) else {
                return;
            };
            if ours && !matches!(encoding, "" | "identity") {
                assert_eq!(&decoded[..], rest, "{encoding} round trip");
            }
            token_document(&decoded);
        }
        1 => verify_token(&String::from_utf8_lossy(rest)),
        2 => verify_signed(sel, rest),
        _ => {
            let (encoding, body) = split_nul(rest);
            if let Some(decoded) = decode(encoding, body.to_vec(), 4096) {
                token_document(&decoded);
            }
        }
    }
}

/// Decodes like the token route, checking the cap; `None` when refused.
fn decode(encoding: &[u8], body: Vec<u8>, cap: usize) -> Option<Bytes> {
    let mut h = ResponseHeader::build(200, None).expect("static status");
    if !encoding.is_empty() {
        h.insert_header("Content-Encoding", encoding.to_vec())
            .ok()?;
    }
    let len = body.len();
    let identity = h
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "" | "identity"));
    match crate::upstream::decode_content(&h, Bytes::from(body), cap) {
        Ok(out) => {
            if identity {
                // The raw body was capped when read; identity is passed as is.
                assert_eq!(out.len(), len);
            } else {
                assert!(
                    out.len() <= cap,
                    "decoded {} bytes past the cap {cap}",
                    out.len()
                );
            }
            Some(out)
        }
        Err(_) => {
            assert!(!identity, "an identity body was refused");
            None
        }
    }
}

/// What the token route does with the decoded body.
fn token_document(body: &[u8]) {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Some(token) = doc.get("access_token").and_then(Value::as_str) {
        verify_token(token);
    }
}

fn verify_token(token: &str) {
    let shape = tok::classify(token);
    assert_eq!(tok::looks_like_jwt(token), shape == TokenShape::Jws);
    if token.bytes().filter(|&b| b == b'.').count() >= 2 {
        assert_eq!(shape, TokenShape::Jws, "a dotted token passed as opaque");
    }
    let f = fixture();
    let result = f.rt.block_on(f.verifier.verify_typed(token, NOW));
    if shape == TokenShape::Opaque {
        assert!(
            matches!(
                result,
                Err(VerifyError::Malformed(_) | VerifyError::TooLarge)
            ),
            "an opaque token got past the split: {result:?}"
        );
    }
    if let Ok((claims, _)) = result {
        // Nobody but this fixture holds the private keys, so an arbitrary token
        // verifying means the signature check is broken; its claims are checked too.
        check_accepted(&claims);
        panic!("an arbitrary token verified");
    }
}

/// What every accepted token satisfies.
fn check_accepted(claims: &Map<String, Value>) {
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .expect("accepted without a numeric exp");
    assert!(
        exp >= 0.0 && (exp.floor() as u64).saturating_add(LEEWAY) > NOW,
        "expired: {exp}"
    );
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().expect("numeric nbf");
        assert!(nbf >= 0.0 && nbf.ceil() as u64 <= NOW.saturating_add(LEEWAY));
    }
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
}

fn verify_signed(sel: u8, payload: &[u8]) {
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    let f = fixture();
    let key = &f.signers[usize::from(sel >> 2 & 3) % f.signers.len()];
    let with_kid = sel & 0x10 == 0;
    let typ = (sel & 0x20 != 0).then_some("at+jwt");
    let mut header = Map::new();
    header.insert("alg".into(), format!("{:?}", key.alg).into());
    if let Some(t) = typ {
        header.insert("typ".into(), t.into());
    }
    if with_kid {
        header.insert("kid".into(), key.kid.clone().into());
    }
    let enc = |m: &Map<String, Value>| URL_SAFE_NO_PAD.encode(serde_json::to_vec(m).expect("JSON"));
    let token = key
        .sign_compact(&enc(&header), &enc(&payload))
        .expect("signing");
    assert_eq!(tok::classify(&token), TokenShape::Jws);
    match f.rt.block_on(f.verifier.verify_typed(&token, NOW)) {
        Ok((claims, got_typ)) => {
            assert_eq!(
                claims, payload,
                "the verified claims differ from those signed"
            );
            assert_eq!(got_typ.as_deref(), typ);
            check_accepted(&claims);
        }
        // Our own signature by a published key: only the claims or the size may fail.
        Err(
            VerifyError::TooLarge
            | VerifyError::NoExpiry
            | VerifyError::ClaimType(_)
            | VerifyError::Expired { .. }
            | VerifyError::NotYetValid { .. }
            | VerifyError::Issuer { .. },
        ) => {}
        Err(e) => panic!("a token signed by a published key was refused: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// 3. The JWKS parser.

/// `token::verify::parse_jwks` on arbitrary bytes, then key selection for each
/// algorithm against what it returned.
pub fn jwks(data: &[u8]) {
    verify::fuzz_parse_jwks(data);
}

// ---------------------------------------------------------------------------------------
// 4. Claim and scope rules.

/// The payload used when the fuzzer's is not a JSON object.
fn default_payload() -> Map<String, Value> {
    let v = json!({"iss": ISSUER, "sub": "svc@clients", "aud": "https://api", "exp": NOW,
        "scope": "read:data write:data", "azp": "svc"});
    v.as_object().cloned().unwrap_or_default()
}

/// `token::claims::{legacy_effect, apply}` and the hook result interpretation before
/// them (`hooks::interpret`). Selector: bit 0 has the result read as the worker's
/// `State` (else as a legacy callback value), bit 1 the Action form, bit 2
/// `allow_unnamespaced_claims`. Then `payload JSON NUL result JSON`.
pub fn claims(data: &[u8]) {
    let (sel, rest) = selector(data);
    let (payload, result) = split_nul(rest);
    let payload = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => m,
        _ => default_payload(),
    };
    let Ok(result) = serde_json::from_slice::<Value>(result) else {
        return;
    };
    let policy = ClaimPolicy {
        allow_unnamespaced: sel & 4 != 0,
    };
    let effect = if sel & 1 == 0 {
        let is_object = matches!(result, Value::Object(_) | Value::Null);
        match claims::legacy_effect(Some(result)) {
            Ok(e) => {
                assert!(is_object);
                assert!(
                    e.scope.is_some(),
                    "D5: a legacy result always sets the scopes"
                );
                assert!(!e.claims.contains_key("scope"));
                e
            }
            Err(claims::ClaimsError::NotAnObject) => {
                assert!(!is_object);
                return;
            }
            Err(_) => return,
        }
    } else {
        let Ok(state) = serde_json::from_value::<State>(result) else {
            return;
        };
        let form = if sel & 2 != 0 {
            Form::Action
        } else {
            Form::Legacy
        };
        let outcome = RawOutcome::Finished {
            state: Box::new(state),
        };
        match crate::hooks::interpret(form, "fuzz", outcome, Duration::from_secs(1)).0 {
            Ok(e) => e,
            Err(_) => return,
        }
    };
    check_apply(payload, effect, policy);
}

/// Applies `effect` and checks Auth0's rules held.
fn check_apply(payload: Map<String, Value>, effect: HookEffect, policy: ClaimPolicy) {
    let before = claims::token_scopes(&payload).unwrap_or_default();
    let asked = effect.claims.clone();
    let form = effect.form;
    let had_scope_op = effect.scope.is_some();
    let a = match claims::apply(payload.clone(), effect, policy) {
        Ok(a) => a,
        Err(claims::ClaimsError::TooLarge(n)) => {
            assert!(n > claims::MAX_CUSTOM_CLAIMS_BYTES);
            return;
        }
        Err(e) => panic!("apply failed with {e:?}"),
    };
    // Every claim asked for is either set or ignored, by the rules.
    assert_eq!(a.claims.len() + a.ignored.len(), asked.len());
    for (k, v) in &a.claims {
        assert!(claims::rejection(k, policy, form).is_none());
        assert!(
            !RESTRICTED.contains(&k.as_str()) && k != "scope",
            "{k:?} was set"
        );
        assert_eq!(a.payload.get(k), Some(v));
        assert_eq!(asked.get(k), Some(v));
    }
    for i in &a.ignored {
        assert!(claims::rejection(&i.claim, policy, form).is_some());
    }
    // D4: restricted claims never change; `scp` only through the scope rules.
    for r in RESTRICTED.iter().filter(|r| **r != "scp") {
        assert_eq!(
            a.payload.get(*r),
            payload.get(*r),
            "restricted claim {r:?} changed"
        );
    }
    // Nothing else of the payload changes, and nothing appears from nowhere.
    for (k, v) in &payload {
        if k != "scope" && k != "scp" && !a.claims.contains_key(k) {
            assert_eq!(a.payload.get(k), Some(v), "{k:?} changed");
        }
    }
    for k in a.payload.keys() {
        assert!(
            payload.contains_key(k) || a.claims.contains_key(k) || k == "scope",
            "{k:?} appeared"
        );
    }
    // Scopes: no empty or repeated entry; an Action never exceeds the grant (D6).
    let mut seen = std::collections::HashSet::new();
    assert!(a.scopes.iter().all(|s| !s.is_empty() && seen.insert(s)));
    if form == EffectForm::Action {
        assert!(
            a.scopes.iter().all(|s| before.contains(s)),
            "D6: {:?} exceeds {before:?}",
            a.scopes
        );
    }
    if !had_scope_op {
        assert!(!a.scope_changed);
    }
    if a.scope_changed {
        // Whatever shape each scope claim has, it reads back as the new scopes.
        for key in ["scope", "scp"] {
            if let Some(v) = a.payload.get(key) {
                let mut m = Map::new();
                m.insert("scope".into(), v.clone());
                assert_eq!(
                    claims::token_scopes(&m).unwrap_or_default(),
                    a.scopes,
                    "{key} is written as {v} for scopes {:?}",
                    a.scopes
                );
            }
        }
        if a.scopes.is_empty() {
            assert!(!a.payload.contains_key("scope") && !a.payload.contains_key("scp"));
        }
    } else {
        assert_eq!(a.scopes, before);
        assert_eq!(a.payload.get("scope"), payload.get("scope"));
        assert_eq!(a.payload.get("scp"), payload.get("scp"));
    }
}

// ---------------------------------------------------------------------------------------
// 5. The worker frame codec.

/// `hooks::protocol` and `hooks::engine::parse_finished`. Selector bits 0-1:
///
/// - 0: the rest is a byte stream from a peer, fed in chunks of `(sel >> 2) + 1` bytes
///   to `split_frame` (and whole to `read_blocking`, which must agree); each frame's
///   payload goes where the pool or worker would send it;
/// - 1: `frame` of the NUL-separated parts, split again;
/// - 2 and 3: `call_frame` of the rest as JSON, split again.
pub fn frame_codec(data: &[u8]) {
    let (sel, rest) = selector(data);
    match sel & 3 {
        0 => {
            let chunk = usize::from(sel >> 2) + 1;
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            let mut consumed = 0;
            let mut failed = false;
            'feed: for piece in rest.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match protocol::split_frame(&mut buf) {
                        Ok(Some((tag, payload))) => {
                            consumed += 5 + payload.len();
                            frames.push((tag, payload));
                        }
                        Ok(None) => break,
                        Err(_) => {
                            failed = true;
                            break 'feed;
                        }
                    }
                }
            }
            let mut again = Vec::new();
            for (tag, payload) in &frames {
                again.extend_from_slice(&protocol::frame(*tag, &[payload]));
                on_frame(*tag, payload);
            }
            assert_eq!(
                &again[..],
                &rest[..consumed],
                "frames do not re-encode to the stream"
            );
            if failed {
                let len = u32::from_be_bytes(rest[consumed..consumed + 4].try_into().expect("4"));
                assert!(len == 0 || len as usize > protocol::MAX_FRAME);
            }
            // The worker's blocking reader sees the same frames.
            let mut r = rest;
            for (tag, payload) in &frames {
                let got = protocol::read_blocking(&mut r).expect("a frame split_frame took");
                assert_eq!(got, Some((*tag, payload.to_vec())));
            }
        }
        1 => {
            let tag = sel >> 2;
            let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
            let f = protocol::frame(tag, &parts);
            let mut buf = BytesMut::from(&f[..]);
            let (t, payload) = protocol::split_frame(&mut buf)
                .expect("a frame of ours")
                .expect("whole");
            assert_eq!(t, tag);
            assert_eq!(&payload[..], &parts.concat()[..]);
            assert!(buf.is_empty());
        }
        _ => {
            let input = serde_json::from_slice::<Value>(rest)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(rest).into_owned()));
            let ahead = Duration::from_millis(u64::from(sel));
            let f = protocol::call_frame(&input, Instant::now() + ahead);
            let mut buf = BytesMut::from(&f[..]);
            let (tag, payload) = protocol::split_frame(&mut buf)
                .expect("a frame of ours")
                .expect("whole");
            assert_eq!(tag, protocol::TAG_CALL);
            assert!(buf.is_empty());
            let deadline = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
            assert!(protocol::remaining(deadline) <= ahead + Duration::from_millis(1));
            let back: Value = serde_json::from_slice(&payload[8..]).expect("call input is JSON");
            assert_eq!(back, input);
        }
    }
}

/// A frame's payload, read as its receiver reads it.
fn on_frame(tag: u8, payload: &[u8]) {
    match tag {
        protocol::TAG_INIT => {
            let _ = serde_json::from_slice::<protocol::Init>(payload);
        }
        protocol::TAG_CALL if payload.len() >= 8 => {
            let deadline = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
            let _ = protocol::remaining(deadline);
            let _ = serde_json::from_slice::<Value>(&payload[8..]);
        }
        protocol::TAG_FINISHED => {
            if let Ok(done) = protocol::Done::parse(payload) {
                for step in done.steps {
                    settle(step.outcome);
                }
            }
        }
        _ => {}
    }
}

/// The pool's side of a settled call: Auth0's rules, then the claim rules.
fn settle(outcome: RawOutcome) {
    for form in [Form::Legacy, Form::Action] {
        let (effect, _ops) =
            crate::hooks::interpret(form, "fuzz", outcome.clone(), Duration::from_secs(1));
        if let Ok(effect) = effect {
            let policy = ClaimPolicy {
                allow_unnamespaced: false,
            };
            check_apply(default_payload(), effect, policy);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6. The config loader.

/// A base folder with `hooks/` and `key.pem`, so a config can load whole.
fn config_base() -> &'static std::path::Path {
    static BASE: OnceLock<std::path::PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("tokenhook-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(d.join("hooks")).expect("temp dir");
        std::fs::write(d.join("key.pem"), "not read by the loader").expect("temp file");
        d
    })
}

/// `config::Config::from_toml`: `TOML text NUL environment`, the environment one
/// `NAME=value` a line. Host names are not looked up (only IP literals resolve) so an
/// input never waits on DNS.
pub fn config(data: &[u8]) {
    crate::config::set_name_lookups(false);
    let (text, env) = split_nul(data);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let env = String::from_utf8_lossy(env);
    let vars: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let base = config_base();
    match crate::config::Config::from_toml(text, base, vars.clone()) {
        Ok(c) => {
            let active = c
                .signing
                .keys
                .iter()
                .filter(|k| k.state == crate::config::KeyState::Active)
                .count();
            assert_eq!(active, 1, "one active signing key");
            assert!(c.signing.keys.iter().all(|k| k.path.is_absolute()));
            assert!(c.hooks.dir.is_absolute());
            assert_ne!(c.server.listen, c.server.admin_listen);
            assert!(!c.upstream.algorithms.is_empty());
            // The same input loads the same way.
            let again = crate::config::Config::from_toml(text, base, vars).expect("loads twice");
            assert_eq!(stable_debug(&again), stable_debug(&c));
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an error without a message");
            let _ = e.to_string();
        }
    }
}

/// `Debug` of a config with its clients in key order (a `HashMap`'s order is per map).
fn stable_debug(c: &crate::config::Config) -> String {
    let clients: std::collections::BTreeMap<_, _> = c.clients.iter().collect();
    format!(
        "{:?}",
        (
            &c.server,
            &c.upstream,
            &c.signing,
            &c.hooks,
            &c.log,
            clients
        )
    )
}
