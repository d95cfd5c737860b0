//! tokenhook: Auth0-style token hooks for any OAuth 2.0 identity provider.
//!
//! Request flow (see README for the diagram): client → pingora listener (`proxy`) →
//! paths are normalised once (`routes`) and matched against the routes the config
//! normalised at startup. For `POST {token_path}`, `proxy::token_route` does the I/O:
//! it reads and parses the request, calls the IdP through pingora's pooled connector
//! (`upstream`), verifies the IdP's JWT against its JWKS (`token::verify`, keys cached),
//! hands claims and request facts to the exchange core (`exchange`: the hook, Auth0's
//! claim and scope rules in `token::claims`, our issuer), and signs the result with our
//! pre-parsed key (`keys`, `token::sign`). `tokenhook hooks run` (`runner`) calls the
//! same core. Every other request streams to the IdP untouched.
//!
//! Processes and threads: pingora's service runtimes do the I/O and the cheap EC/Ed25519
//! signatures, never JS; RSA signatures go to tokio's blocking pool. Hooks run in
//! worker processes of this same binary (`hooks::pool`), each owning one Boa context with
//! the hook compiled once, driven by async tasks on the proxy's runtime over
//! non-blocking pipes, and killed and replaced when a call overruns or the worker
//! crashes. One admin thread serves `/healthz`, `/readyz` and `/metrics`; background
//! services refresh the IdP's JWKS and poll the key files and hooks folder for hot
//! reload (`keys::KeyStore`, `hooks::HookSlot`).
//!
//! Keys: parsed once at load into signing form; the JWKS document is serialized once per
//! key set. Metric handles are resolved once (`metrics`); outcomes and OAuth errors are
//! closed enums (`metrics::Outcome`, `error::ErrorCode`).
#![forbid(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod app;
pub mod cli;
pub(crate) mod client_ip;
pub mod config;
pub(crate) mod connections;
pub(crate) mod demo;
pub(crate) mod discovery;
pub mod egress;
pub mod error;
pub(crate) mod exchange;
/// Fuzz target bodies for `fuzz/` and `tests/fuzz_smoke.rs`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
pub(crate) mod import;
pub mod keys;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub(crate) mod reload;
pub mod routes;
pub(crate) mod runner;
pub(crate) mod server;
pub(crate) mod telemetry;
pub mod token;
pub(crate) mod upstream;
