//! Errors as clients see them: RFC 6749 §5.2 JSON bodies whose code and HTTP status come
//! from closed sets, so a typo cannot reach a client; details stay in the logs.

use bytes::Bytes;

/// The OAuth error codes tokenhook answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 5] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidScope,
        ErrorCode::ServerError,
        ErrorCode::TemporarilyUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The statuses each code may go with; the first is the default. RFC 6749 §5.2 gives
    /// 400 for request errors and 401 (or 400) for `invalid_client`; `server_error` and
    /// `temporarily_unavailable` (§4.1.2.1) map to 5xx, a gateway's 502/504 when the IdP
    /// is the cause.
    pub fn statuses(self) -> &'static [u16] {
        match self {
            ErrorCode::InvalidRequest => &[400, 413],
            ErrorCode::InvalidClient => &[401, 400],
            ErrorCode::InvalidScope => &[400],
            ErrorCode::ServerError => &[500, 502],
            ErrorCode::TemporarilyUnavailable => &[503, 502, 504],
        }
    }

    /// The code an Action's `api.access.deny(code)` names, if tokenhook allows it (D2).
    pub fn from_deny(code: &str) -> Option<ErrorCode> {
        match code {
            "invalid_scope" => Some(ErrorCode::InvalidScope),
            "invalid_request" => Some(ErrorCode::InvalidRequest),
            "server_error" => Some(ErrorCode::ServerError),
            _ => None,
        }
    }
}

/// An OAuth 2.0 error response. Built only through the constructors below, each of
/// which picks a status from its code's closed set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    code: ErrorCode,
    status: u16,
    description: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u32>,
}

impl OAuthError {
    /// `code` with its default status.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            status: code.statuses()[0],
            description: description.into(),
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// 500 `server_error`.
    pub fn server_error(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, description)
    }

    /// 413 `invalid_request`: the request body is over the cap.
    pub fn too_large(description: impl Into<String>) -> Self {
        Self::invalid_request(description).status(413)
    }

    /// 502 `server_error`: the IdP answered something tokenhook must not pass on.
    pub fn bad_gateway(description: impl Into<String>) -> Self {
        Self::server_error(description).status(502)
    }

    /// 502 `temporarily_unavailable`: the IdP cannot be reached.
    pub fn upstream_unreachable(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, description).status(502)
    }

    /// 504 `temporarily_unavailable`: the IdP did not answer in time.
    pub fn upstream_timeout(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable, description).status(504)
    }

    /// 503 `temporarily_unavailable` with `Retry-After: 1`: tokenhook is saturated.
    pub fn overloaded(description: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::TemporarilyUnavailable, description);
        e.retry_after = Some(1);
        e
    }

    fn status(mut self, status: u16) -> Self {
        debug_assert!(self.code.statuses().contains(&status));
        if self.code.statuses().contains(&status) {
            self.status = status;
        }
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn http_status(&self) -> u16 {
        self.status
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    pub fn body(&self) -> Bytes {
        let v =
            serde_json::json!({"error": self.code.as_str(), "error_description": self.description});
        Bytes::from(v.to_string())
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.code.as_str(),
            self.description
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Breaks if a constructor pairs a code with a status outside its set (e.g. a 502
    // `invalid_scope`), or if a default status changes.
    #[test]
    fn every_constructor_keeps_status_within_its_codes_set() {
        let built = [
            (OAuthError::invalid_request("x"), 400),
            (OAuthError::server_error("x"), 500),
            (OAuthError::too_large("x"), 413),
            (OAuthError::bad_gateway("x"), 502),
            (OAuthError::upstream_unreachable("x"), 502),
            (OAuthError::upstream_timeout("x"), 504),
            (OAuthError::overloaded("x"), 503),
            (OAuthError::new(ErrorCode::InvalidScope, "x"), 400),
            (OAuthError::new(ErrorCode::InvalidClient, "x"), 401),
        ];
        for (e, status) in built {
            assert_eq!(e.http_status(), status, "{e}");
            assert!(e.code().statuses().contains(&e.http_status()), "{e}");
        }
        assert_eq!(OAuthError::overloaded("x").retry_after(), Some(1));
        assert_eq!(OAuthError::server_error("x").retry_after(), None);
        for c in ErrorCode::ALL {
            assert!(!c.statuses().is_empty());
        }
    }

    #[test]
    fn body_is_rfc6749_json() {
        let e = OAuthError::new(ErrorCode::InvalidScope, "no \"admin\"");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "invalid_scope", "error_description": "no \"admin\""})
        );
    }

    #[test]
    fn only_three_deny_codes_are_allowed() {
        assert_eq!(
            ErrorCode::from_deny("invalid_scope"),
            Some(ErrorCode::InvalidScope)
        );
        assert_eq!(ErrorCode::from_deny("access_denied"), None);
        assert_eq!(ErrorCode::from_deny("temporarily_unavailable"), None);
    }
}
