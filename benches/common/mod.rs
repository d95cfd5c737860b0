//! The token request both benchmark programs run hooks for (`benches/hot_path.rs` and
//! `examples/pool_load.rs`), so their numbers describe the same call.

use tokenhook::hooks::{HookCall, HookClient};

/// The bench stub's client with the metadata the example hooks read.
pub fn call() -> HookCall {
    HookCall {
        client: HookClient {
            id: "svc-basic".into(),
            name: "Billing sync".into(),
            tenant: Some("acme".into()),
            metadata: [
                ("region", "eu"),
                ("plan", "enterprise"),
                ("team", "payments"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        },
        scope: Some(vec!["read:data".into(), "write:data".into()]),
        audience: Some("https://api.example.com".into()),
        requested_scope: None,
        body: serde_json::json!({"grant_type": "client_credentials"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        ip: Some("203.0.113.7".into()),
        method: "POST".into(),
        ..Default::default()
    }
}
