//! Signing keys: parsed once into ready-to-sign form, with the JWKS document serialized
//! once per key set, so the token path never parses a key or builds JSON for the JWKS.

mod generate;
pub use generate::{generate_pem, write_private_key};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::signature;
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

impl signature::Signer<Vec<u8>> for SigningKey {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &self.prepared {
            Prepared::Rsa(kp, enc) => {
                let mut out = vec![0; kp.public_modulus_len()];
                kp.sign(*enc, &self.rng, msg, &mut out)
                    .map_err(signature::Error::from_source)?;
                Ok(out)
            }
            Prepared::Ec(kp) => Ok(kp
                .sign(&self.rng, msg)
                .map_err(signature::Error::from_source)?
                .as_ref()
                .to_vec()),
            Prepared::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }
}

/// The key plugs into jsonwebtoken's signer interface, so anything built on that
/// interface (and our tests) can use it as any other signer.
impl jsonwebtoken::crypto::JwtSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
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

    /// Signs `header.payload` (both already base64url) and returns the compact JWS.
    pub fn sign_compact(&self, header_b64: &str, payload_b64: &str) -> Result<String, KeyError> {
        use signature::Signer;
        let mut token = String::with_capacity(header_b64.len() + payload_b64.len() + 400);
        token.push_str(header_b64);
        token.push('.');
        token.push_str(payload_b64);
        let sig = self
            .try_sign(token.as_bytes())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        Ok(token)
    }
}

/// The keys in use: the first signs, all are published.
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
    jwks: Bytes,
}

impl KeySet {
    /// Loads every key; collects one message per bad key (`signing.keys[i]: …`).
    pub fn load(paths: &[PathBuf], algorithm: Algorithm) -> Result<KeySet, Vec<(String, String)>> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            match SigningKey::load(p, algorithm) {
                Ok(k) => {
                    if i == 0 && k.alg != algorithm {
                        errors.push((
                            format!("signing.keys[{i}]"),
                            format!(
                                "the active key is a {:?} key but signing.algorithm is {:?}",
                                k.alg, algorithm
                            ),
                        ));
                    }
                    keys.push(Arc::new(k));
                }
                Err(e) => errors.push((format!("signing.keys[{i}]"), e.to_string())),
            }
        }
        if keys.is_empty() && errors.is_empty() {
            errors.push(("signing.keys".into(), "no keys".into()));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self::from_keys(keys))
    }

    pub fn from_keys(keys: Vec<Arc<SigningKey>>) -> KeySet {
        let mut seen = std::collections::HashSet::new();
        let published: Vec<&serde_json::Value> = keys
            .iter()
            .filter(|k| seen.insert(k.kid.clone()))
            .map(|k| &k.jwk)
            .collect();
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .expect("a JWK set always serializes");
        KeySet {
            keys,
            jwks: Bytes::from(jwks),
        }
    }

    pub fn active(&self) -> &Arc<SigningKey> {
        &self.keys[0]
    }

    pub fn all(&self) -> &[Arc<SigningKey>] {
        &self.keys
    }

    /// The JWKS document, serialized once.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

#[cfg(test)]
mod tests;
