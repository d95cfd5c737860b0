//! Signing keys: parsed once into ready-to-sign form, with the JWKS document serialized
//! once per key set, so the token path never parses a key or builds JSON for the JWKS.

mod generate;
mod store;
pub use generate::{generate_pem, write_private_key};
pub use store::KeyStore;

use crate::config::{KeyRef, KeyState};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an RSA, P-256 or Ed25519 private key in PEM (PKCS#8 or PKCS#1)")]
    Unrecognized { path: PathBuf },
    #[error("{path}: {detail}")]
    Rejected { path: PathBuf, detail: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A parsed private key. Parsing happens once here; jsonwebtoken's own `encode` re-parses
/// an RSA key on every call, which costs a third of the signature.
enum Prepared {
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One private key, ready to sign, with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub path: PathBuf,
    prepared: Prepared,
    rng: SystemRandom,
    /// The public JWK as published (`kid`, `alg`, `use` included).
    pub jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PEM private key. `preferred` picks between RS256 and PS256 for RSA keys;
    /// EC and Ed25519 keys determine their algorithm themselves.
    pub fn load(path: &Path, preferred: Algorithm) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem, path, preferred)
    }

    pub fn from_pem(pem: &[u8], path: &Path, preferred: Algorithm) -> Result<Self, KeyError> {
        let rejected = |detail: String| KeyError::Rejected {
            path: path.to_owned(),
            detail,
        };
        let (encoding, alg, prepared) = if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
            let alg = if preferred == Algorithm::PS256 {
                Algorithm::PS256
            } else {
                Algorithm::RS256
            };
            let kp = RsaKeyPair::from_der(k.as_bytes())
                .map_err(|e| rejected(format!("RSA key rejected: {e}")))?;
            if kp.public_modulus_len() < 256 {
                return Err(rejected("RSA keys must have at least 2048 bits".into()));
            }
            let enc: &'static dyn sig::RsaEncoding = if alg == Algorithm::PS256 {
                &sig::RSA_PSS_SHA256
            } else {
                &sig::RSA_PKCS1_SHA256
            };
            (k, alg, Prepared::Rsa(kp, enc))
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem) {
            let kp = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, k.as_bytes())
                .map_err(|e| rejected(format!("EC key rejected (only P-256 is supported): {e}")))?;
            (k, Algorithm::ES256, Prepared::Ec(kp))
        } else if let Ok(k) = EncodingKey::from_ed_pem(pem) {
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(k.as_bytes())
                .map_err(|e| rejected(format!("Ed25519 key rejected: {e}")))?;
            (k, Algorithm::EdDSA, Prepared::Ed(kp))
        } else {
            return Err(KeyError::Unrecognized {
                path: path.to_owned(),
            });
        };
        let jwk = match &prepared {
            // jsonwebtoken derives the public JWK from the DER for RSA and EC.
            Prepared::Rsa(..) | Prepared::Ec(_) => Jwk::from_encoding_key(&encoding, alg)
                .map_err(|e| rejected(format!("cannot derive the public key: {e}")))?,
            Prepared::Ed(kp) => {
                let x = URL_SAFE_NO_PAD.encode(kp.public_key().as_ref());
                serde_json::from_value(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x}))
                    .map_err(|e| rejected(format!("cannot build the public JWK: {e}")))?
            }
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| rejected(format!("cannot compute the key thumbprint: {e}")))?;
        let mut public = serde_json::to_value(&jwk)
            .map_err(|e| rejected(format!("cannot serialize the public JWK: {e}")))?;
        if let Some(obj) = public.as_object_mut() {
            obj.insert("kid".into(), kid.clone().into());
            obj.insert("alg".into(), format!("{alg:?}").into());
            obj.insert("use".into(), "sig".into());
        }
        Ok(SigningKey {
            kid,
            alg,
            path: path.to_owned(),
            prepared,
            rng: SystemRandom::new(),
            jwk: public,
        })
    }

    /// True for EC and Ed25519 keys, whose signatures take microseconds.
    pub fn is_cheap_to_sign(&self) -> bool {
        !matches!(self.prepared, Prepared::Rsa(..))
    }

    fn raw_sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |e: aws_lc_rs::error::Unspecified| KeyError::Sign(e.to_string());
        match &self.prepared {
            Prepared::Rsa(kp, enc) => {
                let mut out = vec![0; kp.public_modulus_len()];
                kp.sign(*enc, &self.rng, msg, &mut out).map_err(failed)?;
                Ok(out)
            }
            Prepared::Ec(kp) => Ok(kp.sign(&self.rng, msg).map_err(failed)?.as_ref().to_vec()),
            Prepared::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    /// Signs `header.payload` (both already base64url) and returns the compact JWS.
    pub fn sign_compact(&self, header_b64: &str, payload_b64: &str) -> Result<String, KeyError> {
        let mut token = String::with_capacity(header_b64.len() + payload_b64.len() + 400);
        token.push_str(header_b64);
        token.push('.');
        token.push_str(payload_b64);
        let sig = self.raw_sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        Ok(token)
    }
}

