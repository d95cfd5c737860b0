//! Capped bodies on the token route: the request's parameters and the IdP's answer,
//! decompressed when the IdP used gzip or deflate.

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::{Map, Value};
use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("body is over {0} bytes")]
    TooLarge(usize),
    #[error("cannot decode {encoding} body: {detail}")]
    Encoding { encoding: String, detail: String },
}

/// The body with any `Content-Encoding` undone, at most `max` bytes after decoding
/// (a gzip bomb stops at the cap).
pub fn decode_content(
    header: &ResponseHeader,
    body: Bytes,
    max: usize,
) -> Result<Bytes, BodyError> {
    let encoding = header
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let reader: Box<dyn Read> = match encoding.as_str() {
        "" | "identity" => return Ok(body),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(&body[..])),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        other => {
            return Err(BodyError::Encoding {
                encoding: other.to_owned(),
                detail: "unsupported content encoding".into(),
            });
        }
    };
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Encoding {
            encoding: encoding.clone(),
            detail: e.to_string(),
        })?;
    if out.len() > max {
        return Err(BodyError::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

/// The `Accept-Encoding` the sidecar forwards: the client's, limited to the codings it
/// can decode itself, since it must read the IdP's answer to rewrite it.
pub fn decodable_accept_encoding(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|c| {
            let name = c
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(name.as_str(), "gzip" | "x-gzip" | "deflate" | "identity")
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// What the token route needs from a token request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    /// The requested scopes (`scope` parameter), if any.
    pub scope: Option<Vec<String>>,
    /// Every parameter except credentials, for the hook's `context.body`.
    pub params: Map<String, Value>,
}

/// Parameters the hook never sees (Auth0 strips these since 2025-09).
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "refresh_token",
    "auth_session",
    "authn_response",
];

/// Parses a form-urlencoded or JSON token request. A request the sidecar cannot read
/// exactly as the IdP would is refused rather than passed through, since passing it
/// would hand out an IdP token that skipped the hook.
pub fn parse_token_request(req: &RequestHeader, body: &[u8]) -> Result<TokenRequest, &'static str> {
    if req
        .headers
        .get("content-encoding")
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err("compressed token requests are not supported");
    }
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let media = content_type.split(';').next().unwrap_or("").trim();
    let mut params = Map::new();
    match media {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(obj)) => params = obj,
            _ => return Err("the request body is not a JSON object"),
        },
        "application/x-www-form-urlencoded" | "" => {
            for (k, v) in form_urlencoded::parse(body) {
                if params.contains_key(k.as_ref()) {
                    // RFC 6749 §3.2: parameters must not repeat; an IdP taking the last
                    // one and us the first would disagree on the grant.
                    return Err("repeated request parameter");
                }
                params.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        _ => return Err("unsupported content type for the token endpoint"),
    }
    let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
    let grant_type = text("grant_type");
    let client_id = basic_client_id(req).or_else(|| text("client_id"));
    let scope = text("scope").map(|s| s.split_whitespace().map(str::to_owned).collect());
    for k in SECRET_PARAMS {
        params.remove(*k);
    }
    Ok(TokenRequest {
        grant_type,
        client_id,
        scope,
        params,
    })
}

/// The client id from `Authorization: Basic`, form-decoded as RFC 6749 §2.3.1 requires.
fn basic_client_id(req: &RequestHeader) -> Option<String> {
    use base64::Engine;
    let value = req.headers.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, _) = decoded.split_once(':')?;
    let id: String = form_urlencoded::parse(format!("x={id}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn req(ct: &str, auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/oauth/token", None).unwrap();
        r.insert_header("Content-Type", ct).unwrap();
        if let Some(a) = auth {
            r.insert_header("Authorization", a).unwrap();
        }
        r
    }

    #[test]
    fn form_request_with_basic_auth() {
        // "svc%3Abasic:secret" → client id "svc:basic"
        let r = req(
            "application/x-www-form-urlencoded",
            Some("Basic c3ZjJTNBYmFzaWM6c2VjcmV0"),
        );
        let t = parse_token_request(
            &r,
            b"grant_type=client_credentials&scope=a+b&client_secret=s",
        )
        .unwrap();
        assert_eq!(t.grant_type.as_deref(), Some("client_credentials"));
        assert_eq!(t.client_id.as_deref(), Some("svc:basic"));
        assert_eq!(t.scope, Some(vec!["a".into(), "b".into()]));
        assert!(!t.params.contains_key("client_secret"));
    }

    #[test]
    fn json_request_with_body_credentials() {
        let r = req("application/json; charset=utf-8", None);
        let t = parse_token_request(
            &r,
            br#"{"grant_type":"client_credentials","client_id":"svc-post","client_secret":"x","audience":"https://api"}"#,
        )
        .unwrap();
        assert_eq!(t.client_id.as_deref(), Some("svc-post"));
        assert_eq!(
            t.params.get("audience").and_then(Value::as_str),
            Some("https://api")
        );
        assert!(!t.params.contains_key("client_secret"));
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        assert!(
            parse_token_request(&req("text/plain", None), b"grant_type=client_credentials")
                .is_err()
        );
        assert!(parse_token_request(&req("application/json", None), b"[1]").is_err());
        let dup = b"grant_type=password&grant_type=client_credentials";
        assert!(parse_token_request(&req("application/x-www-form-urlencoded", None), dup).is_err());
        let mut gz = req("application/x-www-form-urlencoded", None);
        gz.insert_header("Content-Encoding", "gzip").unwrap();
        assert!(parse_token_request(&gz, b"x").is_err());
        let ok = req("Application/X-WWW-Form-Urlencoded; charset=UTF-8", None);
        assert!(parse_token_request(&ok, b"grant_type=client_credentials").is_ok());
    }

    #[test]
    fn gzip_is_decoded_and_capped() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 10_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("Content-Encoding", "gzip").unwrap();
        assert_eq!(
            decode_content(&h, gz.clone(), 20_000).unwrap().len(),
            10_000
        );
        assert_eq!(
            decode_content(&h, gz, 9_999),
            Err(BodyError::TooLarge(9_999))
        );
        h.insert_header("Content-Encoding", "br").unwrap();
        assert!(matches!(
            decode_content(&h, Bytes::from_static(b"x"), 10),
            Err(BodyError::Encoding { .. })
        ));
    }
}
