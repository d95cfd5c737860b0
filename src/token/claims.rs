//! How a hook's result becomes the new token payload: Auth0's namespacing and scope
//! rules plus the product decisions D3–D5, D10, D12 (docs/decisions.md).

use serde_json::{Map, Value};

/// Claims a hook can never set or change (Auth0's restricted list, applied to both hook
/// forms per D4). `scope` changes only through the scope rules.
pub const RESTRICTED: &[&str] = &[
    "acr",
    "act",
    "active",
    "amr",
    "at_hash",
    "ath",
    "attest",
    "aud",
    "auth_time",
    "authorization_details",
    "azp",
    "c_hash",
    "client_id",
    "cnf",
    "cty",
    "dest",
    "entitlements",
    "events",
    "exp",
    "groups",
    "gty",
    "htm",
    "htu",
    "iat",
    "internalService",
    "iss",
    "jcard",
    "jku",
    "jti",
    "jwe",
    "jwk",
    "kid",
    "may_act",
    "mky",
    "nbf",
    "nonce",
    "object_id",
    "org_id",
    "org_name",
    "orig",
    "origid",
    "permissions",
    "roles",
    "rph",
    "s_hash",
    "scp",
    "sid",
    "sip_callid",
    "sip_cseq_num",
    "sip_date",
    "sip_from_tag",
    "sip_via_branch",
    "sub",
    "sub_jwk",
    "toe",
    "txn",
    "typ",
    "uuid",
    "vot",
    "vtm",
    "x5t#S256",
];

/// Total size (names + JSON values) of the custom claims a hook may add (D10).
pub const MAX_CUSTOM_CLAIMS_BYTES: usize = 100 * 1024;

/// What a hook asked for, whatever its form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookEffect {
    /// Claim name → value, in the order the hook set them.
    pub claims: Map<String, Value>,
    /// `Some` replaces the token's scopes (an empty list removes them).
    pub scope: Option<Vec<String>>,
    pub form: EffectForm,
}

/// The rules differ by hook form: legacy results keep only URL-named keys and may add
/// scopes; Actions may set plain names but their scopes never exceed the grant (D6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EffectForm {
    #[default]
    Legacy,
    Action,
}

/// A claim the hook set that did not make it into the token, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ignored {
    pub claim: String,
    pub reason: &'static str,
}

/// Why a hook's result cannot become a token: all map to 500 `server_error` (D1, D5, D10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("hook returned a scope that is not an array of strings or a string")]
    BadScope,
    #[error("hook returned a result that is not an object")]
    NotAnObject,
    #[error("custom claims are {0} bytes, over the limit of 102400")]
    TooLarge(usize),
}

/// Which claim names a hook may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// D3: allow keys that are not http(s) URLs (legacy hooks drop them otherwise).
    pub allow_unnamespaced: bool,
}

/// Reads a legacy hook's callback result (already plain JSON, see `hooks`): `scope`
/// per D5/D12, every other key a candidate claim.
pub fn legacy_effect(result: Option<Value>) -> Result<HookEffect, ClaimsError> {
    let obj = match result {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ClaimsError::NotAnObject),
    };
    let mut effect = HookEffect {
        claims: Map::new(),
        // D5: a missing `scope` key resets the scopes to none.
        scope: Some(Vec::new()),
        form: EffectForm::Legacy,
    };
    for (k, v) in obj {
        if k == "scope" {
            effect.scope = Some(scope_value(&v)?);
        } else {
            effect.claims.insert(k, v);
        }
    }
    Ok(effect)
}

fn scope_value(v: &Value) -> Result<Vec<String>, ClaimsError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or(ClaimsError::BadScope))
            .collect(),
        Value::String(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        _ => Err(ClaimsError::BadScope),
    }
}

/// True for an http(s) URL whose host is not Auth0's own (`auth0.com`, `webtask.io`,
/// `webtask.run` or a subdomain of them).
pub fn is_namespaced(name: &str) -> bool {
    let Ok(url) = url::Url::parse(name) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !["auth0.com", "webtask.io", "webtask.run"]
        .iter()
        .any(|d| host == *d || host.ends_with(&format!(".{d}")))
}

/// Why `name` may not be set, if it may not.
pub fn rejection(name: &str, policy: ClaimPolicy, form: EffectForm) -> Option<&'static str> {
    if RESTRICTED.contains(&name) || name == "scope" {
        return Some("restricted claim");
    }
    if is_namespaced(name) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if name.contains("://") || lower.starts_with("urn:auth0") {
        return Some("namespace reserved by Auth0");
    }
    if policy.allow_unnamespaced || form == EffectForm::Action {
        None
    } else {
        Some("not namespaced (must be an http or https URL)")
    }
}

