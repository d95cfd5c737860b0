//! The token itself: upstream verification, claim rules, and re-signing with our key.

pub mod claims;
pub mod verify;

#[cfg(test)]
mod props;

use crate::keys::{KeyError, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

#[derive(serde::Serialize)]
struct Header<'a> {
    alg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
    kid: &'a str,
}

/// Signs `payload` with `key`; the header carries `alg`, the upstream's `typ` and our `kid`.
pub fn sign(
    key: &SigningKey,
    typ: Option<&str>,
    payload: &Map<String, Value>,
) -> Result<String, KeyError> {
    let header = Header {
        alg: format!("{:?}", key.alg),
        typ,
        kid: &key.kid,
    };
    let header = serde_json::to_vec(&header).map_err(|e| KeyError::Sign(e.to_string()))?;
    let payload = serde_json::to_vec(payload).map_err(|e| KeyError::Sign(e.to_string()))?;
    key.sign_compact(
        &URL_SAFE_NO_PAD.encode(header),
        &URL_SAFE_NO_PAD.encode(payload),
    )
}

/// Three dot-separated base64url parts: the shape of a compact JWS. Opaque tokens pass
/// through untouched.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    ok(parts.next()) && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}
