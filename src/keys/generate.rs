//! `tokenhook keys generate`: new private keys as PKCS#8 PEM, written owner-only.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine;
use jsonwebtoken::Algorithm;
use std::io::Write;
use std::path::Path;

/// A new private key for `alg` as PKCS#8 PEM.
pub fn generate_pem(alg: Algorithm) -> Result<String, String> {
    let der: Vec<u8> = match alg {
        Algorithm::RS256 | Algorithm::PS256 => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "RSA key generation failed".to_owned())?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der = kp
                .as_der()
                .map_err(|_| "RSA key encoding failed".to_owned())?;
            der.as_ref().to_vec()
        }
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "EC key generation failed".to_owned())?
                .as_ref()
                .to_vec()
        }
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
            .map_err(|_| "Ed25519 key generation failed".to_owned())?
            .as_ref()
            .to_vec(),
        other => return Err(format!("cannot generate {other:?} keys")),
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

/// Writes a private key with mode 0600, refusing to replace an existing file unless
/// `force`: an overwritten signing key silently invalidates every live token. With
/// `force` the key goes to a fresh 0600 file renamed over the old one, so the result is
/// owner-only whatever the old file's mode, and a reader never sees half a key.
pub fn write_private_key(path: &Path, pem: &str, force: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let target = if force {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
        path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
    } else {
        path.to_owned()
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&target)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    if force {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}
