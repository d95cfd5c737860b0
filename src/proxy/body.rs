//! The token request's parameters, read exactly as the IdP would read them or refused.

use crate::exchange::TokenRequest;
use pingora::http::RequestHeader;
use serde_json::{Map, Value};

/// The media type of a message (`Content-Type` without parameters, lowercased), if it
/// names one.
pub fn media_type(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("content-type")?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

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
    let media = media_type(&req.headers).unwrap_or_default();
    let mut params = Map::new();
    match media.as_str() {
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
    Ok(TokenRequest::from_params(params, basic_client_id(req)))
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
    // The whole user part is one form-encoded value: a raw `&` in it is not a separator
    // (parsed as a form, "a&b" would become the client "a" while the IdP reads "a&b").
    let id = id.replace('&', "%26");
    let id: String = form_urlencoded::parse(format!("x={id}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn basic_user_with_a_raw_ampersand_is_one_client_id() {
        // Found by fuzzing (fuzz/corpus/token_request/regression-basic-ampersand):
        // "a&b+c%26d:secret" was read as client "a".
        let auth = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "a&b+c%26d:s")
        );
        let r = req("application/x-www-form-urlencoded", Some(&auth));
        let t = parse_token_request(&r, b"grant_type=client_credentials").unwrap();
        assert_eq!(t.client_id.as_deref(), Some("a&b c&d"));
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
}
