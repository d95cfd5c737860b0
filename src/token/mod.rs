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

/// Whether a pass-through answer could carry an access token, before anything is
/// parsed: a JSON content type, and either a compressed body (its bytes say nothing) or
/// the bytes `access_token` in it. Everything else is relayed without a parse; the
/// pass-through guard (`proxy::token_route`) pays for a JSON parse and a signature
/// check only when this says yes (`benches/hot_path.rs`, `guard/*`).
pub fn may_carry_token(content_type: Option<&str>, compressed: bool, body: &[u8]) -> bool {
    let json = content_type.is_some_and(|v| {
        v.as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"json"))
    });
    // memchr's SIMD search: a plain window scan cost a third of parsing the body.
    // A form-encoded answer carries a token as well as a JSON one (`jwt_outside_json`).
    const FORM: &[u8] = b"application/x-www-form-urlencoded";
    let form = content_type.is_some_and(|v| {
        let v = v.trim_start().as_bytes();
        v.len() >= FORM.len() && v[..FORM.len()].eq_ignore_ascii_case(FORM)
    });
    (json || form) && (compressed || memchr::memmem::find(body, b"access_token").is_some())
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

/// What an access token from the IdP is, for the token route: an opaque token is relayed
/// untouched; anything else must verify as a JWS or the exchange fails (fail closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// Not a JOSE object in any serialization we can recognise.
    Opaque,
    /// A JWS (or JWE, or something trying to pass for one): only a token that verifies
    /// may be used.
    Jws,
}

/// Classifies `token`. The rule, chosen so that every token a resource server might take
/// for a JWT is verified, while random opaque tokens are never refused:
///
/// - two or more `.` (a compact JWS has three segments, a JWE five; extra dots, empty
///   segments or non-base64url characters do not make it opaque) → `Jws`;
/// - otherwise, if the first `.`-separated segment decodes as base64 in either alphabet
///   (standard or URL-safe, padded or not, trailing bits ignored) to a JSON object, or to
///   bytes that mention `"alg"` (a header that is almost JSON) → `Jws`;
/// - a token that is itself a JSON object (the JWS JSON serializations) → `Jws`;
/// - anything else → `Opaque`.
///
/// Random opaque tokens never decode to a JSON object, so they stay opaque; a PASETO-like
/// token with two dots is refused, which is the safe side.
pub fn classify(token: &str) -> TokenShape {
    if token.bytes().filter(|&b| b == b'.').take(2).count() >= 2 {
        return TokenShape::Jws;
    }
    let first = token.split('.').next().unwrap_or_default();
    let json_object =
        |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).is_ok_and(|v| v.is_object());
    if json_object(token.trim().as_bytes()) {
        return TokenShape::Jws;
    }
    match lenient_b64(first) {
        Some(bytes) if json_object(&bytes) || contains(&bytes, b"\"alg\"") => TokenShape::Jws,
        _ => TokenShape::Opaque,
    }
}

/// Kept for callers that only need a yes/no: true unless the token is opaque.
pub fn looks_like_jwt(token: &str) -> bool {
    classify(token) == TokenShape::Jws
}

/// Whether a successful token response that is not a JSON object (form-encoded, plain
/// text, XML) carries a JWS-shaped token (D18): as a form value named like a token, as
/// the whole body, or as a word of base64url that begins as a JSON header does (`ey`,
/// `ew`: base64 of `{`). Such a token cannot be re-signed in the response's own shape,
/// and relaying it would hand out the IdP's token without the hook, so the caller
/// refuses it; other words with dots (host names, scopes like `api.read.all`) are not
/// taken for tokens.
pub fn jwt_outside_json(body: &[u8]) -> bool {
    let in_form = form_urlencoded::parse(body)
        .any(|(k, v)| k.to_ascii_lowercase().contains("token") && looks_like_jwt(&v));
    if in_form {
        return true;
    }
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'=');
    // The whole body as one word: the token as plain text, in any base64 alphabet.
    let whole = body.trim_ascii();
    if !whole.is_empty()
        && whole.iter().all(|c| b64(c) || matches!(c, b'+' | b'/'))
        && std::str::from_utf8(whole).is_ok_and(looks_like_jwt)
    {
        return true;
    }
    // A word is taken for a token when its first segment decodes to a header (the
    // second rule of `classify`), not for its dots alone.
    body.split(|c| !b64(c))
        .filter(|w| w.starts_with(b"ey") || w.starts_with(b"ew"))
        .filter_map(|w| std::str::from_utf8(w).ok())
        .any(|w| {
            w.contains('.') && classify(w.split('.').next().unwrap_or_default()) == TokenShape::Jws
        })
}

