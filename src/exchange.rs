//! The token exchange, free of HTTP: from the IdP's verified claims and the facts of the
//! client's request to the claims tokenhook signs and the scope it answers with, through
//! the hook and Auth0's claim and scope rules. The proxy's token route and `tokenhook
//! hooks run` both call [`Exchange::run`], so a hook behaves the same in both by
//! construction: same request-body filtering, same defaults, same rules, same errors.

use crate::config::{ClientInfo, IssuerMode};
use crate::error::OAuthError;
use crate::hooks::engine::LogLine;
use crate::hooks::{HookCall, HookClient, HookPool, StepRun};
use crate::metrics::{HookOutcome, Outcome};
use crate::token::claims::{self, ClaimPolicy, Ignored};
use prometheus::IntCounter;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Token request parameters a hook never sees: Auth0 strips these from
/// `event.request.body` since 2025-09, and they are credentials.
pub const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "refresh_token",
    "auth_session",
    "authn_response",
];

/// What the client asked for, as far as the exchange needs it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    /// From `Authorization: Basic`, else the `client_id` parameter.
    pub client_id: Option<String>,
    /// The requested scopes (`scope` parameter), if any.
    pub scope: Option<Vec<String>>,
    /// Every parameter except credentials ([`SECRET_PARAMS`]): the hook's request body.
    pub params: Map<String, Value>,
}

impl TokenRequest {
    /// From the request's parameters (a form or JSON body) and the client id of its
    /// Basic credentials. Credentials are removed here, for every caller.
    pub fn from_params(mut params: Map<String, Value>, basic_client_id: Option<String>) -> Self {
        let text = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_owned);
        let grant_type = text("grant_type");
        let client_id = basic_client_id.or_else(|| text("client_id"));
        let scope = text("scope").map(|s| s.split_whitespace().map(str::to_owned).collect());
        for k in SECRET_PARAMS {
            params.remove(*k);
        }
        TokenRequest {
            grant_type,
            client_id,
            scope,
            params,
        }
    }

    pub fn is_client_credentials(&self) -> bool {
        self.grant_type.as_deref() == Some("client_credentials")
    }
}

/// Facts of the HTTP request besides its parameters.
#[derive(Debug, Default, Clone)]
pub struct Peer {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub hostname: Option<String>,
    pub language: Option<String>,
    /// Defaults to `POST`.
    pub method: Option<String>,
}

/// What the exchange needs from the running sidecar (or the local runner).
pub struct Exchange<'a> {
    /// The enabled hook, held for the whole call so a hot reload never cuts it off;
    /// `None` re-signs the IdP's token as issued.
    pub hook: Option<Arc<HookPool>>,
    /// The client registry (`[clients."ID"]`).
    pub clients: &'a HashMap<String, ClientInfo>,
    pub policy: ClaimPolicy,
    pub issuer: &'a IssuerMode,
    /// `tokenhook_hook_ignored_claims_total`, where counted.
    pub ignored_claims: Option<&'a IntCounter>,
    /// Write the hook's console lines to the log (the sidecar) rather than only
    /// returning them (the runner prints them).
    pub log_console: bool,
}

/// The token to sign, and what the hook did.
#[derive(Debug)]
pub struct Exchanged {
    /// The payload to sign: the IdP's claims with the hook's claims and scopes applied
    /// and our issuer.
    pub payload: Map<String, Value>,
    pub scopes: Vec<String>,
    /// The hook changed the token's scopes (the response's `scope` is rewritten).
    pub scope_changed: bool,
    /// The custom claims that were set.
    pub claims: Map<String, Value>,
    pub ignored: Vec<Ignored>,
    pub logs: Vec<LogLine>,
    /// Each step of the flow that ran, for the runner's account of it.
    pub steps: Vec<StepRun>,
}

/// Why no token is issued: what the client gets and how the request is counted.
#[derive(Debug)]
pub struct Refused {
    pub outcome: Outcome,
    pub error: OAuthError,
    pub logs: Vec<LogLine>,
    /// The steps that ran, the last one the one that refused.
    pub steps: Vec<StepRun>,
}