/// A key with its rotation state.
#[derive(Debug, Clone)]
pub struct StatedKey {
    pub key: Arc<SigningKey>,
    pub state: KeyState,
    /// The key file's modification time, for the key-age metric.
    pub modified: Option<std::time::SystemTime>,
}

/// The keys in use: one active key signs; active, next and retired keys are published.
pub struct KeySet {
    keys: Vec<StatedKey>,
    active: usize,
    jwks: Bytes,
}

impl KeySet {
    /// Loads every key; collects one message per bad key (`signing.next[0]: …`).
    /// `skip_missing` drops next/retired files that are gone (a rotated Kubernetes
    /// Secret may no longer hold them) instead of failing.
    pub fn load(
        refs: &[KeyRef],
        algorithm: Algorithm,
        skip_missing: bool,
    ) -> Result<KeySet, Vec<(String, String)>> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for r in refs {
            if skip_missing && r.state != KeyState::Active && !r.path.exists() {
                tracing::warn!(key = %r.key, path = %r.path.display(), "key file is gone; no longer published");
                continue;
            }
            match SigningKey::load(&r.path, algorithm) {
                Ok(k) => {
                    if r.state == KeyState::Active && k.alg != algorithm {
                        errors.push((
                            r.key.clone(),
                            format!(
                                "the active key is a {:?} key but signing.algorithm is {:?}",
                                k.alg, algorithm
                            ),
                        ));
                    }
                    let modified = std::fs::metadata(&r.path).and_then(|m| m.modified()).ok();
                    keys.push(StatedKey {
                        key: Arc::new(k),
                        state: r.state,
                        modified,
                    });
                }
                Err(e) => errors.push((r.key.clone(), e.to_string())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Self::from_stated(keys).map_err(|m| vec![("signing.keys".to_owned(), m)])
    }

    /// The first key active, the rest retired (the `signing.keys` form).
    pub fn from_keys(keys: Vec<Arc<SigningKey>>) -> KeySet {
        let stated = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| StatedKey {
                key,
                state: if i == 0 {
                    KeyState::Active
                } else {
                    KeyState::Retired
                },
                modified: None,
            })
            .collect();
        Self::from_stated(stated).expect("the first key is active")
    }

    pub fn from_stated(mut keys: Vec<StatedKey>) -> Result<KeySet, String> {
        // Published order: active, next, retired.
        keys.sort_by_key(|k| match k.state {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        });
        if keys.iter().filter(|k| k.state == KeyState::Active).count() != 1 {
            return Err("exactly one key must be active".into());
        }
        let mut seen = std::collections::HashSet::new();
        let published: Vec<serde_json::Value> = keys
            .iter()
            .filter(|k| seen.insert(k.key.kid.clone()))
            .map(|k| {
                let mut jwk = k.key.jwk.clone();
                // An RSA key's JWK cannot tell RS256 from PS256; a retired one may have
                // signed with either, so it publishes no `alg` rather than a wrong one.
                if k.state == KeyState::Retired
                    && matches!(k.key.alg, Algorithm::RS256 | Algorithm::PS256)
                    && let Some(o) = jwk.as_object_mut()
                {
                    o.remove("alg");
                }
                jwk
            })
            .collect();
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .map_err(|e| e.to_string())?;
        Ok(KeySet {
            keys,
            active: 0,
            jwks: Bytes::from(jwks),
        })
    }

    pub fn active(&self) -> &Arc<SigningKey> {
        &self.keys[self.active].key
    }

    pub fn all(&self) -> &[StatedKey] {
        &self.keys
    }

    /// The JWKS document, serialized once.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

/// A digest of the key files' contents, so the reloader notices a rotation (including
/// a Kubernetes Secret update that swaps a symlink).
pub fn fingerprint(refs: &[KeyRef]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in refs {
        r.key.hash(&mut h);
        std::fs::read(&r.path).ok().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests;
