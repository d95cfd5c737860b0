//! Verification of the IdP's access tokens against its JWKS, failing closed.
//!
//! Keys are cached; an unknown `kid` triggers one rate-limited, single-flight refresh.
//! A refresh that fails, times out or yields no usable key never replaces the last good
//! key set (stale-if-error), and every outcome is counted through the counters the
//! verifier is given.
//!
//! The token is checked strictly before anything in it is trusted (RFC 7515, RFC 7519,
//! RFC 8725): size and segment caps first, then exactly three segments of canonical
//! unpadded base64url, a header and payload that are JSON objects without any duplicate
//! member name (at any depth), no `crit` extension (tokenhook implements none) nor
//! `b64`/`enc`/`zip`, one of the configured asymmetric algorithms, a signature by a key
//! of the IdP's JWKS, `exp` required and every time claim a non-negative number, and the
//! IdP's `iss` when it is known. jsonwebtoken's own decoder is not used for the token:
//! it ignores `crit` and keeps the last of duplicate members, so only its signature
//! primitive is.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use prometheus::IntCounter;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Longest token accepted, checked before any parsing. IdP access tokens are a few KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS (and discovery) document read, separate from `upstream.max_body_bytes`:
/// it is parsed on every refresh and held in memory.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// A JWKS listing more keys than this is refused whole (and the last good set kept).
pub const MAX_JWKS_KEYS: usize = 100;
/// How many keys a token without a unique `kid` match is tried against: each try is a
/// signature verification, so a kid-less token must not cost one per published key.
pub const MAX_CANDIDATES: usize = 3;
/// Longest `kid` accepted; it is quoted in log lines.
const MAX_KID_CHARS: usize = 256;

/// Why an upstream token was refused. The text goes to logs, never to clients, and never
/// quotes the token or its claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token is over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token header uses {0:?}, which tokenhook does not implement")]
    Unsupported(&'static str),
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
    #[error("claim {0:?} has the wrong type")]
    ClaimType(&'static str),
    #[error("token issuer is not the IdP's ({expected:?})")]
    Issuer { expected: String },
    #[error("upstream JWKS unavailable: {0}")]
    JwksUnavailable(String),
}

/// The counters a verifier reports its refreshes to, resolved once by whoever owns the
/// metrics (`tokenhook_upstream_jwks_refreshes_total{result=…}`).
#[derive(Clone)]
pub struct RefreshCounters {
    pub ok: IntCounter,
    pub error: IntCounter,
}

/// Fetches the upstream JWKS document and, when asked, the IdP's issuer.
#[async_trait::async_trait]
pub trait JwksSource: Send + Sync {
    async fn fetch(&self) -> Result<bytes::Bytes, String>;

    /// The `issuer` of the IdP's discovery document. Sources without one say so.
    async fn issuer(&self) -> Result<String, String> {
        Err("no discovery document configured".into())
    }
}

struct CachedKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct State {
    /// The last good key set: never empty once set, never replaced by a failed refresh.
    keys: Arc<Vec<CachedKey>>,
    /// When the keys were last fetched successfully (None until the first success).
    fetched_at: Option<Instant>,
    /// The last refresh attempt, successful or not: the rate limit counts from here.
    attempted_at: Option<Instant>,
    /// The last refresh a request triggered (an unknown `kid`): the rate limit of those.
    triggered_at: Option<Instant>,
}

/// Upstream key cache and verifier, shared by every request.
pub struct Verifier {
    source: Arc<dyn JwksSource>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    min_refresh: Duration,
    state: RwLock<State>,
    refresh_lock: tokio::sync::Mutex<()>,
    /// The IdP's `iss`: configured (`upstream.issuer`), else learned from discovery.
    issuer: RwLock<Option<String>>,
    /// Whether to ask the source for the issuer (not when it was configured).
    discover_issuer: bool,
    /// The "issuer unknown" warning is logged once, not on every refresh.
    issuer_warned: AtomicBool,
    counters: Option<RefreshCounters>,
}

/// Outcome of a refresh, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Fetched,
    Failed,
    /// Skipped: another caller refreshed meanwhile, or the rate limit applied.
    Skipped,
}