impl Refused {
    pub fn new(outcome: Outcome, error: OAuthError) -> Self {
        Refused {
            outcome,
            error,
            logs: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl Exchanged {
    /// Rewrites the token response's `scope` member (RFC 6749 §5.1): kept as the IdP
    /// sent it unless the hook changed the scopes; then it says the new ones, and is
    /// absent when none are left.
    pub fn rewrite_response_scope(&self, doc: &mut Map<String, Value>) {
        if !(doc.contains_key("scope") || self.scope_changed) {
            return;
        }
        if self.scopes.is_empty() {
            doc.remove("scope");
        } else {
            doc.insert("scope".into(), Value::String(self.scopes.join(" ")));
        }
    }
}

/// Who the client is: from the verified token, not from request parameters a client
/// could set freely; the request's value is only a fallback.
fn client_id(payload: &Map<String, Value>, req: &TokenRequest, request_id: &str) -> String {
    let from_token = ["client_id", "azp"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            payload
                .get("sub")
                .and_then(Value::as_str)
                .map(|s| s.strip_suffix("@clients").unwrap_or(s).to_owned())
        });
    match (from_token, &req.client_id) {
        (Some(t), Some(r)) if &t != r => {
            tracing::warn!(request_id, token_client = %t, request_client = %r,
                "client id in the request differs from the token's; using the token's");
            t
        }
        (Some(t), _) => t,
        (None, r) => r.clone().unwrap_or_default(),
    }
}

/// The token's audience as the hook sees it: `aud`, the first one if it is an array.
fn audience(payload: &Map<String, Value>) -> Option<String> {
    match payload.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl Exchange<'_> {
    /// What the hook sees as `client`: from the registry, or `{id, name: id}` (D14).
    pub fn client_for(&self, id: &str) -> HookClient {
        let info = self.clients.get(id).cloned().unwrap_or_default();
        HookClient {
            id: id.to_owned(),
            name: info.name.unwrap_or_else(|| id.to_owned()),
            tenant: info.tenant,
            metadata: info.metadata,
        }
    }

    /// Runs the exchange for one verified IdP token.
    pub async fn run(
        &self,
        upstream: Map<String, Value>,
        req: &TokenRequest,
        peer: &Peer,
        request_id: &str,
    ) -> Result<Exchanged, Refused> {
        let Some(hook) = self.hook.as_deref() else {
            // No enabled hook and no flow: the token is re-signed as the IdP issued it.
            let applied = claims::apply_flow(upstream, None, None, self.policy).map_err(|e| {
                Refused::new(Outcome::HookError, OAuthError::server_error(e.to_string()))
            })?;
            return Ok(self.finish(applied, Vec::new()));
        };
        let call = HookCall {
            client: self.client_for(&client_id(&upstream, req, request_id)),
            scope: claims::token_scopes(&upstream),
            audience: audience(&upstream),
            requested_scope: req.scope.clone(),
            body: req.params.clone(),
            ip: peer.ip.clone(),
            user_agent: peer.user_agent.clone(),
            hostname: peer.hostname.clone(),
            language: peer.language.clone(),
            method: peer.method.clone().unwrap_or_else(|| "POST".into()),
            request_id: request_id.to_owned(),
        };
        let inv = hook.invoke(&call).await;
        if self.log_console {
            for s in &inv.steps {
                crate::hooks::emit_logs(hook.step(s.step), request_id, &s.logs);
            }
        }
        // Each step that ran is counted under its own name; the steps after a failed
        // one did not run and are not counted.
        if let Some((at, f)) = inv.failure() {
            for s in &inv.steps[..inv.steps.len() - 1] {
                hook.count(s.step, HookOutcome::Ok);
            }
            hook.count(at, f.hook_outcome());
            tracing::warn!(request_id, hook = hook.step(at), outcome = f.hook_outcome().label(),
                error = %f.error().description(), "hook failed");
            let outcome = f.request_outcome();
            let error = f.clone().into_error();
            return Err(Refused {
                outcome,
                error,
                logs: inv.logs(),
                steps: inv.steps,
            });
        }
        let merged = inv.merged();
        let applied = match claims::apply_flow(upstream, merged.hook, merged.actions, self.policy) {
            Ok(a) => a,
            Err(e) => {
                // The rules refused what the steps did together (D10): the last step
                // made it so.
                let last = inv.steps.last().map_or(0, |s| s.step);
                for s in &inv.steps {
                    let o = if s.step == last {
                        HookOutcome::Error
                    } else {
                        HookOutcome::Ok
                    };
                    hook.count(s.step, o);
                }
                return Err(Refused {
                    outcome: Outcome::HookError,
                    error: OAuthError::server_error(e.to_string()),
                    logs: inv.logs(),
                    steps: inv.steps,
                });
            }
        };
        for s in &inv.steps {
            hook.count(s.step, HookOutcome::Ok);
        }
        if !applied.ignored.is_empty() {
            if let Some(c) = self.ignored_claims {
                c.inc_by(applied.ignored.len() as u64);
            }
            for i in &applied.ignored {
                tracing::info!(request_id, hook = hook.name(), claim = %i.claim, reason = i.reason, "hook claim ignored");
            }
        }
        let logs = inv.logs();
        let mut out = self.finish(applied, logs);
        out.steps = inv.steps;
        Ok(out)
    }

    /// The signed payload's issuer, and the result.
    fn finish(&self, applied: claims::Applied, logs: Vec<LogLine>) -> Exchanged {
        let mut payload = applied.payload;
        let upstream_iss = payload.get("iss").and_then(Value::as_str);
        if let Some(iss) = self.issuer.issuer_for(upstream_iss) {
            let iss = Value::String(iss.to_owned());
            payload.insert("iss".into(), iss);
        }
        Exchanged {
            payload,
            scopes: applied.scopes,
            scope_changed: applied.scope_changed,
            claims: applied.claims,
            ignored: applied.ignored,
            logs,
            steps: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    // Breaks if a credential parameter reaches the hook's body, or if the Basic client
    // id stops taking precedence over the body's.
    #[test]
    fn credentials_never_reach_the_hook_body() {
        let mut p = params(
            json!({"grant_type": "client_credentials", "client_id": "body-id",
            "scope": "a  b", "audience": "https://api"}),
        );
        for k in SECRET_PARAMS {
            p.insert((*k).into(), json!("secret-value"));
        }
        let r = TokenRequest::from_params(p, Some("basic-id".into()));
        assert_eq!(r.client_id.as_deref(), Some("basic-id"));
        assert_eq!(r.scope, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert!(r.is_client_credentials());
        for k in SECRET_PARAMS {
            assert!(!r.params.contains_key(*k), "{k}");
        }
        assert_eq!(r.params["client_id"], "body-id");
        assert_eq!(r.params["audience"], "https://api");
    }

    #[test]
    fn client_id_comes_from_the_token_first() {
        let req = TokenRequest {
            client_id: Some("from-request".into()),
            ..Default::default()
        };
        let token = |v: Value| params(v);
        assert_eq!(
            client_id(&token(json!({"client_id": "a", "azp": "b"})), &req, "r"),
            "a"
        );
        assert_eq!(client_id(&token(json!({"azp": "b"})), &req, "r"), "b");
        assert_eq!(
            client_id(&token(json!({"sub": "c@clients"})), &req, "r"),
            "c"
        );
        assert_eq!(client_id(&token(json!({})), &req, "r"), "from-request");
    }

    #[test]
    fn response_scope_follows_the_hook() {
        let ex = |scopes: &[&str], changed| Exchanged {
            payload: Map::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scope_changed: changed,
            claims: Map::new(),
            ignored: Vec::new(),
            logs: Vec::new(),
            steps: Vec::new(),
        };
        let mut doc = params(json!({"access_token": "t", "scope": "a"}));
        ex(&["a"], false).rewrite_response_scope(&mut doc);
        assert_eq!(doc["scope"], "a");
        ex(&["a", "extra"], true).rewrite_response_scope(&mut doc);
        assert_eq!(doc["scope"], "a extra");
        ex(&[], true).rewrite_response_scope(&mut doc);
        assert!(!doc.contains_key("scope"));
        // The IdP sent no scope and the hook added one: the client learns of it.
        let mut doc = params(json!({"access_token": "t"}));
        ex(&["extra"], true).rewrite_response_scope(&mut doc);
        assert_eq!(doc["scope"], "extra");
        let mut doc = params(json!({"access_token": "t"}));
        ex(&["a"], false).rewrite_response_scope(&mut doc);
        assert!(!doc.contains_key("scope"));
    }
}