/// Decodes base64 the way the most forgiving JWT library might: either alphabet, padding
/// optional, non-zero trailing bits accepted. Only for classification; verification
/// decodes strictly.
fn lenient_b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mapped: String = s
        .trim()
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    LENIENT.decode(mapped.trim_end_matches('=')).ok()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;
    const PAYLOAD: &str = r#"{"sub":"a","exp":1900000000}"#;

    fn compact(h: &str, p: &str, sig: &str) -> String {
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(p)
        )
    }

    #[test]
    fn well_formed_jws_is_jws() {
        assert_eq!(classify(&compact(HEADER, PAYLOAD, "c2ln")), TokenShape::Jws);
        assert!(looks_like_jwt(&compact(HEADER, PAYLOAD, "c2ln")));
    }

    #[test]
    fn empty_signature_alg_none_is_jws() {
        // Breaks if an unsecured JWS (alg none, empty third segment) counts as opaque.
        let t = compact(r#"{"alg":"none"}"#, PAYLOAD, "");
        assert_eq!(classify(&t), TokenShape::Jws);
        // ...and with the signature segment left out entirely ("header.payload").
        let t = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(PAYLOAD)
        );
        assert_eq!(classify(&t), TokenShape::Jws);
    }

    #[test]
    fn padded_and_standard_alphabet_segments_are_jws() {
        // Breaks if a padded header segment is treated as opaque.
        let padded = format!(
            "{}.{}.c2ln",
            URL_SAFE.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE.encode(PAYLOAD)
        );
        assert!(padded.contains('='));
        assert_eq!(classify(&padded), TokenShape::Jws);
        // Breaks if '+' or '/' (standard alphabet) makes a token opaque.
        let std = format!(
            "{}.{}.ab+/",
            STANDARD.encode(r#"{"alg":"RS256","kid":">>>???"}"#),
            STANDARD.encode(PAYLOAD)
        );
        assert!(std.contains('+') || std.contains('/'));
        assert_eq!(classify(&std), TokenShape::Jws);
        // A lone padded header, no dots at all, is still not opaque.
        assert_eq!(
            classify(&URL_SAFE.encode(r#"{"alg":"RS256"}"#)),
            TokenShape::Jws
        );
    }

    #[test]
    fn extra_dots_and_jwe_are_jws() {
        // Breaks if a fourth segment (or trailing dot) makes the token opaque.
        assert_eq!(
            classify(&format!("{}.x", compact(HEADER, PAYLOAD, "c2ln"))),
            TokenShape::Jws
        );
        assert_eq!(
            classify(&format!("{}.", compact(HEADER, PAYLOAD, "c2ln"))),
            TokenShape::Jws
        );
        // Breaks if a five-part JWE passes as opaque.
        assert_eq!(
            classify("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d"),
            TokenShape::Jws
        );
        // Empty segments and junk characters do not make a dotted token opaque.
        assert_eq!(classify(".."), TokenShape::Jws);
        assert_eq!(classify("a b.c!d.e"), TokenShape::Jws);
    }

    #[test]
    fn almost_json_headers_and_json_serialization_are_jws() {
        // Breaks if a header that is not quite JSON (trailing garbage) is opaque.
        let t = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}}"#),
            URL_SAFE_NO_PAD.encode(PAYLOAD)
        );
        assert_eq!(classify(&t), TokenShape::Jws);
        // Breaks if the JWS JSON serialization is relayed as an opaque token.
        let json = r#"{"payload":"e30","protected":"e30","signature":"c2ln"}"#;
        assert_eq!(classify(json), TokenShape::Jws);
    }

    #[test]
    fn genuinely_opaque_tokens_stay_opaque() {
        // Breaks if random or reference tokens are refused (they must be relayed).
        for t in [
            "opaque-token-value",
            "2YotnFZFEjr1zCsicMWpAA",
            "8xLOxBtZp8",
            "",
            "a.b", // one dot, first segment is not JSON
            "tGzv3JOkF0XG5Qx2TlKWIA==",
            "SlAV32hkKG+/abc==",
        ] {
            assert_eq!(classify(t), TokenShape::Opaque, "{t:?}");
        }
        // Many random url-safe tokens: none is classified as a JWS.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut bytes = [0u8; 32];
            for b in &mut bytes {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let t = URL_SAFE_NO_PAD.encode(bytes);
            assert_eq!(classify(&t), TokenShape::Opaque, "{t}");
        }
    }

    /// Breaks if a JWT in a non-JSON answer is missed (as a form value, the whole body,
    /// or a word of XML), or if an answer without one is taken for one because of a
    /// dotted scope or host name (it would then be refused, not relayed).
    #[test]
    fn a_jwt_outside_json_is_found_and_dotted_words_are_not_tokens() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{"sub":"svc"}"#);
        let jwt = format!("{h}.{p}.c2ln");
        for body in [
            format!("access_token={jwt}&token_type=Bearer&expires_in=300"),
            format!("token_type=Bearer&id_token={jwt}"),
            format!("  {jwt}\n"),
            format!("<r><access_token>{jwt}</access_token></r>"),
            format!("token: \"{jwt}\""),
        ] {
            assert!(jwt_outside_json(body.as_bytes()), "{body}");
        }
        for body in [
            "access_token=opaque-2YotnFZFEjr1zCsicMWpAA&token_type=Bearer&scope=api.read.all",
            "access_token=8xLOxBtZp8&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
            "<html><a href=\"https://www.example.com/a.b.c\">eyes.on.you</a></html>",
            "",
        ] {
            assert!(!jwt_outside_json(body.as_bytes()), "{body}");
        }
    }
}
