//! Which requests the sidecar answers itself: paths in the one form they are compared
//! in, for the configured routes (normalised once, in the config) and for every request
//! (D16 in docs/decisions.md), and the token parameters a query string may not carry
//! (D17).
//!
//! The normal form errs towards matching: any spelling that some IdP or web server in
//! front of it could take for the token endpoint must reach the token route, or the
//! IdP's token would be relayed without the hook. Matching a path that the IdP would
//! not treat as its token endpoint only costs that request the token route's stricter
//! parsing.

/// Rounds of percent-decoding: `%252e` is `%2e` after one, `.` after two; servers that
/// decode twice exist (IIS), and more rounds than that change nothing real.
const DECODE_ROUNDS: usize = 3;

/// The form in which paths are compared:
/// - cut at a NUL byte (servers written in C stop there);
/// - percent-decoded, repeatedly (`%2e`, `%2f`, `%252e` …), every octet, not only the
///   unreserved ones, so encoded dots and slashes count as what they encode;
/// - `\` as `/` (IIS and some servlet containers);
/// - `;params` removed from every segment (servlet path parameters: `/token;jsessionid=x`);
/// - a leading `/` added, repeated slashes merged;
/// - dot segments removed (RFC 3986 §5.2.4): `/a/./b`, `/x/../b`, a trailing `/.`;
/// - ASCII-lowercased, trailing slashes dropped.
pub fn normalize_path(path: &str) -> String {
    let mut bytes = path.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        let decoded = percent_decode(&bytes);
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    let text = text.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        // `;params` belong to the segment they follow.
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut p = String::with_capacity(text.len() + 1);
    for s in &out {
        p.push('/');
        p.push_str(s);
    }
    if p.is_empty() {
        p.push('/');
    }
    p
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Token endpoint parameters (RFC 6749, 7521/7523, 8628, 8693, OIDC CIBA, and the ones
/// Auth0 reads): the ones a query string on the token path may not carry.
const TOKEN_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "audience",
    "resource",
    "organization",
    "code",
    "code_verifier",
    "redirect_uri",
    "refresh_token",
    "username",
    "password",
    "assertion",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "device_code",
    "auth_req_id",
];

/// The first token parameter in `query`, if any (names compared decoded and in any
/// case). Some IdPs read parameters from the query before the body, so the sidecar
/// would decide on other parameters than the IdP (D17).
pub fn token_param_in_query(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.trim().to_ascii_lowercase())
        .find(|k| TOKEN_PARAMS.contains(&k.as_str()))
}

/// The three intercepted paths, normalized once at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub token: String,
    pub jwks: String,
    pub discovery: String,
}

impl Routes {
    pub fn new(token: &str, jwks: &str, discovery: &str) -> Self {
        Routes {
            token: normalize_path(token),
            jwks: normalize_path(jwks),
            discovery: normalize_path(discovery),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each spelling below is one an IdP or the server in front of it may route to its
    // token endpoint; any of them not normalising to `/oauth/token` would be relayed
    // as pass-through with the IdP's own token.
    #[test]
    fn every_spelling_of_the_token_path_normalises_to_it() {
        for p in [
            "/oauth/token",
            "/OAuth/Token",
            "/oauth/token/",
            "/oauth//token",
            "//oauth/token",
            "/oauth/./token",
            "/oauth/token/.",
            "/x/../oauth/token",
            "/oauth/x/../token",
            "/oauth/%2e/token",
            "/oauth/%2E%2E/oauth/token",
            "/%6fauth/token",
            "/oauth%2ftoken",
            "/oauth%252ftoken",
            "/oauth/%252e/token",
            "/oauth/token;jsessionid=abc",
            "/oauth;x=y/token",
            "/oauth/token;",
            "oauth/token",
            "/oauth\\token",
            "/oauth/token%00.css",
            "/../oauth/token",
        ] {
            assert_eq!(normalize_path(p), "/oauth/token", "{p}");
        }
    }

    // Breaks if normalising became so loose that other paths collide with the token
    // route, or if the root stopped being `/`.
    #[test]
    fn other_paths_stay_apart() {
        for p in [
            "/oauth/tokens",
            "/oauth/token2",
            "/oauth/revoke",
            "/oauth",
            "/token",
        ] {
            assert_ne!(normalize_path(p), "/oauth/token", "{p}");
        }
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("/.."), "/");
        assert_eq!(normalize_path("%"), "/%");
        assert_eq!(normalize_path("/a%2"), "/a%2");
    }

    // Breaks if a token parameter in the query (encoded, in another case, or after
    // others) were missed, or if unrelated parameters were refused.
    #[test]
    fn token_parameters_in_the_query_are_found() {
        assert_eq!(
            token_param_in_query("grant_type=client_credentials").as_deref(),
            Some("grant_type")
        );
        assert_eq!(
            token_param_in_query("a=1&GRANT_TYPE=x").as_deref(),
            Some("grant_type")
        );
        assert_eq!(
            token_param_in_query("grant%5Ftype=x").as_deref(),
            Some("grant_type")
        );
        assert_eq!(
            token_param_in_query("client_secret").as_deref(),
            Some("client_secret")
        );
        assert_eq!(token_param_in_query("tenant=acme&debug=1"), None);
        assert_eq!(token_param_in_query(""), None);
    }
}
