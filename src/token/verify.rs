//! Verification of the IdP's access tokens against its JWKS: keys cached, an unknown
//! `kid` triggers one rate-limited, single-flight refresh; only configured asymmetric
//! algorithms; `exp`/`nbf` checked against an injected clock.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Fetches the upstream JWKS document.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<bytes::Bytes, String>;
}

/// Why an upstream token was refused. The text goes to logs, never to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted (upstream.algorithms)")]
    Algorithm(Algorithm),
    #[error("no key in the upstream JWKS matches kid {0:?}")]
    UnknownKey(String),
    #[error("signature invalid")]
    Signature,
    #[error("token expired at {exp}, now {now}")]
    Expired { exp: u64, now: u64 },
    #[error("token not valid before {nbf}, now {now}")]
    NotYetValid { nbf: u64, now: u64 },
    #[error("token has no numeric exp claim")]
    NoExpiry,
    #[error("upstream JWKS unavailable: {0}")]
    JwksUnavailable(String),
}

struct CachedKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct State {
    keys: Arc<Vec<CachedKey>>,
    /// When the keys were last fetched successfully (None until the first success).
    fetched_at: Option<Instant>,
    /// The last refresh attempt, successful or not: the rate limit counts from here.
    attempted_at: Option<Instant>,
}

/// Upstream key cache and verifier, shared by every request.
pub struct Verifier {
    source: Arc<dyn JwksSource>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    min_refresh: Duration,
    state: RwLock<State>,
    refresh_lock: tokio::sync::Mutex<()>,
}

/// Outcome of a refresh, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Fetched,
    Failed,
    /// Skipped: another caller refreshed meanwhile, or the rate limit applied.
    Skipped,
}

impl Verifier {
    pub fn new(
        source: Arc<dyn JwksSource>,
        algorithms: Vec<Algorithm>,
        leeway: u64,
        min_refresh: Duration,
    ) -> Self {
        Verifier {
            source,
            algorithms,
            leeway,
            min_refresh,
            state: RwLock::new(State {
                keys: Arc::new(Vec::new()),
                fetched_at: None,
                attempted_at: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// True once keys have been fetched at least once.
    pub fn has_keys(&self) -> bool {
        self.read().fetched_at.is_some()
    }

    /// Time since the last successful fetch.
    pub fn age(&self) -> Option<Duration> {
        self.read().fetched_at.map(|t| t.elapsed())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still a
        // consistent snapshot because updates are single assignments.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the JWKS now unless another caller is already doing so (single flight)
    /// or, with `rate_limited`, one was attempted within `min_refresh`.
    pub async fn refresh(&self, rate_limited: bool) -> Result<Refresh, String> {
        let seen = self.read().attempted_at;
        let _guard = self.refresh_lock.lock().await;
        let attempted = self.read().attempted_at;
        if attempted != seen {
            // Someone refreshed while we waited for the lock.
            return Ok(Refresh::Skipped);
        }
        if rate_limited && attempted.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(Refresh::Skipped);
        }
        let result = self.source.fetch().await.and_then(|b| parse_jwks(&b));
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.attempted_at = Some(Instant::now());
        match result {
            Ok(keys) => {
                st.keys = Arc::new(keys);
                st.fetched_at = Some(Instant::now());
                Ok(Refresh::Fetched)
            }
            Err(e) => Err(e),
        }
    }

    /// Verifies `token` and returns its payload. `now` is seconds since the epoch.
    pub async fn verify(&self, token: &str, now: u64) -> Result<Map<String, Value>, VerifyError> {
        self.verify_typed(token, now)
            .await
            .map(|(claims, _)| claims)
    }

    /// As [`Verifier::verify`], also returning the header's `typ`, which the re-signed
    /// token keeps (so the header is decoded once per token).
    pub async fn verify_typed(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Map<String, Value>, Option<String>), VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::Algorithm(header.alg));
        }
        let keys = self.read().keys.clone();
        let keys = if find(&keys, header.kid.as_deref(), header.alg).is_empty() {
            match self.refresh(true).await {
                Ok(_) => {}
                Err(e) if !self.has_keys() => return Err(VerifyError::JwksUnavailable(e)),
                Err(_) => {}
            }
            self.read().keys.clone()
        } else {
            keys
        };
        let verified = match self.verify_with(&keys, token, &header, now) {
            // A known kid with a bad signature: the IdP may have replaced the key under
            // the same kid. One rate-limited refresh, then a retry if the keys changed.
            Err(VerifyError::Signature) => {
                let _ = self.refresh(true).await;
                let fresh = self.read().keys.clone();
                if Arc::ptr_eq(&fresh, &keys) {
                    Err(VerifyError::Signature)
                } else {
                    self.verify_with(&fresh, token, &header, now)
                }
            }
            other => other,
        };
        verified.map(|claims| (claims, header.typ))
    }

    fn verify_with(
        &self,
        keys: &[CachedKey],
        token: &str,
        header: &jsonwebtoken::Header,
        now: u64,
    ) -> Result<Map<String, Value>, VerifyError> {
        let candidates = find(keys, header.kid.as_deref(), header.alg);
        if candidates.is_empty() {
            return Err(VerifyError::UnknownKey(
                header.kid.clone().unwrap_or_default(),
            ));
        }
        let mut validation = Validation::new(header.alg);
        // Time claims are checked below against the injected clock; audience and
        // issuer belong to the resource servers, which check our re-signed token.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut last = VerifyError::Signature;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return self.check_times(data.claims, now),
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::Signature,
                        _ => VerifyError::Malformed(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }

    fn check_times(
        &self,
        claims: Map<String, Value>,
        now: u64,
    ) -> Result<Map<String, Value>, VerifyError> {
        let exp = claims
            .get("exp")
            .and_then(numeric)
            .ok_or(VerifyError::NoExpiry)?;
        if exp.saturating_add(self.leeway) <= now {
            return Err(VerifyError::Expired { exp, now });
        }
        if let Some(nbf) = claims.get("nbf").and_then(numeric)
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::NotYetValid { nbf, now });
        }
        Ok(claims)
    }
}

fn numeric(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn find<'a>(keys: &'a [CachedKey], kid: Option<&str>, alg: Algorithm) -> Vec<&'a CachedKey> {
    keys.iter()
        .filter(|k| k.alg.is_none_or(|a| a == alg))
        .filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            // Without a kid, any key of the right algorithm may have signed it.
            None => true,
        })
        .collect()
}

fn parse_jwks(body: &[u8]) -> Result<Vec<CachedKey>, String> {
    // Parse leniently: one key in a format we do not know must not hide the others.
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    let mut keys = Vec::new();
    for item in items {
        if item
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(set) = serde_json::from_value::<JwkSet>(serde_json::json!({ "keys": [item] }))
        else {
            continue;
        };
        let Some(jwk) = set.keys.into_iter().next() else {
            continue;
        };
        // Symmetric keys are never trusted, whatever the JWKS says.
        if matches!(
            jwk.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push(CachedKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests;
