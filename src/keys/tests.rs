use super::*;
use jsonwebtoken::{DecodingKey, Validation, decode};
use serde_json::{Map, Value, json};

fn key(alg: Algorithm) -> SigningKey {
    let pem = generate_pem(alg).unwrap();
    SigningKey::from_pem(pem.as_bytes(), Path::new("test.pem"), alg).unwrap()
}

fn payload() -> Map<String, Value> {
    json!({"sub": "svc", "exp": 4_000_000_000u64, "big": 1_700_000_000u64})
        .as_object()
        .cloned()
        .unwrap()
}

#[test]
fn every_algorithm_signs_tokens_that_verify_against_its_published_jwk() {
    for alg in [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let k = key(alg);
        assert_eq!(k.alg, alg);
        let token = crate::token::sign(&k, Some("at+jwt"), &payload()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
        let dk = DecodingKey::from_jwk(&jwk).unwrap();
        let data = decode::<Map<String, Value>>(&token, &dk, &Validation::new(alg)).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(k.kid.as_str()));
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
        // Integers stay integers through signing.
        assert_eq!(data.claims["big"], json!(1_700_000_000u64));
        assert_eq!(k.jwk["use"], "sig");
        assert_eq!(k.jwk["alg"], format!("{alg:?}"));
    }
}

#[test]
fn kid_is_the_rfc7638_thumbprint() {
    // RFC 7638 §3.1's example key and thumbprint.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB"
    }))
    .unwrap();
    assert_eq!(
        jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    let k = key(Algorithm::ES256);
    let pub_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
    assert_eq!(pub_jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), k.kid);
}

#[test]
fn jwks_lists_every_key_active_first_without_private_parts() {
    let a = Arc::new(key(Algorithm::ES256));
    let b = Arc::new(key(Algorithm::RS256));
    let set = KeySet::from_keys(vec![a.clone(), b.clone()]);
    let doc: Value = serde_json::from_slice(&set.jwks()).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["kid"], a.kid.as_str());
    assert_eq!(keys[1]["kid"], b.kid.as_str());
    // A retired RSA key cannot say whether it signed RS256 or PS256: no `alg`.
    assert!(keys[1].get("alg").is_none());
    assert_eq!(keys[0]["alg"], "ES256");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "{private} published");
        }
    }
    assert_eq!(set.active().kid, a.kid);
}

#[test]
fn load_reports_each_bad_key_and_a_mismatched_active_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.pem");
    write_private_key(&good, &generate_pem(Algorithm::ES256).unwrap(), false).unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let refs = |paths: &[&PathBuf]| -> Vec<KeyRef> {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| KeyRef {
                path: (*p).clone(),
                state: if i == 0 {
                    KeyState::Active
                } else {
                    KeyState::Retired
                },
                key: format!("signing.keys[{i}]"),
            })
            .collect()
    };
    let errs = match KeySet::load(&refs(&[&good, &junk, &missing]), Algorithm::RS256, false) {
        Err(e) => e,
        Ok(_) => panic!("bad keys accepted"),
    };
    let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["signing.keys[0]", "signing.keys[1]", "signing.keys[2]"]
    );
    assert!(errs[0].1.contains("signing.algorithm"));
    assert!(KeySet::load(&refs(&[&good]), Algorithm::ES256, false).is_ok());
    // At reload, a vanished retired file is dropped; a vanished active one is an error.
    assert_eq!(
        KeySet::load(&refs(&[&good, &missing]), Algorithm::ES256, true)
            .unwrap()
            .all()
            .len(),
        1
    );
    assert!(KeySet::load(&refs(&[&missing]), Algorithm::ES256, true).is_err());
}

#[test]
fn generated_files_are_owner_only_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k.pem");
    write_private_key(&p, "a", false).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(write_private_key(&p, "b", false).is_err());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a");
    write_private_key(&p, "c", true).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "c");
}

#[test]
fn debug_output_never_shows_key_material() {
    let k = key(Algorithm::ES256);
    let shown = format!("{k:?}");
    assert!(shown.contains(&k.kid));
    assert!(!shown.contains("PRIVATE"));
}

#[test]
fn published_order_is_active_next_retired() {
    let k = |s| StatedKey {
        key: Arc::new(key(Algorithm::EdDSA)),
        state: s,
        modified: None,
    };
    let (r, n, a) = (k(KeyState::Retired), k(KeyState::Next), k(KeyState::Active));
    let kids = [a.key.kid.clone(), n.key.kid.clone(), r.key.kid.clone()];
    let set = KeySet::from_stated(vec![r, n, a]).unwrap();
    assert_eq!(set.active().kid, kids[0]);
    let doc: Value = serde_json::from_slice(&set.jwks()).unwrap();
    let got: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(got, kids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        KeySet::from_stated(vec![k(KeyState::Next)]).is_err(),
        "no active key"
    );
    assert!(KeySet::from_stated(vec![k(KeyState::Active), k(KeyState::Active)]).is_err());
}