/// A token split into its segments, each decoded strictly.
struct Parts<'a> {
    /// `header.payload`, the JWS signing input, exactly as received.
    signing_input: &'a str,
    signature: &'a str,
    header: Map<String, Value>,
    payload: Map<String, Value>,
}

/// What the header says about how to verify.
struct JoseHeader {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
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
                triggered_at: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            issuer: RwLock::new(None),
            discover_issuer: true,
            issuer_warned: AtomicBool::new(false),
            counters: None,
        }
    }

    /// Pins the IdP's issuer (`upstream.issuer`); `None` learns it from discovery.
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.discover_issuer = issuer.is_none();
        self.issuer = RwLock::new(issuer);
        self
    }

    /// Counts every refresh (periodic or triggered by an unknown kid) on these.
    pub fn with_counters(mut self, counters: RefreshCounters) -> Self {
        self.counters = Some(counters);
        self
    }

    /// True while a usable key set is held (stale-if-error keeps it held).
    pub fn has_keys(&self) -> bool {
        !self.read().keys.is_empty()
    }

    /// Time since the last successful fetch.
    pub fn age(&self) -> Option<Duration> {
        self.read().fetched_at.map(|t| t.elapsed())
    }

    /// The issuer tokens must carry, if known.
    pub fn issuer(&self) -> Option<String> {
        self.issuer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still a
        // consistent snapshot because updates are single assignments.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Fetches the JWKS now unless another caller is already doing so (single flight)
    /// or, with `rate_limited`, one was attempted within `min_refresh`. A failure, or a
    /// document with no usable key, keeps the current keys and is counted as an error;
    /// the caller logs it.
    pub async fn refresh(&self, rate_limited: bool) -> Result<Refresh, String> {
        let seen = self.read().attempted_at;
        let _guard = self.refresh_lock.lock().await;
        let attempted = self.read().attempted_at;
        if attempted != seen {
            // Someone refreshed while we waited for the lock.
            return Ok(Refresh::Skipped);
        }
        if rate_limited {
            // Held back by a good fetch or another request's attempt within
            // `min_refresh`, but not by failed periodic attempts: after an IdP outage
            // the key it came back with is fetched by the first token that needs it.
            let st = self.read();
            let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < self.min_refresh);
            if recent(st.fetched_at) || recent(st.triggered_at) {
                return Ok(Refresh::Skipped);
            }
        }
        let result = match self.source.fetch().await {
            Ok(body) => parse_jwks(&body),
            Err(e) => Err(e),
        };
        // The issuer is learned before the keys are published, so readiness (keys held)
        // implies discovery was tried.
        if result.is_ok() {
            self.learn_issuer().await;
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.attempted_at = Some(Instant::now());
        if rate_limited {
            st.triggered_at = st.attempted_at;
        }
        let counter = self.counters.as_ref();
        match result {
            Ok(keys) => {
                st.keys = Arc::new(keys);
                st.fetched_at = Some(Instant::now());
                counter.inspect(|c| c.ok.inc());
                Ok(Refresh::Fetched)
            }
            Err(e) => {
                counter.inspect(|c| c.error.inc());
                Err(e)
            }
        }
    }

    /// Asks the source for the IdP's issuer until it is known.
    async fn learn_issuer(&self) {
        if !self.discover_issuer || self.issuer().is_some() {
            return;
        }
        match self.source.issuer().await {
            Ok(iss) => {
                tracing::info!(issuer = %iss, "the IdP's issuer, from its discovery document, is pinned");
                *self.issuer.write().unwrap_or_else(|e| e.into_inner()) = Some(iss);
            }
            Err(e) => {
                if !self.issuer_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "the IdP's issuer is unknown: the upstream token's iss is not checked; set upstream.issuer to pin it");
                }
            }
        }
    }

    /// A refresh a request asked for (unknown kid, bad signature): its failure is logged
    /// here, since no background task sees it.
    async fn refresh_for_request(&self) -> Result<Refresh, String> {
        let r = self.refresh(true).await;
        if let Err(e) = &r {
            tracing::warn!(error = %e, "upstream JWKS refresh failed; the last good keys stay in use");
        }
        r
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
        let parts = split(token)?;
        let header = jose_header(&parts.header)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::Algorithm(header.alg));
        }
        // Claims are checked for shape before any key work: a token that can never be
        // accepted does not trigger a JWKS refresh.
        check_claim_types(&parts.payload)?;
        let kid = header.kid.as_deref();
        let keys = self.read().keys.clone();
        let keys = if candidates(&keys, kid, header.alg).is_empty() {
            let refreshed = self.refresh_for_request().await;
            // No key set at all (none fetched yet) is the JWKS's failure, not the token's,
            // also when this refresh was skipped because another caller's fetch had just
            // failed: reported as unavailable, not as an unknown kid.
            if !self.has_keys() {
                return Err(VerifyError::JwksUnavailable(
                    refreshed
                        .err()
                        .unwrap_or_else(|| "no key set fetched yet".into()),
                ));
            }
            self.read().keys.clone()
        } else {
            keys
        };
        let verified = match self.check_signature(&keys, &parts, kid, header.alg).await {
            // A known kid with a bad signature: the IdP may have replaced the key under
            // the same kid. One rate-limited refresh, then a retry if the keys changed.
            Err(VerifyError::Signature) => {
                let _ = self.refresh_for_request().await;
                let fresh = self.read().keys.clone();
                if Arc::ptr_eq(&fresh, &keys) {
                    Err(VerifyError::Signature)
                } else {
                    self.check_signature(&fresh, &parts, kid, header.alg).await
                }
            }
            other => other,
        };
        verified?;
        let claims = self.check_claims(parts.payload, now)?;
        Ok((claims, header.typ))
    }

    /// Whether `token` is a compact JWS signed by one of the IdP's keys as held now,
    /// whatever its claims: no refresh, no time or issuer checks. The pass-through guard
    /// uses it to keep the IdP's own tokens from being relayed.
    pub async fn signed_by_idp(&self, token: &str) -> bool {
        let Ok(parts) = split(token) else {
            return false;
        };
        let Ok(header) = jose_header(&parts.header) else {
            return false;
        };
        let keys = self.read().keys.clone();
        self.check_signature(&keys, &parts, header.kid.as_deref(), header.alg)
            .await
            .is_ok()
    }

    /// Checks the signature against the candidate keys. More than one candidate means
    /// several public-key operations: they run on the blocking pool, never on the
    /// calling (pingora I/O) thread.
    async fn check_signature(
        &self,
        keys: &Arc<Vec<CachedKey>>,
        parts: &Parts<'_>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(), VerifyError> {
        let found = candidates(keys, kid, alg);
        let ok = match found.as_slice() {
            [] => return Err(VerifyError::UnknownKey(kid.unwrap_or_default().to_owned())),
            [one] => signed_by(&keys[*one].key, parts.signing_input, parts.signature, alg),
            _ => {
                let (keys, input, sig) = (
                    keys.clone(),
                    parts.signing_input.to_owned(),
                    parts.signature.to_owned(),
                );
                tokio::task::spawn_blocking(move || {
                    found
                        .iter()
                        .any(|&i| signed_by(&keys[i].key, &input, &sig, alg))
                })
                .await
                .map_err(|_| VerifyError::Malformed("signature check did not complete".into()))?
            }
        };
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Signature)
        }
    }

    /// Time and issuer rules, on a payload whose claim types were already checked.
    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: u64,
    ) -> Result<Map<String, Value>, VerifyError> {
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(VerifyError::NoExpiry)?;
        // Floor for exp and ceiling for nbf: a fractional NumericDate never extends the
        // token's validity.
        let exp = exp.floor() as u64;
        if exp.saturating_add(self.leeway) <= now {
            return Err(VerifyError::Expired { exp, now });
        }
        if let Some(nbf) = claims.get("nbf").and_then(numeric_date) {
            let nbf = nbf.ceil() as u64;
            if nbf > now.saturating_add(self.leeway) {
                return Err(VerifyError::NotYetValid { nbf, now });
            }
        }
        if let Some(expected) = self.issuer()
            && claims.get("iss").and_then(Value::as_str) != Some(expected.as_str())
        {
            return Err(VerifyError::Issuer { expected });
        }
        Ok(claims)
    }
}

