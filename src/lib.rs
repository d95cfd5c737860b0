//! tokenhook: Auth0-style token hooks for any OAuth 2.0 identity provider.
//!
//! Request flow (see README for the diagram):
//! client → pingora listener (`proxy`) → for `POST {token_path}` with
//! `grant_type=client_credentials`: the IdP is called through pingora's pooled connector
//! (`upstream`), its JWT verified against its JWKS (`token::verify`, keys cached), the
//! enabled hook run on a dedicated worker (`hooks`: each worker thread owns one Boa
//! context with the hook compiled once), the result applied by Auth0's rules
//! (`token::claims`) and re-signed with our pre-parsed key (`keys`, `token::sign`) on
//! tokio's blocking pool. Every other request streams to the IdP untouched.
//!
//! Threads: pingora's service runtimes (I/O only, never JS or signing), N hook worker
//! threads, tokio's blocking pool for signatures, one admin thread.
//!
//! Keys: parsed once at startup into signing form; the JWKS document is serialized once.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod hooks;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod telemetry;
pub mod token;
pub mod upstream;
