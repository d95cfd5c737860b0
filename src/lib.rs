//! tokenhook: Auth0-style token hooks for any OAuth 2.0 identity provider.
//!
//! Request flow (see README for the diagram):
//! client → pingora listener (`proxy`) → for `POST {token_path}` with
//! `grant_type=client_credentials`: the IdP is called through pingora's pooled connector
//! (`upstream`), its JWT verified against its JWKS (`token::verify`, keys cached), the
//! enabled hook run in a worker process (`hooks`: each worker owns one Boa context with
//! the hook compiled once, and can be killed when it overruns), the result applied by
//! Auth0's rules (`token::claims`) and re-signed with our pre-parsed key (`keys`,
//! `token::sign`). Every other request streams to the IdP untouched.
//!
//! Threads: pingora's service runtimes (I/O and cheap EC/Ed25519 signatures, never JS),
//! one thread per hook worker process plus a watchdog, tokio's blocking pool for RSA
//! signatures, one admin thread, and pollers for hot reload of hooks and keys.
//!
//! Keys: parsed once at startup into signing form; the JWKS document is serialized once.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod connections;
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