/// Splits a compact JWS: the length cap first, then exactly three segments, each
/// canonical unpadded base64url (RFC 7515 §2, §7.1), header and payload JSON objects
/// without duplicate members.
fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(VerifyError::TooLarge);
    }
    // Counted before splitting: a JWE (five segments) or extra dots are refused without
    // decoding anything.
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return Err(VerifyError::Malformed(
            "not three dot-separated segments".into(),
        ));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| VerifyError::Malformed("no signature segment".into()))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or_else(|| VerifyError::Malformed("no payload segment".into()))?;
    if signature.is_empty() {
        // An unsecured JWS (alg "none") has an empty signature: never accepted.
        return Err(VerifyError::Malformed("empty signature".into()));
    }
    strict_b64url(signature, "signature")?;
    let header = strict_object(&strict_b64url(header, "header")?, "header")?;
    let payload = strict_object(&strict_b64url(payload, "payload")?, "payload")?;
    Ok(Parts {
        signing_input,
        signature,
        header,
        payload,
    })
}

/// Decodes base64url exactly as RFC 7515 §2 defines it: URL-safe alphabet, no padding,
/// and canonical, so that one token has one encoding (the decoder's own settings are
/// not relied on: the result must encode back to the same text).
fn strict_b64url(segment: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    let alphabet_ok = segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let bad = || VerifyError::Malformed(format!("{what} is not canonical unpadded base64url"));
    if segment.is_empty() || !alphabet_ok {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| bad())?;
    if URL_SAFE_NO_PAD.encode(&bytes) != segment {
        return Err(bad());
    }
    Ok(bytes)
}

