//! Errors as clients see them: RFC 6749 JSON bodies with a status; details stay in logs.

use bytes::Bytes;

/// An OAuth 2.0 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    /// `invalid_request`, `invalid_scope`, `server_error`, `temporarily_unavailable`.
    pub code: &'static str,
    pub description: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
}

impl OAuthError {
    pub fn new(status: u16, code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn server_error(description: impl Into<String>) -> Self {
        Self::new(500, "server_error", description)
    }

    pub fn bad_gateway(description: impl Into<String>) -> Self {
        Self::new(502, "server_error", description)
    }

    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({"error": self.code, "error_description": self.description});
        Bytes::from(v.to_string())
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.description)
    }
}
