//! Property tests of the token rules: whatever a hook returns, restricted claims never
//! change and the scope rules hold; whatever the payload, a signed token verifies
//! against its published key with the same claims, for every signing algorithm.

use super::claims::{self, ClaimPolicy, EffectForm, HookEffect, RESTRICTED};
use crate::keys::{SigningKey, generate_pem};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::path::Path;

/// JSON values a hook could return, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        "[a-z :/.]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Claim names from every class the rules tell apart: restricted, `scope`, URL
/// namespaced, Auth0's own namespaces, URNs and plain names.
fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(RESTRICTED).prop_map(str::to_owned),
        Just("scope".to_owned()),
        "[a-z]{1,6}".prop_map(|h| format!("https://{h}.example/claim")),
        prop::sample::select(
            &[
                "https://auth0.com/x",
                "https://x.webtask.io/y",
                "http://webtask.run/z"
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z]{1,6}".prop_map(|n| format!("urn:auth0:{n}")),
        "[a-z_]{1,8}",
    ]
}

fn scope_list() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-c]{0,2}", 0..5)
}

prop_compose! {
    fn effect()(
        claims in prop::collection::vec((claim_name(), json_value()), 0..8),
        scope in prop::option::of(scope_list()),
        action in any::<bool>(),
    ) -> HookEffect {
        HookEffect {
            claims: claims.into_iter().collect(),
            scope,
            form: if action { EffectForm::Action } else { EffectForm::Legacy },
        }
    }
}

prop_compose! {
    /// An IdP token's payload: every restricted claim may be present.
    fn upstream_payload()(
        restricted in prop::collection::btree_map(prop::sample::select(RESTRICTED), json_value(), 0..10),
        scopes in scope_list(),
    ) -> Map<String, Value> {
        let mut p: Map<String, Value> = restricted.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        // `scp` is the IdP's scope claim too, and changes only through the scope rules.
        p.remove("scp");
        p.insert("scope".into(), Value::String(scopes.join(" ")));
        p
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // Breaks if any restricted claim (`iss`, `exp`, `aud`, `client_id`, …) can be set,
    // changed or removed by a hook result, in either form, under either policy.
    #[test]
    fn restricted_claims_never_change(payload in upstream_payload(), effect in effect(), allow in any::<bool>()) {
        let policy = ClaimPolicy { allow_unnamespaced: allow };
        let Ok(out) = claims::apply(payload.clone(), effect, policy) else { return Ok(()) };
        for name in RESTRICTED.iter().filter(|n| **n != "scp") {
            prop_assert_eq!(out.payload.get(*name), payload.get(*name), "{}", name);
        }
        for k in out.claims.keys() {
            prop_assert!(!RESTRICTED.contains(&k.as_str()) && k != "scope", "{} accepted", k);
        }
    }

    // Breaks if a legacy result stops replacing the scopes (D5), if an Action's target
    // scopes can exceed the grant (D6), or if no scope result changes the scopes.
    #[test]
    fn scope_rules_hold(payload in upstream_payload(), effect in effect()) {
        let before = claims::token_scopes(&payload).unwrap_or_default();
        let (asked, form) = (effect.scope.clone(), effect.form);
        let Ok(out) = claims::apply(payload, effect, ClaimPolicy { allow_unnamespaced: false }) else {
            return Ok(());
        };
        match (asked, form) {
            (None, _) => prop_assert_eq!(&out.scopes, &before),
            (Some(asked), EffectForm::Legacy) => {
                let mut want: Vec<String> = Vec::new();
                for s in asked.into_iter().filter(|s| !s.is_empty()) {
                    if !want.contains(&s) {
                        want.push(s);
                    }
                }
                prop_assert_eq!(&out.scopes, &want);
            }
            (Some(_), EffectForm::Action) => {
                for s in &out.scopes {
                    prop_assert!(before.contains(s), "{} was never granted", s);
                }
            }
        }
        // The token says what the response says.
        prop_assert_eq!(claims::token_scopes(&out.payload).unwrap_or_default(), out.scopes.clone());
    }
}

/// One key per signing algorithm, made once: RSA key generation takes a while.
fn keys() -> &'static [SigningKey] {
    static KEYS: std::sync::OnceLock<Vec<SigningKey>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        crate::config::SIGNING_ALGORITHMS
            .iter()
            .map(|alg| {
                let pem = generate_pem(*alg).expect("key generation");
                SigningKey::from_pem(pem.as_bytes(), Path::new("prop.pem"), *alg).expect("key")
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    // Breaks if signing loses or alters a claim (number types, nesting, unicode), if the
    // header stops naming the key, or if an algorithm's signature does not verify.
    #[test]
    fn sign_then_verify_round_trips_for_every_algorithm(
        claims in prop::collection::btree_map("[a-z:/._]{1,10}", json_value(), 0..6),
        typ in prop::option::of(prop::sample::select(&["JWT", "at+jwt"][..])),
    ) {
        let mut payload: Map<String, Value> = claims.into_iter().collect();
        payload.insert("exp".into(), json!(4_000_000_000u64));
        for key in keys() {
            let token = super::sign(key, typ, &payload).expect("signs");
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).expect("jwk");
            let dk = DecodingKey::from_jwk(&jwk).expect("decoding key");
            let mut v = Validation::new(key.alg);
            v.validate_aud = false;
            let data = jsonwebtoken::decode::<Map<String, Value>>(&token, &dk, &v).expect("verifies");
            prop_assert_eq!(&data.claims, &payload);
            prop_assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
            prop_assert_eq!(data.header.typ.as_deref(), typ);
            prop_assert_eq!(data.header.alg, key.alg);
        }
        prop_assert!(keys().iter().any(|k| k.alg == Algorithm::EdDSA));
    }
}
