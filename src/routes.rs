//! Which requests the sidecar answers itself: paths in the one form they are compared
//! in, for the configured routes (normalised once, in the config) and for every request.

/// The form in which paths are compared: percent-decoded, lowercase, without trailing
/// slashes. Many IdPs route `/oauth/token/` or `/OAuth/Token` to the token endpoint; an
/// exact match would let such a request skip the hook.
pub fn normalize_path(path: &str) -> String {
    let decoded: Vec<u8> = percent_decode(path.as_bytes());
    let mut p = String::from_utf8_lossy(&decoded).to_ascii_lowercase();
    while p.len() > 1 && p.ends_with('/') {
        p.pop();
    }
    while p.contains("//") {
        p = p.replace("//", "/");
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
