use super::*;
use crate::keys::{SigningKey, generate_pem};
use prometheus::IntCounter;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct FakeSource {
    jwks: std::sync::Mutex<Vec<u8>>,
    fetches: AtomicUsize,
    delay: Duration,
    /// When set, a fetch fails with this (an unreachable IdP, a timeout).
    fail: std::sync::Mutex<Option<String>>,
    /// The discovery document's issuer, if it has one.
    issuer: std::sync::Mutex<Option<String>>,
}

impl FakeSource {
    fn new(jwks: Vec<u8>, delay: Duration) -> Arc<Self> {
        Arc::new(FakeSource {
            jwks: std::sync::Mutex::new(jwks),
            fetches: AtomicUsize::new(0),
            delay,
            fail: std::sync::Mutex::new(None),
            issuer: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait::async_trait]
impl JwksSource for FakeSource {
    async fn fetch(&self) -> Result<bytes::Bytes, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(bytes::Bytes::from(self.jwks.lock().unwrap().clone()))
    }

    async fn issuer(&self) -> Result<String, String> {
        self.issuer
            .lock()
            .unwrap()
            .clone()
            .ok_or("no issuer".into())
    }
}

fn key(alg: Algorithm) -> SigningKey {
    let pem = generate_pem(alg).unwrap();
    SigningKey::from_pem(pem.as_bytes(), Path::new("k"), alg).unwrap()
}

fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    serde_json::to_vec(&json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
        .unwrap()
}

fn token(k: &SigningKey, claims: Value) -> String {
    crate::token::sign(k, Some("at+jwt"), claims.as_object().unwrap()).unwrap()
}

const NOW: u64 = 1_800_000_000;

fn verifier(published: &[&SigningKey], algs: &[Algorithm]) -> (Verifier, Arc<FakeSource>) {
    let src = FakeSource::new(jwks(published), Duration::from_millis(20));
    let v = Verifier::new(src.clone(), algs.to_vec(), 30, Duration::from_secs(60));
    (v, src)
}

#[tokio::test]
async fn verifies_and_returns_claims() {
    let k = key(Algorithm::RS256);
    let (v, src) = verifier(&[&k], &[Algorithm::RS256]);
    let t = token(&k, json!({"sub": "a", "exp": NOW + 10, "scope": "x"}));
    let claims = v.verify(&t, NOW).await.unwrap();
    assert_eq!(claims["scope"], "x");
    // First use fetched the keys once; the second is served from cache.
    v.verify(&t, NOW).await.unwrap();
    assert_eq!(src.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unknown_kid_refreshes_once_then_is_rate_limited() {
    let known = key(Algorithm::RS256);
    let rogue = key(Algorithm::RS256);
    let (v, src) = verifier(&[&known], &[Algorithm::RS256]);
    v.refresh(false).await.unwrap();
    let t = token(&rogue, json!({"exp": NOW + 10}));
    assert_eq!(
        v.verify(&t, NOW).await,
        Err(VerifyError::UnknownKey(rogue.kid.clone()))
    );
    assert_eq!(
        v.verify(&t, NOW).await,
        Err(VerifyError::UnknownKey(rogue.kid.clone()))
    );
    // One refresh for the unknown kid; the second attempt was inside min_refresh.
    assert_eq!(src.fetches.load(Ordering::SeqCst), 1);
}

// Breaks if failed periodic refreshes during an IdP outage hold back the refresh a
// token with the key the IdP came back with triggers (its tokens would fail for up to
// `jwks_min_refresh_seconds` after the IdP is back).
#[tokio::test]
async fn after_an_outage_a_new_key_is_fetched_at_once() {
    let old = key(Algorithm::RS256);
    let new = key(Algorithm::RS256);
    let (v, src) = verifier(&[&old], &[Algorithm::RS256]);
    *src.fail.lock().unwrap() = Some("connection refused".into());
    assert!(v.refresh(false).await.is_err());
    assert!(v.refresh(false).await.is_err());
    *src.fail.lock().unwrap() = None;
    *src.jwks.lock().unwrap() = jwks(&[&new]);
    let t = token(&new, json!({"exp": NOW + 10}));
    assert!(v.verify(&t, NOW).await.is_ok());
    // And a second unknown kid right after is still rate limited.
    let rogue = key(Algorithm::RS256);
    let before = src.fetches.load(Ordering::SeqCst);
    let r = token(&rogue, json!({"exp": NOW + 10}));
    assert!(v.verify(&r, NOW).await.is_err());
    assert_eq!(src.fetches.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn rotated_upstream_key_is_picked_up_by_refresh() {
    let old = key(Algorithm::RS256);
    let new = key(Algorithm::RS256);
    let src = FakeSource::new(jwks(&[&old]), Duration::ZERO);
    let v = Verifier::new(src.clone(), vec![Algorithm::RS256], 30, Duration::ZERO);
    v.refresh(false).await.unwrap();
    *src.jwks.lock().unwrap() = jwks(&[&old, &new]);
    let t = token(&new, json!({"exp": NOW + 10}));
    assert!(v.verify(&t, NOW).await.is_ok());
    assert_eq!(src.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let k = key(Algorithm::ES256);
    let (v, src) = verifier(&[&k], &[Algorithm::ES256]);
    let v = Arc::new(v);
    let t = token(&k, json!({"exp": NOW + 10}));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let v = v.clone();
            let t = t.clone();
            tokio::spawn(async move { v.verify(&t, NOW).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(src.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn only_configured_algorithms_and_never_hmac() {
    let k = key(Algorithm::ES256);
    let (v, _) = verifier(&[&k], &[Algorithm::RS256]);
    let t = token(&k, json!({"exp": NOW + 10}));
    assert_eq!(
        v.verify(&t, NOW).await,
        Err(VerifyError::Algorithm(Algorithm::ES256))
    );
    // An HS256 token, even with a JWKS that publishes the "secret", is refused.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &json!({"exp": NOW + 10}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let (v, _) = verifier(&[&k], &[Algorithm::RS256, Algorithm::ES256]);
    assert!(matches!(
        v.verify(&hs, NOW).await,
        Err(VerifyError::Algorithm(Algorithm::HS256))
    ));
    // alg "none" does not even parse as a header.
    let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":1}"#));
    assert!(matches!(
        v.verify(&none, NOW).await,
        Err(VerifyError::Malformed(_))
    ));
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn times_are_checked_with_leeway() {
    let k = key(Algorithm::EdDSA);
    let (v, _) = verifier(&[&k], &[Algorithm::EdDSA]);
    let ok = token(&k, json!({"exp": NOW - 29}));
    assert!(v.verify(&ok, NOW).await.is_ok());
    let expired = token(&k, json!({"exp": NOW - 31}));
    assert!(matches!(
        v.verify(&expired, NOW).await,
        Err(VerifyError::Expired { .. })
    ));
    let early = token(&k, json!({"exp": NOW + 100, "nbf": NOW + 31}));
    assert!(matches!(
        v.verify(&early, NOW).await,
        Err(VerifyError::NotYetValid { .. })
    ));
    let no_exp = token(&k, json!({"sub": "x"}));
    assert_eq!(v.verify(&no_exp, NOW).await, Err(VerifyError::NoExpiry));
}

#[tokio::test]
async fn tampered_payload_fails_the_signature() {
    let k = key(Algorithm::RS256);
    let (v, _) = verifier(&[&k], &[Algorithm::RS256]);
    let t = token(&k, json!({"exp": NOW + 10, "scope": "a"}));
    let mut parts: Vec<&str> = t.split('.').collect();
    let evil = b64(r#"{"exp":1900000000,"scope":"admin"}"#);
    parts[1] = &evil;
    assert_eq!(
        v.verify(&parts.join("."), NOW).await,
        Err(VerifyError::Signature)
    );
}

// The refresher's fetch failed a moment ago, so a request's own refresh is skipped by
// the rate limit: with no key set held, that is still the JWKS being unavailable.
// Breaks if it is reported as an unknown kid (the client would get "failed
// verification" instead of a retryable error).
#[tokio::test]
async fn no_keys_yet_is_unavailable_even_when_the_refresh_is_skipped() {
    let k = key(Algorithm::ES256);
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    *src.fail.lock().unwrap() = Some("connection refused".into());
    let v = Verifier::new(
        src.clone(),
        vec![Algorithm::ES256],
        30,
        Duration::from_secs(60),
    );
    assert!(v.refresh(false).await.is_err());
    let t = token(&k, json!({"exp": NOW + 10}));
    // The first request tries once itself (a failed periodic attempt does not hold it
    // back), the next is inside min_refresh and skipped: both are unavailable.
    for fetches in [2, 2] {
        assert!(matches!(
            v.verify(&t, NOW).await,
            Err(VerifyError::JwksUnavailable(_))
        ));
        assert_eq!(src.fetches.load(Ordering::SeqCst), fetches);
    }
}

#[tokio::test]
async fn unreachable_jwks_is_reported() {
    struct Down;
    #[async_trait::async_trait]
    impl JwksSource for Down {
        async fn fetch(&self) -> Result<bytes::Bytes, String> {
            Err("connection refused".into())
        }
    }
    let k = key(Algorithm::RS256);
    let v = Verifier::new(Arc::new(Down), vec![Algorithm::RS256], 30, Duration::ZERO);
    let t = token(&k, json!({"exp": NOW + 10}));
    assert!(matches!(
        v.verify(&t, NOW).await,
        Err(VerifyError::JwksUnavailable(_))
    ));
    assert!(!v.has_keys());
}

#[tokio::test]
async fn replaced_key_under_the_same_kid_is_refetched() {
    use base64::Engine;
    let old = key(Algorithm::RS256);
    let new = key(Algorithm::RS256);
    let src = FakeSource::new(jwks(&[&old]), Duration::ZERO);
    let v = Verifier::new(src.clone(), vec![Algorithm::RS256], 30, Duration::ZERO);
    v.refresh(false).await.unwrap();
    // The IdP now signs with a new key but publishes it under the old kid.
    let mut jwk = new.jwk.clone();
    jwk["kid"] = json!(old.kid);
    *src.jwks.lock().unwrap() = serde_json::to_vec(&json!({"keys": [jwk]})).unwrap();
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"alg": "RS256", "kid": old.kid});
    let t = new
        .sign_compact(&enc(&header), &enc(&json!({"exp": NOW + 10})))
        .unwrap();
    assert!(v.verify(&t, NOW).await.is_ok());
    assert_eq!(src.fetches.load(Ordering::SeqCst), 2);
}

// ---- Fail closed: forged tokens, each made by hand (base64 of crafted JSON, signed with
// a published test key where a signature is needed, so only the rule under test can
// refuse it).

/// Signs the given segments (already encoded, however oddly) with `k`.
fn forge_segments(k: &SigningKey, header: &str, payload: &str) -> String {
    k.sign_compact(header, payload).unwrap()
}

/// Signs header and payload JSON text (duplicates and all) with `k`.
fn forge(k: &SigningKey, header: &str, payload: &str) -> String {
    forge_segments(k, &b64(header), &b64(payload))
}

fn es_header(k: &SigningKey) -> String {
    format!(r#"{{"alg":"ES256","kid":"{}"}}"#, k.kid)
}

fn good_payload() -> String {
    format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 60)
}

async fn es_verifier() -> (SigningKey, Verifier, Arc<FakeSource>) {
    let k = key(Algorithm::ES256);
    let (v, src) = verifier(&[&k], &[Algorithm::ES256]);
    v.refresh(false).await.unwrap();
    (k, v, src)
}

fn malformed(r: Result<Map<String, Value>, VerifyError>) -> bool {
    matches!(r, Err(VerifyError::Malformed(_)))
}

#[tokio::test]
async fn forged_baseline_verifies() {
    // The forging helpers themselves produce acceptable tokens: every refusal below is
    // due to the one thing each test changes.
    let (k, v, _) = es_verifier().await;
    assert!(
        v.verify(&forge(&k, &es_header(&k), &good_payload()), NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn oversized_token_is_refused_before_parsing() {
    // Breaks if a token over MAX_TOKEN_BYTES is parsed (or verified) at all.
    let (k, v, src) = es_verifier().await;
    let pad = "x".repeat(MAX_TOKEN_BYTES);
    let t = forge(
        &k,
        &es_header(&k),
        &format!(r#"{{"exp":{},"p":"{pad}"}}"#, NOW + 60),
    );
    assert_eq!(v.verify(&t, NOW).await, Err(VerifyError::TooLarge));
    // Garbage of that size too: the cap comes before anything else.
    assert_eq!(
        v.verify(&".".repeat(MAX_TOKEN_BYTES + 1), NOW).await,
        Err(VerifyError::TooLarge)
    );
    assert_eq!(
        src.fetches.load(Ordering::SeqCst),
        1,
        "no refresh for garbage"
    );
}

#[tokio::test]
async fn wrong_segment_counts_are_refused() {
    let (k, v, _) = es_verifier().await;
    let good = forge(&k, &es_header(&k), &good_payload());
    // Breaks if extra dots are tolerated (jsonwebtoken's rsplitn would read the fourth
    // segment as the signature and "a.b" as a header).
    assert!(malformed(v.verify(&format!("{good}."), NOW).await));
    assert!(malformed(v.verify(&format!("{good}.x"), NOW).await));
    assert!(malformed(v.verify(&format!("x.{good}"), NOW).await));
    // Breaks if a five-segment JWE is decoded as a JWS.
    let jwe = format!("{}.a.b.c.d", b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#));
    assert!(malformed(v.verify(&jwe, NOW).await));
    // Breaks if two segments are accepted.
    let two = good.rsplit_once('.').unwrap().0;
    assert!(malformed(v.verify(two, NOW).await));
}

#[tokio::test]
async fn unsecured_alg_none_is_refused() {
    let (k, v, _) = es_verifier().await;
    // Breaks if an empty signature is accepted with alg none.
    let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&good_payload()));
    assert!(malformed(v.verify(&none, NOW).await));
    // ...or with some signature bytes attached, or with a known kid.
    let none = format!(
        "{}.{}.c2ln",
        b64(&format!(r#"{{"alg":"none","kid":"{}"}}"#, k.kid)),
        b64(&good_payload())
    );
    assert!(malformed(v.verify(&none, NOW).await));
    // Breaks if a header without alg (or with a non-string alg) gets a default.
    assert!(malformed(
        v.verify(&forge(&k, r#"{"kid":"x"}"#, &good_payload()), NOW)
            .await
    ));
    assert!(malformed(
        v.verify(&forge(&k, r#"{"alg":7}"#, &good_payload()), NOW)
            .await
    ));
}

#[tokio::test]
async fn padded_segments_are_refused() {
    use base64::engine::general_purpose::URL_SAFE;
    let (k, v, _) = es_verifier().await;
    // A header whose encoding needs padding, padded, and signed as it stands.
    let header = format!(r#"{{"alg":"ES256","kid":"{}","x":"a"}}"#, k.kid);
    for pad in 0..3 {
        let h = format!("{header}{}", " ".repeat(pad));
        let enc = URL_SAFE.encode(&h);
        if !enc.ends_with('=') {
            continue;
        }
        // Breaks if a padded header segment is accepted (RFC 7515 §2: no padding).
        let t = forge_segments(&k, &enc, &b64(&good_payload()));
        assert!(malformed(v.verify(&t, NOW).await), "{enc}");
    }
    // Breaks if a padded payload segment is accepted.
    let mut payload = format!(r#"{{"exp":{},"s":"ab"}}"#, NOW + 60);
    if payload.len() % 3 == 0 {
        payload.push(' ');
    }
    let p = URL_SAFE.encode(&payload);
    assert!(p.ends_with('='));
    let t = forge_segments(&k, &b64(&es_header(&k)), &p);
    assert!(malformed(v.verify(&t, NOW).await));
    // Breaks if a padded signature segment is accepted.
    let good = forge(&k, &es_header(&k), &good_payload());
    assert!(malformed(v.verify(&format!("{good}=="), NOW).await));
}

#[tokio::test]
async fn standard_alphabet_segments_are_refused() {
    let (k, v, _) = es_verifier().await;
    // A payload whose url-safe encoding has '-' or '_': rewritten to '+' '/' (the same
    // bytes in the standard alphabet) and signed that way.
    let payload = format!(r#"{{"exp":{},"s":"~~~???>>>"}}"#, NOW + 60);
    let url = b64(&payload);
    assert!(url.contains('-') || url.contains('_'));
    let std = url.replace('-', "+").replace('_', "/");
    // Breaks if '+' or '/' is accepted in a segment.
    let t = forge_segments(&k, &b64(&es_header(&k)), &std);
    assert!(malformed(v.verify(&t, NOW).await));
    // Breaks if whitespace or other junk inside a segment is skipped over.
    let t = forge_segments(
        &k,
        &b64(&es_header(&k)),
        &format!("{} ", b64(&good_payload())),
    );
    assert!(malformed(v.verify(&t, NOW).await));
}

#[tokio::test]
async fn non_canonical_trailing_bits_are_refused() {
    let (k, v, _) = es_verifier().await;
    // A payload of length 3n+1 encodes to 4n+2 chars: the last char carries 4 unused
    // bits, which must be zero. Setting one gives a second encoding of the same bytes.
    let mut payload = good_payload();
    while payload.len() % 3 != 1 {
        payload.insert(1, ' ');
    }
    let enc = b64(&payload);
    let last = enc.chars().last().unwrap();
    const ALPHA: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = ALPHA.find(last).unwrap();
    assert_eq!(idx & 0b1111, 0);
    let twisted = format!(
        "{}{}",
        &enc[..enc.len() - 1],
        ALPHA.chars().nth(idx | 1).unwrap()
    );
    // Breaks if a non-canonical encoding (trailing bits set) is accepted.
    let t = forge_segments(&k, &b64(&es_header(&k)), &twisted);
    assert!(malformed(v.verify(&t, NOW).await));
    // The canonical form of the same bytes, same signer, is fine.
    let t = forge_segments(&k, &b64(&es_header(&k)), &enc);
    assert!(v.verify(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn duplicate_member_names_are_refused_everywhere() {
    let (k, v, _) = es_verifier().await;
    let exp = NOW + 60;
    let kid = &k.kid;
    for (header, payload, why) in [
        // Breaks if a duplicate header member other than alg is let through.
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","kid":"{kid}"}}"#),
            good_payload(),
            "duplicate kid in the header",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT","typ":"at+jwt"}}"#),
            good_payload(),
            "duplicate typ in the header",
        ),
        // Breaks if only iss/exp duplicates are caught (serde_json keeps the last).
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"scope":"read","scope":"admin"}}"#),
            "duplicate scope in the payload",
        ),
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"sub":"a","sub":"b"}}"#),
            "duplicate sub",
        ),
        // Breaks if nested objects are not checked.
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"ctx":{{"role":"user","role":"admin"}}}}"#),
            "duplicate inside a nested object",
        ),
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"l":[{{"a":1,"a":2}}]}}"#),
            "duplicate inside an object in an array",
        ),
        // Breaks if names are compared before unescaping ("scope" == "sc\u006fpe").
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"scope":"read","sc\u006fpe":"admin"}}"#),
            "duplicate spelled with an escape",
        ),
        (
            es_header(&k),
            format!(r#"{{"exp":{exp},"exp":{}}}"#, exp + 1_000_000),
            "duplicate exp",
        ),
    ] {
        let t = forge(&k, &header, &payload);
        assert!(malformed(v.verify(&t, NOW).await), "{why}");
    }
}

#[tokio::test]
async fn header_and_payload_must_be_json_objects() {
    let (k, v, _) = es_verifier().await;
    // Breaks if a payload that is not an object (array, string, trailing data) passes.
    for payload in [
        format!("[{{\"exp\":{}}}]", NOW + 60),
        "\"text\"".to_owned(),
        format!("{} x", good_payload()),
        String::new(),
    ] {
        let t = forge(&k, &es_header(&k), &payload);
        assert!(malformed(v.verify(&t, NOW).await), "{payload:?}");
    }
    // Breaks if a header member of the wrong type is ignored.
    let t = forge(&k, r#"{"alg":"ES256","kid":5}"#, &good_payload());
    assert!(malformed(v.verify(&t, NOW).await));
    let t = forge(
        &k,
        &format!(r#"{{"alg":"ES256","kid":"{}","typ":1}}"#, k.kid),
        &good_payload(),
    );
    assert!(malformed(v.verify(&t, NOW).await));
}

#[tokio::test]
async fn crit_and_b64_extensions_are_refused() {
    let (k, v, _) = es_verifier().await;
    let kid = &k.kid;
    for (header, ext) in [
        // Breaks if crit naming an extension is ignored (RFC 7515 §4.1.11).
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["exp"]}}"#),
            "crit",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["http://x/y"],"http://x/y":1}}"#),
            "crit",
        ),
        // Breaks if an empty crit (invalid by RFC 7515) is accepted.
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","crit":[]}}"#),
            "crit",
        ),
        // Breaks if an unencoded payload (RFC 7797) is verified as if encoded.
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","b64":false,"crit":["b64"]}}"#),
            "crit",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","b64":false}}"#),
            "b64",
        ),
        // Breaks if a JWE header or compression passes as a JWS.
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","enc":"A256GCM"}}"#),
            "enc",
        ),
        (
            format!(r#"{{"alg":"ES256","kid":"{kid}","zip":"DEF"}}"#),
            "zip",
        ),
    ] {
        let t = forge(&k, &header, &good_payload());
        assert_eq!(
            v.verify(&t, NOW).await,
            Err(VerifyError::Unsupported(ext)),
            "{header}"
        );
    }
}

#[tokio::test]
async fn time_claims_of_the_wrong_type_are_refused() {
    let (k, v, _) = es_verifier().await;
    let h = es_header(&k);
    let later = NOW + 60;
    for (payload, claim) in [
        // Breaks if a string nbf skips the not-before check.
        (
            format!(r#"{{"exp":{later},"nbf":"{}"}}"#, NOW + 3600),
            "nbf",
        ),
        (format!(r#"{{"exp":{later},"nbf":null}}"#), "nbf"),
        // Breaks if exp of another type is read as a number or ignored.
        (format!(r#"{{"exp":"{later}"}}"#), "exp"),
        (r#"{"exp":true}"#.to_owned(), "exp"),
        (format!(r#"{{"exp":[{later}]}}"#), "exp"),
        // Breaks if negative dates are accepted (or wrap around).
        (r#"{"exp":-1}"#.to_owned(), "exp"),
        (format!(r#"{{"exp":{later},"nbf":-5}}"#), "nbf"),
        (format!(r#"{{"exp":{later},"iat":-0.5}}"#), "iat"),
        // Breaks if iat is not type-checked.
        (format!(r#"{{"exp":{later},"iat":"now"}}"#), "iat"),
        // Other registered claims of the wrong type.
        (format!(r#"{{"exp":{later},"iss":1}}"#), "iss"),
        (format!(r#"{{"exp":{later},"sub":{{}}}}"#), "sub"),
        (format!(r#"{{"exp":{later},"aud":[1]}}"#), "aud"),
    ] {
        let t = forge(&k, &h, &payload);
        assert_eq!(
            v.verify(&t, NOW).await,
            Err(VerifyError::ClaimType(claim)),
            "{payload}"
        );
    }
    // Breaks if a number too large for f64 (JSON has no NaN/Infinity) parses.
    let t = forge(&k, &h, r#"{"exp":1e400}"#);
    assert!(malformed(v.verify(&t, NOW).await));
    // Breaks if exp may be left out.
    let t = forge(&k, &h, r#"{"sub":"a"}"#);
    assert_eq!(v.verify(&t, NOW).await, Err(VerifyError::NoExpiry));
    // Fractional NumericDates are valid (RFC 7519 §2), and never extend validity.
    let t = forge(
        &k,
        &h,
        &format!(r#"{{"exp":{}.9,"nbf":{}.5,"iat":1.5}}"#, NOW - 31, NOW),
    );
    assert!(matches!(
        v.verify(&t, NOW).await,
        Err(VerifyError::Expired { .. })
    ));
    let t = forge(
        &k,
        &h,
        &format!(r#"{{"exp":{}.5,"aud":["a","b"]}}"#, NOW + 60),
    );
    assert!(v.verify(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn configured_issuer_is_pinned() {
    let k = key(Algorithm::ES256);
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    // Discovery says something else: the configured value wins, discovery is not asked.
    *src.issuer.lock().unwrap() = Some("https://discovered".into());
    let v = Verifier::new(src.clone(), vec![Algorithm::ES256], 30, Duration::ZERO)
        .with_issuer(Some("https://idp.example".into()));
    v.refresh(false).await.unwrap();
    assert_eq!(v.issuer().as_deref(), Some("https://idp.example"));
    let h = es_header(&k);
    let with = |iss: &str| format!(r#"{{"exp":{},"iss":"{iss}"}}"#, NOW + 60);
    assert!(
        v.verify(&forge(&k, &h, &with("https://idp.example")), NOW)
            .await
            .is_ok()
    );
    // Breaks if another issuer is accepted.
    for payload in [
        with("https://evil.example"),
        with("https://discovered"),
        good_payload(),
    ] {
        assert!(
            matches!(
                v.verify(&forge(&k, &h, &payload), NOW).await,
                Err(VerifyError::Issuer { .. })
            ),
            "{payload}"
        );
    }
}

#[tokio::test]
async fn discovered_issuer_is_pinned_and_unknown_issuer_is_not() {
    let k = key(Algorithm::ES256);
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    *src.issuer.lock().unwrap() = Some("https://idp.example".into());
    let v =
        Verifier::new(src.clone(), vec![Algorithm::ES256], 30, Duration::ZERO).with_issuer(None);
    v.refresh(false).await.unwrap();
    // Breaks if the discovery document's issuer is not learned with the JWKS.
    assert_eq!(v.issuer().as_deref(), Some("https://idp.example"));
    let h = es_header(&k);
    let other = format!(r#"{{"exp":{},"iss":"https://evil.example"}}"#, NOW + 60);
    assert!(matches!(
        v.verify(&forge(&k, &h, &other), NOW).await,
        Err(VerifyError::Issuer { .. })
    ));
    // Without a discovery issuer (and none configured) iss is not checked.
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    let v = Verifier::new(src, vec![Algorithm::ES256], 30, Duration::ZERO);
    v.refresh(false).await.unwrap();
    assert_eq!(v.issuer(), None);
    assert!(v.verify(&forge(&k, &h, &other), NOW).await.is_ok());
}

#[tokio::test]
async fn kidless_token_is_tried_against_a_few_keys_only() {
    let keys: Vec<SigningKey> = (0..5).map(|_| key(Algorithm::ES256)).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let (v, _) = verifier(&refs, &[Algorithm::ES256]);
    v.refresh(false).await.unwrap();
    let h = r#"{"alg":"ES256"}"#;
    // Within the first MAX_CANDIDATES keys: found (several candidates, so the check
    // went through the blocking pool).
    assert!(
        v.verify(&forge(&keys[1], h, &good_payload()), NOW)
            .await
            .is_ok()
    );
    // Breaks if a kid-less token is tried against every published key.
    assert_eq!(
        v.verify(&forge(&keys[4], h, &good_payload()), NOW).await,
        Err(VerifyError::Signature)
    );
    // With its kid, the same key is found at once.
    let with_kid = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, keys[4].kid);
    assert!(
        v.verify(&forge(&keys[4], &with_kid, &good_payload()), NOW)
            .await
            .is_ok()
    );
}

#[test]
fn candidates_are_capped_and_of_the_right_family() {
    let es: Vec<SigningKey> = (0..5).map(|_| key(Algorithm::ES256)).collect();
    let ed = key(Algorithm::EdDSA);
    let mut all: Vec<&SigningKey> = vec![&ed];
    all.extend(es.iter());
    let cached = parse_jwks(&jwks(&all)).unwrap();
    // Breaks if the cap on candidates is lifted.
    let found = candidates(&cached, None, Algorithm::ES256);
    assert_eq!(found.len(), MAX_CANDIDATES);
    // Breaks if a key of another family (the EdDSA one, first) is tried for ES256.
    assert!(!found.contains(&0));
    assert_eq!(candidates(&cached, None, Algorithm::EdDSA), vec![0]);
}

// ---- JWKS: caps and stale-if-error.

fn counters() -> RefreshCounters {
    RefreshCounters {
        ok: IntCounter::new("ok", "ok").unwrap(),
        error: IntCounter::new("error", "error").unwrap(),
    }
}

#[test]
fn jwks_caps_on_size_and_key_count() {
    let k = key(Algorithm::ES256);
    // Breaks if a JWKS with more than MAX_JWKS_KEYS keys is accepted.
    let many: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| k.jwk.clone()).collect();
    let doc = serde_json::to_vec(&json!({ "keys": many })).unwrap();
    assert!(parse_jwks(&doc).err().unwrap().contains("over the cap"));
    // Breaks if a document over MAX_JWKS_BYTES is parsed.
    let big =
        serde_json::to_vec(&json!({"keys": [k.jwk], "pad": "x".repeat(MAX_JWKS_BYTES)})).unwrap();
    assert!(parse_jwks(&big).err().unwrap().contains("bytes"));
    // Breaks if a JWKS with only symmetric or unknown keys counts as usable.
    let hs = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, {"kty": "XYZ"}]});
    assert!(parse_jwks(&serde_json::to_vec(&hs).unwrap()).is_err());
}

#[tokio::test]
async fn failed_refreshes_never_replace_the_last_good_keys() {
    let k = key(Algorithm::ES256);
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    let c = counters();
    let v = Verifier::new(src.clone(), vec![Algorithm::ES256], 30, Duration::ZERO)
        .with_counters(c.clone());
    v.refresh(false).await.unwrap();
    assert_eq!((c.ok.get(), c.error.get()), (1, 0));
    let t = forge(&k, &es_header(&k), &good_payload());
    let bad_docs: Vec<Vec<u8>> = vec![
        br#"{"keys":[]}"#.to_vec(),
        b"<html>garbage</html>".to_vec(),
        br#"{"keys":"nope"}"#.to_vec(),
        br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_vec(),
        Vec::new(),
    ];
    let n = bad_docs.len() as u64;
    for doc in bad_docs {
        // Breaks if a refresh with no usable key (or garbage) replaces the key set.
        *src.jwks.lock().unwrap() = doc;
        assert!(v.refresh(false).await.is_err());
        assert!(v.has_keys(), "readiness must stay up on the last good keys");
        assert!(v.verify(&t, NOW).await.is_ok());
    }
    // An unreachable IdP or a timeout, likewise.
    *src.fail.lock().unwrap() = Some("the IdP did not answer within 10s".into());
    assert!(v.refresh(false).await.is_err());
    assert!(v.verify(&t, NOW).await.is_ok());
    // Breaks if failed refreshes are not counted.
    assert_eq!((c.ok.get(), c.error.get()), (1, n + 1));
}

#[tokio::test]
async fn a_refresh_triggered_by_an_unknown_kid_is_counted_and_keeps_the_keys() {
    let k = key(Algorithm::ES256);
    let rogue = key(Algorithm::ES256);
    let src = FakeSource::new(jwks(&[&k]), Duration::ZERO);
    let c = counters();
    let v = Verifier::new(src.clone(), vec![Algorithm::ES256], 30, Duration::ZERO)
        .with_counters(c.clone());
    v.refresh(false).await.unwrap();
    *src.jwks.lock().unwrap() = br#"{"keys":[]}"#.to_vec();
    // An unknown kid triggers a refresh, which fails: counted, keys kept.
    let t = forge(&rogue, &es_header(&rogue), &good_payload());
    assert_eq!(
        v.verify(&t, NOW).await,
        Err(VerifyError::UnknownKey(rogue.kid.clone()))
    );
    // Breaks if the triggered refresh is not counted as an error.
    assert_eq!((c.ok.get(), c.error.get()), (1, 1));
    let good = forge(&k, &es_header(&k), &good_payload());
    assert!(v.verify(&good, NOW).await.is_ok());
    assert!(v.has_keys());
}

#[tokio::test]
async fn readiness_needs_a_usable_key_set() {
    let k = key(Algorithm::ES256);
    let src = FakeSource::new(br#"{"keys":[]}"#.to_vec(), Duration::ZERO);
    let v = Verifier::new(src.clone(), vec![Algorithm::ES256], 30, Duration::ZERO);
    // Breaks if an empty first JWKS makes the verifier "ready".
    assert!(v.refresh(false).await.is_err());
    assert!(!v.has_keys());
    *src.jwks.lock().unwrap() = jwks(&[&k]);
    v.refresh(false).await.unwrap();
    assert!(v.has_keys());
}
