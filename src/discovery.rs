//! The discovery document the sidecar serves: the IdP's, with every endpoint that points
//! at the IdP pointing at the sidecar instead. A client library that discovers the
//! sidecar (openid-client, Spring's `issuer-uri`, authlib) must send its token request
//! through it: a `token_endpoint` left at the IdP's address would hand it the IdP's
//! token, which then fails against the sidecar's `jwks_uri` (and skips the hook).

use serde_json::{Map, Value};
use url::Url;

/// What the rewrite needs to know.
pub struct Rewrite<'a> {
    /// `server.public_url`: where clients reach the sidecar.
    pub public: &'a Url,
    /// The origins that mean "the IdP": its configured URL, the Host the document was
    /// fetched with, the `issuer` it states.
    pub idp_origins: Vec<url::Origin>,
    /// `upstream.token_path` and `server.jwks_path`, the sidecar's own routes.
    pub token_path: &'a str,
    pub jwks_path: &'a str,
    /// The `issuer` to state (None keeps the IdP's).
    pub issuer: Option<&'a str>,
}

impl Rewrite<'_> {
    /// The sidecar's URL for `path` (and query).
    fn ours(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.public.as_str().trim_end_matches('/'),
            path_and_query
        )
    }

    /// `value` moved to the sidecar if it is a URL at one of the IdP's origins.
    fn moved(&self, value: &str) -> Option<String> {
        let url = Url::parse(value).ok()?;
        if !self.idp_origins.contains(&url.origin()) {
            return None;
        }
        let mut pq = url.path().to_owned();
        if let Some(q) = url.query() {
            pq.push('?');
            pq.push_str(q);
        }
        Some(self.ours(&pq))
    }

    /// Rewrites `doc` in place: `issuer`, `jwks_uri` and `token_endpoint` always (the
    /// token endpoint is the one that must never be the IdP's, wherever it pointed),
    /// every other `*_endpoint` / `*_uri` / `check_session_iframe` member at an IdP
    /// origin, and the same inside `mtls_endpoint_aliases`.
    pub fn apply(&self, doc: &mut Map<String, Value>) {
        if let Some(iss) = self.issuer {
            doc.insert("issuer".into(), Value::String(iss.to_owned()));
        }
        for (key, value) in doc.iter_mut() {
            self.member(key, value);
        }
        if let Some(Value::Object(aliases)) = doc.get_mut("mtls_endpoint_aliases") {
            for (key, value) in aliases.iter_mut() {
                self.member(key, value);
            }
        }
        doc.insert("jwks_uri".into(), Value::String(self.ours(self.jwks_path)));
        doc.insert(
            "token_endpoint".into(),
            Value::String(self.ours(self.token_path)),
        );
    }

    fn member(&self, key: &str, value: &mut Value) {
        if key == "token_endpoint" {
            *value = Value::String(self.ours(self.token_path));
            return;
        }
        let is_endpoint =
            key.ends_with("_endpoint") || key.ends_with("_uri") || key == "check_session_iframe";
        if let (true, Value::String(s)) = (is_endpoint, &*value)
            && let Some(moved) = self.moved(s)
        {
            *value = Value::String(moved);
        }
    }
}

/// The origin of `s`, if it is an absolute URL.
pub fn origin(s: &str) -> Option<url::Origin> {
    Url::parse(s).ok().map(|u| u.origin())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rewrite(public: &Url) -> Rewrite<'_> {
        Rewrite {
            public,
            idp_origins: ["http://127.0.0.1:3000", "https://idp.internal"]
                .iter()
                .filter_map(|s| origin(s))
                .collect(),
            token_path: "/oauth/token",
            jwks_path: "/.well-known/jwks.json",
            issuer: Some("https://auth.example.com"),
        }
    }

    // Breaks if any endpoint at the IdP's address survives (a discovering client would
    // then go around the sidecar), if the token endpoint kept the IdP's even at a
    // foreign origin, or if URLs elsewhere were touched.
    #[test]
    fn every_idp_endpoint_points_at_the_sidecar() {
        let public = Url::parse("https://auth.example.com/").unwrap();
        let mut doc = json!({
            "issuer": "http://127.0.0.1:3000",
            "token_endpoint": "https://elsewhere.example/t",
            "authorization_endpoint": "http://127.0.0.1:3000/auth",
            "userinfo_endpoint": "https://idp.internal/me?x=1",
            "revocation_endpoint": "http://127.0.0.1:3000/token/revocation",
            "jwks_uri": "http://127.0.0.1:3000/jwks",
            "service_documentation": "http://127.0.0.1:3000/docs",
            "registration_endpoint": "https://partner.example/reg",
            "mtls_endpoint_aliases": {
                "token_endpoint": "https://mtls.idp.internal/token",
                "introspection_endpoint": "https://idp.internal/introspect"
            },
            "grant_types_supported": ["client_credentials"]
        })
        .as_object()
        .cloned()
        .unwrap();
        rewrite(&public).apply(&mut doc);
        assert_eq!(doc["issuer"], "https://auth.example.com");
        assert_eq!(
            doc["token_endpoint"],
            "https://auth.example.com/oauth/token"
        );
        assert_eq!(
            doc["authorization_endpoint"],
            "https://auth.example.com/auth"
        );
        assert_eq!(doc["userinfo_endpoint"], "https://auth.example.com/me?x=1");
        assert_eq!(
            doc["revocation_endpoint"],
            "https://auth.example.com/token/revocation"
        );
        assert_eq!(
            doc["jwks_uri"],
            "https://auth.example.com/.well-known/jwks.json"
        );
        // Not an endpoint, and not the IdP's: untouched.
        assert_eq!(doc["service_documentation"], "http://127.0.0.1:3000/docs");
        assert_eq!(doc["registration_endpoint"], "https://partner.example/reg");
        assert_eq!(
            doc["mtls_endpoint_aliases"]["token_endpoint"],
            "https://auth.example.com/oauth/token"
        );
        assert_eq!(
            doc["mtls_endpoint_aliases"]["introspection_endpoint"],
            "https://auth.example.com/introspect"
        );
        assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
    }

    #[test]
    fn a_public_url_with_a_path_prefix_is_kept() {
        let public = Url::parse("https://gw.example.com/auth/").unwrap();
        let mut doc = json!({"userinfo_endpoint": "http://127.0.0.1:3000/me"})
            .as_object()
            .cloned()
            .unwrap();
        rewrite(&public).apply(&mut doc);
        assert_eq!(doc["userinfo_endpoint"], "https://gw.example.com/auth/me");
        assert_eq!(
            doc["token_endpoint"],
            "https://gw.example.com/auth/oauth/token"
        );
    }
}