/// Parses a JSON object, refusing any duplicate member name at any depth: serde_json
/// keeps the last of duplicates, another parser may keep the first, and the two would
/// then disagree on what the IdP signed (RFC 7515 §5.2, RFC 7519 §4).
fn strict_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, VerifyError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(m))) => Ok(m),
        Ok(_) => Err(VerifyError::Malformed(format!(
            "{what} is not a JSON object"
        ))),
        // serde_json's message names a position, never the content.
        Err(e) => Err(VerifyError::Malformed(format!("{what}: {e}"))),
    }
}

/// A JSON value whose objects had no duplicate member names.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Keys arrive unescaped, so "a" and "\u0061" are caught as the same name.
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The header rules: `alg` a known JWS algorithm, no extension tokenhook would have to
/// understand (RFC 7515 §4.1.11: an unknown `crit` entry makes the JWS invalid, and
/// tokenhook implements none), nothing that makes it a JWE or changes the payload
/// encoding.
fn jose_header(h: &Map<String, Value>) -> Result<JoseHeader, VerifyError> {
    for (name, what) in [
        ("crit", "crit"),
        ("b64", "b64"),
        ("enc", "enc"),
        ("zip", "zip"),
    ] {
        if h.contains_key(name) {
            return Err(VerifyError::Unsupported(what));
        }
    }
    let alg = match h.get("alg") {
        Some(Value::String(a)) => a
            .parse::<Algorithm>()
            .map_err(|_| VerifyError::Malformed("alg is not a JWS signature algorithm".into()))?,
        _ => return Err(VerifyError::Malformed("alg missing or not a string".into())),
    };
    let text = |name: &str| match h.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(VerifyError::Malformed(format!("{name} is not a string"))),
    };
    let kid = text("kid")?;
    if kid
        .as_ref()
        .is_some_and(|k| k.chars().count() > MAX_KID_CHARS)
    {
        return Err(VerifyError::Malformed("kid is too long".into()));
    }
    Ok(JoseHeader {
        alg,
        kid,
        typ: text("typ")?,
    })
}