/// The token after the hook: the payload with claims and scopes applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub payload: Map<String, Value>,
    pub scopes: Vec<String>,
    pub scope_changed: bool,
    pub ignored: Vec<Ignored>,
    /// The custom claims that were set, for the hook runner's output.
    pub claims: Map<String, Value>,
}

/// The scopes of a token payload, from `scope` or else `scp`, each either a
/// space-separated string or an array (IdPs differ).
pub fn token_scopes(payload: &Map<String, Value>) -> Option<Vec<String>> {
    let read = |v: &Value| match v {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    };
    payload
        .get("scope")
        .and_then(read)
        .or_else(|| payload.get("scp").and_then(read))
}

/// Writes `scopes` back in the shape each claim had (string or array); `scope` is
/// added as a string when the token had neither.
fn write_scopes(payload: &mut Map<String, Value>, scopes: &[String]) {
    let had_any = payload.contains_key("scope") || payload.contains_key("scp");
    for key in ["scope", "scp"] {
        let shape = match payload.get(key) {
            Some(Value::Array(_)) => Some(true),
            Some(_) => Some(false),
            None if key == "scope" && !had_any => Some(false),
            None => None,
        };
        match shape {
            _ if scopes.is_empty() => {
                payload.remove(key);
            }
            Some(true) => {
                payload.insert(
                    key.into(),
                    Value::Array(scopes.iter().cloned().map(Value::String).collect()),
                );
            }
            Some(false) => {
                payload.insert(key.into(), Value::String(scopes.join(" ")));
            }
            None => {}
        }
    }
}

/// RFC 6749 §3.3: a scope token holds no whitespace. An entry that does is several
/// scopes, as the token reads it back once they are joined with spaces, so it is split
/// here and the result matches the token. Duplicates go, first one kept.
pub fn normalize_scopes(asked: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    asked
        .iter()
        .flat_map(|x| x.split_whitespace())
        .filter(|x| seen.insert(*x))
        .map(str::to_owned)
        .collect()
}

/// Applies a flow's effects (D19): the legacy Hook's first, by its rules, then the
/// Actions' merged effect, whose target scopes are intersected with the scopes the
/// token has when the Actions begin (the IdP's grant as the Hook left it). The size
/// limit (D10) is on all the custom claims together.
pub fn apply_flow(
    payload: Map<String, Value>,
    hook: Option<HookEffect>,
    actions: Option<HookEffect>,
    policy: ClaimPolicy,
) -> Result<Applied, ClaimsError> {
    let before = token_scopes(&payload).unwrap_or_default();
    let mut out = match hook {
        Some(h) => apply(payload, h, policy)?,
        None => Applied {
            payload,
            scopes: before.clone(),
            scope_changed: false,
            ignored: Vec::new(),
            claims: Map::new(),
        },
    };
    if let Some(a) = actions {
        let next = apply(out.payload, a, policy)?;
        for (k, v) in next.claims {
            // A later step's claim of the same name wins, at the place it was set.
            out.claims.remove(&k);
            out.claims.insert(k, v);
        }
        out.ignored.extend(next.ignored);
        out.payload = next.payload;
        out.scopes = next.scopes;
    }
    let size: usize = out
        .claims
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .sum();
    if size > MAX_CUSTOM_CLAIMS_BYTES {
        return Err(ClaimsError::TooLarge(size));
    }
    out.scope_changed = out.scopes != before;
    Ok(out)
}

