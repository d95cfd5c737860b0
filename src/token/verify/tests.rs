use super::*;
use crate::keys::{SigningKey, generate_pem};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

struct FakeSource {
    jwks: std::sync::Mutex<Vec<u8>>,
    fetches: AtomicUsize,
    delay: Duration,
}

#[async_trait::async_trait]
impl JwksSource for FakeSource {
    async fn fetch(&self) -> Result<bytes::Bytes, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Ok(bytes::Bytes::from(self.jwks.lock().unwrap().clone()))
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
    let src = Arc::new(FakeSource {
        jwks: std::sync::Mutex::new(jwks(published)),
        fetches: AtomicUsize::new(0),
        delay: Duration::from_millis(20),
    });
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

#[tokio::test]
async fn rotated_upstream_key_is_picked_up_by_refresh() {
    let old = key(Algorithm::RS256);
    let new = key(Algorithm::RS256);
    let src = Arc::new(FakeSource {
        jwks: std::sync::Mutex::new(jwks(&[&old])),
        fetches: AtomicUsize::new(0),
        delay: Duration::ZERO,
    });
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
    let src = Arc::new(FakeSource {
        jwks: std::sync::Mutex::new(jwks(&[&old])),
        fetches: AtomicUsize::new(0),
        delay: Duration::ZERO,
    });
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