/// Registered claims of the wrong JSON type are refused rather than skipped: a string
/// `nbf` must not switch the check off (RFC 7519 §4.1).
fn check_claim_types(c: &Map<String, Value>) -> Result<(), VerifyError> {
    match c.get("exp") {
        None => return Err(VerifyError::NoExpiry),
        Some(v) if numeric_date(v).is_none() => return Err(VerifyError::ClaimType("exp")),
        Some(_) => {}
    }
    for name in ["nbf", "iat"] {
        if c.get(name).is_some_and(|v| numeric_date(v).is_none()) {
            return Err(VerifyError::ClaimType(name));
        }
    }
    for name in ["iss", "sub", "jti"] {
        if c.get(name).is_some_and(|v| !v.is_string()) {
            return Err(VerifyError::ClaimType(name));
        }
    }
    match c.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        Some(_) => return Err(VerifyError::ClaimType("aud")),
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): a JSON number, finite and not negative. Strings,
/// booleans and negative values are not dates.
fn numeric_date(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0),
        _ => None,
    }
}

fn signed_by(key: &DecodingKey, input: &str, signature: &str, alg: Algorithm) -> bool {
    // An error means the key cannot verify this algorithm (a curve or family mismatch):
    // not signed by it.
    jsonwebtoken::crypto::verify(signature, input.as_bytes(), key, alg).unwrap_or(false)
}

/// Indices of the keys that may have signed a token with `kid` and `alg`: of the
/// algorithm's family, not published for another algorithm, the kid matching when
/// given; those published for exactly `alg` first, at most [`MAX_CANDIDATES`].
fn candidates(keys: &[CachedKey], kid: Option<&str>, alg: Algorithm) -> Vec<usize> {
    let mut found: Vec<usize> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.alg.is_none_or(|a| a == alg) && k.key.family() == alg.family())
        .filter(|(_, k)| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            // Without a kid, any key of the right algorithm may have signed it.
            None => true,
        })
        .map(|(i, _)| i)
        .collect();
    found.sort_by_key(|&i| keys[i].alg.is_none());
    found.truncate(MAX_CANDIDATES);
    found
}

/// Parses a JWKS document: caps on size and key count first, then each key leniently
/// (one key in a format we do not know must not hide the others). A document with no
/// usable key is an error, so it never replaces a good set.
fn parse_jwks(body: &[u8]) -> Result<Vec<CachedKey>, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("JWKS is over {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let items = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS has no \"keys\" array")?;
    if items.len() > MAX_JWKS_KEYS {
        return Err(format!(
            "JWKS lists {} keys, over the cap of {MAX_JWKS_KEYS}",
            items.len()
        ));
    }
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
    if keys.is_empty() {
        return Err("JWKS holds no usable signing key".into());
    }
    Ok(keys)
}

/// The JWKS fuzz target's body (`crate::fuzzing::jwks`), here because the key cache is
/// private: `parse_jwks` on arbitrary bytes, its caps, then key selection and a
/// signature check against whatever keys it kept.
pub(crate) fn fuzz_parse_jwks(body: &[u8]) {
    let Ok(keys) = parse_jwks(body) else {
        return;
    };
    assert!(body.len() <= MAX_JWKS_BYTES);
    assert!(!keys.is_empty() && keys.len() <= MAX_JWKS_KEYS);
    const ALGS: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::PS384,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ];
    for alg in ALGS {
        for kid in [None, keys[0].kid.as_deref()] {
            let found = candidates(&keys, kid, alg);
            assert!(found.len() <= MAX_CANDIDATES);
            for &i in &found {
                let k = &keys[i];
                assert_eq!(k.key.family(), alg.family());
                assert!(k.alg.is_none_or(|a| a == alg));
                assert!(kid.is_none() || k.kid.as_deref() == kid);
                // A well-formed but wrong signature: never valid, never a panic.
                assert!(!signed_by(&k.key, "e30.e30", "c2lnbmF0dXJl", alg));
            }
        }
    }
}

#[cfg(test)]
mod tests;