/// Applies `effect` to `payload`. Reserved claims are filtered here, after the hook
/// returns, so no hook output can change them whatever the JS did.
pub fn apply(
    mut payload: Map<String, Value>,
    effect: HookEffect,
    policy: ClaimPolicy,
) -> Result<Applied, ClaimsError> {
    let mut ignored = Vec::new();
    let mut accepted = Map::new();
    let mut size = 0usize;
    for (name, value) in effect.claims {
        if let Some(reason) = rejection(&name, policy, effect.form) {
            ignored.push(Ignored {
                claim: name,
                reason,
            });
            continue;
        }
        size += name.len() + value.to_string().len();
        accepted.insert(name, value);
    }
    if size > MAX_CUSTOM_CLAIMS_BYTES {
        return Err(ClaimsError::TooLarge(size));
    }
    let before = token_scopes(&payload).unwrap_or_default();
    let (scopes, scope_changed) = match effect.scope {
        Some(asked) => {
            let mut s = normalize_scopes(&asked);
            if effect.form == EffectForm::Action {
                // D6: target scopes never exceed what the IdP granted.
                s.retain(|x| before.contains(x));
            }
            let changed = s != before;
            (s, changed)
        }
        None => (before, false),
    };
    if scope_changed {
        write_scopes(&mut payload, &scopes);
    }
    for (k, v) in &accepted {
        payload.insert(k.clone(), v.clone());
    }
    Ok(Applied {
        payload,
        scopes,
        scope_changed,
        ignored,
        claims: accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STRICT: ClaimPolicy = ClaimPolicy {
        allow_unnamespaced: false,
    };

    fn payload() -> Map<String, Value> {
        json!({"iss": "https://idp", "sub": "svc", "aud": "https://api", "exp": 1_700_000_000u64,
               "iat": 1_699_990_000u64, "scope": "read:data write:data"})
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn seed_hook_result_adds_claim_and_scope() {
        let effect = legacy_effect(Some(json!({
            "https://foo.com/claim": "bar",
            "scope": ["read:data", "write:data", "extra"]
        })))
        .unwrap();
        let out = apply(payload(), effect, STRICT).unwrap();
        assert_eq!(out.payload["https://foo.com/claim"], "bar");
        assert_eq!(out.payload["scope"], "read:data write:data extra");
        assert_eq!(out.payload["exp"], json!(1_700_000_000u64));
        assert!(out.scope_changed);
        assert!(out.ignored.is_empty());
    }

    #[test]
    fn scope_entries_with_whitespace_are_split() {
        // Found by fuzzing (fuzz/corpus/claims/regression-scope-whitespace): ["a b", "a"]
        // was reported as two scopes but written as "a b a", which reads as three.
        let e = legacy_effect(Some(json!({"scope": ["a b", "a", " c\t"]}))).unwrap();
        let out = apply(payload(), e, STRICT).unwrap();
        assert_eq!(out.scopes, vec!["a", "b", "c"]);
        assert_eq!(out.payload["scope"], "a b c");
        assert_eq!(token_scopes(&out.payload).unwrap(), out.scopes);
    }

    #[test]
    fn missing_scope_resets_scopes_d5() {
        let effect = legacy_effect(Some(json!({"https://example.com/foo": "bar"}))).unwrap();
        let out = apply(payload(), effect, STRICT).unwrap();
        assert!(!out.payload.contains_key("scope"));
        assert!(out.scopes.is_empty());
        assert!(out.scope_changed);
    }

    #[test]
    fn no_result_is_empty_object_d12() {
        for r in [None, Some(Value::Null), Some(json!({}))] {
            let out = apply(payload(), legacy_effect(r).unwrap(), STRICT).unwrap();
            assert!(!out.payload.contains_key("scope"));
            assert!(out.claims.is_empty());
        }
    }

    #[test]
    fn string_scope_is_split_and_other_types_fail_d5() {
        let e = legacy_effect(Some(json!({"scope": "a  b a"}))).unwrap();
        let out = apply(payload(), e, STRICT).unwrap();
        assert_eq!(out.scopes, vec!["a", "b"]);
        for bad in [
            json!(1),
            json!(true),
            json!({"a": 1}),
            json!(["a", 2]),
            Value::Null,
        ] {
            assert_eq!(
                legacy_effect(Some(json!({ "scope": bad }))),
                Err(ClaimsError::BadScope)
            );
        }
        assert_eq!(
            legacy_effect(Some(json!([1]))),
            Err(ClaimsError::NotAnObject)
        );
    }

    #[test]
    fn namespacing_d3() {
        assert!(is_namespaced("https://foo.com/claim"));
        assert!(is_namespaced("http://example.org"));
        assert!(!is_namespaced("https://auth0.com/x"));
        assert!(!is_namespaced("https://tenant.auth0.com/x"));
        assert!(!is_namespaced("https://a.webtask.run/x"));
        assert!(!is_namespaced("https://webtask.io"));
        assert!(is_namespaced("https://notauth0.com/x"));
        assert!(!is_namespaced("urn:foo:bar"));
        assert!(!is_namespaced("plain"));
        let e = legacy_effect(Some(json!({"plain": 1, "https://auth0.com/x": 2,
            "https://ok.example/x": 3, "scope": ["a"]})))
        .unwrap();
        let out = apply(payload(), e, STRICT).unwrap();
        assert_eq!(out.claims.len(), 1);
        assert_eq!(
            out.ignored,
            vec![
                Ignored {
                    claim: "plain".into(),
                    reason: "not namespaced (must be an http or https URL)"
                },
                Ignored {
                    claim: "https://auth0.com/x".into(),
                    reason: "namespace reserved by Auth0"
                },
            ]
        );
        let e = legacy_effect(Some(json!({"plain": 1}))).unwrap();
        let lax = ClaimPolicy {
            allow_unnamespaced: true,
        };
        assert_eq!(apply(payload(), e, lax).unwrap().payload["plain"], 1);
    }

    #[test]
    fn restricted_claims_never_change_d4() {
        let lax = ClaimPolicy {
            allow_unnamespaced: true,
        };
        let mut claims = Map::new();
        for r in RESTRICTED {
            claims.insert((*r).to_owned(), json!("evil"));
        }
        for form in [EffectForm::Legacy, EffectForm::Action] {
            let effect = HookEffect {
                claims: claims.clone(),
                scope: None,
                form,
            };
            let out = apply(payload(), effect, lax).unwrap();
            assert_eq!(out.payload, payload());
            assert_eq!(out.ignored.len(), RESTRICTED.len());
        }
        let effect = HookEffect {
            claims,
            scope: None,
            form: EffectForm::Legacy,
        };
        let out = apply(payload(), effect, lax).unwrap();
        assert!(out.ignored.iter().all(|i| i.reason == "restricted claim"));
    }

    #[test]
    fn custom_claims_over_100kb_fail_d10() {
        let big = "x".repeat(MAX_CUSTOM_CLAIMS_BYTES);
        let e = legacy_effect(Some(json!({"https://a.example/big": big, "scope": []}))).unwrap();
        assert!(matches!(
            apply(payload(), e, STRICT),
            Err(ClaimsError::TooLarge(_))
        ));
        let ok = "x".repeat(MAX_CUSTOM_CLAIMS_BYTES - 100);
        let e = legacy_effect(Some(json!({"https://a.example/big": ok}))).unwrap();
        assert!(apply(payload(), e, STRICT).is_ok());
        // The same limit for Actions.
        let mut claims = Map::new();
        claims.insert("big".into(), json!("x".repeat(MAX_CUSTOM_CLAIMS_BYTES)));
        let effect = HookEffect {
            claims,
            scope: None,
            form: EffectForm::Action,
        };
        assert!(matches!(
            apply(payload(), effect, STRICT),
            Err(ClaimsError::TooLarge(_))
        ));
        // Ignored claims do not count toward the limit.
        let e = legacy_effect(Some(
            json!({"plain": "y".repeat(MAX_CUSTOM_CLAIMS_BYTES * 2)}),
        ))
        .unwrap();
        assert!(apply(payload(), e, STRICT).is_ok());
    }

    #[test]
    fn action_claims_and_scopes_d6() {
        let mut claims = Map::new();
        for (k, v) in [
            ("plain", json!(1)),
            ("https://ok.example/x", json!(2)),
            ("urn:acme:x", json!(3)),
            ("urn:auth0:x", json!(4)),
            ("https://x.auth0.com/y", json!(5)),
            ("sub", json!(6)),
        ] {
            claims.insert(k.into(), v);
        }
        let effect = HookEffect {
            claims,
            scope: Some(vec!["read:data".into(), "admin".into()]),
            form: EffectForm::Action,
        };
        let out = apply(payload(), effect, STRICT).unwrap();
        assert_eq!(
            out.claims.keys().collect::<Vec<_>>(),
            vec!["plain", "https://ok.example/x", "urn:acme:x"]
        );
        assert_eq!(out.ignored.len(), 3);
        // "admin" was never granted: dropped silently.
        assert_eq!(out.payload["scope"], "read:data");
        // No scope operations: scopes untouched.
        let out = apply(
            payload(),
            HookEffect {
                form: EffectForm::Action,
                ..Default::default()
            },
            STRICT,
        )
        .unwrap();
        assert_eq!(out.payload["scope"], "read:data write:data");
        assert!(!out.scope_changed);
    }

    #[test]
    fn scp_array_is_read_and_updated() {
        let mut p = payload();
        p.remove("scope");
        p.insert("scp".into(), json!(["a", "b"]));
        assert_eq!(token_scopes(&p), Some(vec!["a".into(), "b".into()]));
        let e = legacy_effect(Some(json!({"scope": ["a", "c"]}))).unwrap();
        let out = apply(p.clone(), e, STRICT).unwrap();
        assert_eq!(out.payload["scp"], json!(["a", "c"]));
        assert!(!out.payload.contains_key("scope"));
        // An array `scope` (IdentityServer style) is read, and reset by a claim-only hook.
        let mut arr = payload();
        arr.insert("scope".into(), json!(["read:data", "write:data"]));
        assert_eq!(token_scopes(&arr).unwrap().len(), 2);
        let out = apply(arr.clone(), legacy_effect(Some(json!({}))).unwrap(), STRICT).unwrap();
        assert!(!out.payload.contains_key("scope"));
        let out = apply(
            arr,
            legacy_effect(Some(json!({"scope": ["x"]}))).unwrap(),
            STRICT,
        )
        .unwrap();
        assert_eq!(out.payload["scope"], json!(["x"]));
        // Azure-style `scp` string keeps its shape.
        let mut az = payload();
        az.remove("scope");
        az.insert("scp".into(), json!("a b"));
        let out = apply(
            az,
            legacy_effect(Some(json!({"scope": ["a"]}))).unwrap(),
            STRICT,
        )
        .unwrap();
        assert_eq!(out.payload["scp"], "a");
    }
}
