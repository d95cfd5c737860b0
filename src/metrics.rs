//! Prometheus metrics: one struct registered once; the hot path holds its handles
//! instead of looking metrics up by name.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Routes, a bounded label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Token,
    Jwks,
    Discovery,
    Passthrough,
}

impl Route {
    pub const ALL: [Route; 4] = [
        Route::Token,
        Route::Jwks,
        Route::Discovery,
        Route::Passthrough,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Jwks => "jwks",
            Route::Discovery => "discovery",
            Route::Passthrough => "passthrough",
        }
    }
}

/// How a request ended: the `outcome` label of `tokenhook_requests_total` and of the
/// access log line. One closed set, so a new outcome cannot be miscounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as intended (a re-signed token, the JWKS, the discovery document).
    Ok,
    /// Relayed from the IdP unchanged (another grant type, an opaque token, other paths).
    Passthrough,
    /// The IdP refused the client_credentials request; its answer is relayed.
    UpstreamDenied,
    /// The IdP could not be reached or answered unusably.
    UpstreamError,
    /// The IdP's token failed verification and was not re-signed.
    InvalidUpstreamToken,
    /// The hook denied the request.
    Denied,
    HookError,
    HookTimeout,
    /// The hook queue was full.
    HookRejected,
    /// The client's request was refused before reaching the IdP.
    Rejected,
    /// The IdP answered a request outside the token route with one of its own tokens,
    /// which was not relayed.
    TokenBlocked,
    /// Anything else: an internal failure, or the client went away.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 12] = [
        Outcome::Ok,
        Outcome::Passthrough,
        Outcome::UpstreamDenied,
        Outcome::UpstreamError,
        Outcome::InvalidUpstreamToken,
        Outcome::Denied,
        Outcome::HookError,
        Outcome::HookTimeout,
        Outcome::HookRejected,
        Outcome::Rejected,
        Outcome::TokenBlocked,
        Outcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Passthrough => "passthrough",
            Outcome::UpstreamDenied => "upstream_denied",
            Outcome::UpstreamError => "upstream_error",
            Outcome::InvalidUpstreamToken => "invalid_upstream_token",
            Outcome::Denied => "denied",
            Outcome::HookError => "hook_error",
            Outcome::HookTimeout => "hook_timeout",
            Outcome::HookRejected => "hook_rejected",
            Outcome::Rejected => "rejected",
            Outcome::TokenBlocked => "token_blocked",
            Outcome::Error => "error",
        }
    }
}

/// How one hook run ended: the `outcome` label of `tokenhook_hook_executions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    Ok,
    Denied,
    Error,
    Timeout,
    Rejected,
}

impl HookOutcome {
    pub const ALL: [HookOutcome; 5] = [
        HookOutcome::Ok,
        HookOutcome::Denied,
        HookOutcome::Error,
        HookOutcome::Timeout,
        HookOutcome::Rejected,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HookOutcome::Ok => "ok",
            HookOutcome::Denied => "denied",
            HookOutcome::Error => "error",
            HookOutcome::Timeout => "timeout",
            HookOutcome::Rejected => "rejected",
        }
    }
}

/// How one `fetch` from a hook ended: the `outcome` label of
/// `tokenhook_hook_fetch_total`. Closed, like the other outcome sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// An answer came back, whatever its status.
    Ok,
    /// The egress policy refused it: origin not allowed, address refused, too many
    /// redirects or requests.
    Refused,
    Timeout,
    /// The request or the response body was over its limit.
    TooLarge,
    /// Anything else: a bad request from the hook, a connection or TLS failure.
    Error,
}

impl FetchOutcome {
    pub const ALL: [FetchOutcome; 5] = [
        FetchOutcome::Ok,
        FetchOutcome::Refused,
        FetchOutcome::Timeout,
        FetchOutcome::TooLarge,
        FetchOutcome::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FetchOutcome::Ok => "ok",
            FetchOutcome::Refused => "refused",
            FetchOutcome::Timeout => "timeout",
            FetchOutcome::TooLarge => "too_large",
            FetchOutcome::Error => "error",
        }
    }
}

/// `tokenhook_requests_total` resolved once for every route and outcome, indexed by the
/// enums' positions: counting a request is an array index, never a label lookup.
pub struct RequestCounters([[IntCounter; Outcome::ALL.len()]; Route::ALL.len()]);

impl RequestCounters {
    fn new(vec: &IntCounterVec) -> Self {
        RequestCounters(
            Route::ALL
                .map(|r| Outcome::ALL.map(|o| vec.with_label_values(&[r.as_str(), o.label()]))),
        )
    }

    pub fn get(&self, route: Route, outcome: Outcome) -> &IntCounter {
        &self.0[route as usize][outcome as usize]
    }
}

/// One hook's `tokenhook_hook_executions_total` handles, by outcome.
pub struct HookCounters([IntCounter; HookOutcome::ALL.len()]);

impl HookCounters {
    pub fn new(vec: &IntCounterVec, hook: &str) -> Self {
        HookCounters(HookOutcome::ALL.map(|o| vec.with_label_values(&[hook, o.label()])))
    }

    pub fn get(&self, outcome: HookOutcome) -> &IntCounter {
        &self.0[outcome as usize]
    }
}

/// One hook's `tokenhook_hook_fetch_total` handles, by outcome, and its
/// `tokenhook_hook_fetch_duration_seconds` histogram.
pub struct FetchCounters {
    outcomes: [IntCounter; FetchOutcome::ALL.len()],
    pub duration: Histogram,
}

impl FetchCounters {
    pub fn new(outcomes: &IntCounterVec, durations: &HistogramVec, hook: &str) -> Self {
        FetchCounters {
            outcomes: FetchOutcome::ALL.map(|o| outcomes.with_label_values(&[hook, o.label()])),
            duration: durations.with_label_values(&[hook]),
        }
    }

    pub fn get(&self, outcome: FetchOutcome) -> &IntCounter {
        &self.outcomes[outcome as usize]
    }
}

/// Hot-path stages with their own duration histogram.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Upstream,
    Verify,
    Hook,
    Sign,
}

pub struct StageHistograms {
    pub upstream: Histogram,
    pub verify: Histogram,
    pub hook: Histogram,
    pub sign: Histogram,
    pub total: Histogram,
}

impl StageHistograms {
    pub fn get(&self, s: Stage) -> &Histogram {
        match s {
            Stage::Upstream => &self.upstream,
            Stage::Verify => &self.verify,
            Stage::Hook => &self.hook,
            Stage::Sign => &self.sign,
        }
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: RequestCounters,
    pub stages: StageHistograms,
    pub hook_outcomes: IntCounterVec,
    pub hook_ignored_claims: IntCounter,
    pub jwks_refreshes: IntCounterVec,
    pub upstream_jwks_age: prometheus::Gauge,
    pub signing_key_info: prometheus::IntGaugeVec,
    pub signing_key_age: prometheus::GaugeVec,
    pub key_reloads: IntCounterVec,
    pub build_info: prometheus::IntGaugeVec,
    pub ready: IntGauge,
    pub hook_reloads: IntCounterVec,
    pub hook_queue_depth: IntGauge,
    pub hook_workers_busy: IntGauge,
    pub hook_workers_up: IntGauge,
    pub hook_workers_replaced: IntCounter,
    pub hook_fetches: IntCounterVec,
    pub hook_fetch_duration: HistogramVec,
}

/// 50 µs to 5 s, roughly ×2 per bucket: resolves both a warm hook call and a slow IdP.
pub const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tokenhook_requests_total",
                "Requests handled, by route and outcome.",
            ),
            &["route", "outcome"],
        )
        .expect("valid metric");
        let stage = HistogramVec::new(
            HistogramOpts::new(
                "tokenhook_stage_duration_seconds",
                "Time spent per stage of the token path.",
            )
            .buckets(BUCKETS.to_vec()),
            &["stage"],
        )
        .expect("valid metric");
        let hook_outcomes = IntCounterVec::new(
            Opts::new(
                "tokenhook_hook_executions_total",
                "Hook executions, by hook and outcome.",
            ),
            &["hook", "outcome"],
        )
        .expect("valid metric");
        let hook_ignored_claims = IntCounter::new(
            "tokenhook_hook_ignored_claims_total",
            "Claims a hook set that were dropped (restricted or not namespaced).",
        )
        .expect("valid metric");
        let jwks_refreshes = IntCounterVec::new(
            Opts::new(
                "tokenhook_upstream_jwks_refreshes_total",
                "Upstream JWKS fetches, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let upstream_jwks_age = prometheus::Gauge::new(
            "tokenhook_upstream_jwks_age_seconds",
            "Seconds since the upstream JWKS was last fetched successfully.",
        )
        .expect("valid metric");
        let signing_key_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "tokenhook_signing_key_info",
                "Published signing keys, by kid, algorithm and state (active, next, retired).",
            ),
            &["kid", "alg", "state"],
        )
        .expect("valid metric");
        let signing_key_age = prometheus::GaugeVec::new(
            Opts::new(
                "tokenhook_signing_key_age_seconds",
                "Seconds since each published key's file was written.",
            ),
            &["kid", "state"],
        )
        .expect("valid metric");
        let key_reloads = IntCounterVec::new(
            Opts::new(
                "tokenhook_signing_key_reloads_total",
                "Reloads of the signing key files, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new("tokenhook_build_info", "Build information."),
            &["version"],
        )
        .expect("valid metric");
        let ready = IntGauge::new(
            "tokenhook_ready",
            "1 when the sidecar is ready to serve tokens.",
        )
        .expect("valid metric");
        let hook_reloads = IntCounterVec::new(
            Opts::new(
                "tokenhook_hook_reloads_total",
                "Hot reloads of the hooks folder, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let hook_queue_depth = IntGauge::new(
            "tokenhook_hook_queue_depth",
            "Hook calls waiting for a worker.",
        )
        .expect("valid metric");
        let hook_workers_busy = IntGauge::new(
            "tokenhook_hook_workers_busy",
            "Hook workers running a call.",
        )
        .expect("valid metric");
        let hook_workers_up = IntGauge::new(
            "tokenhook_hook_workers_up",
            "Hook worker processes running.",
        )
        .expect("valid metric");
        let hook_workers_replaced = IntCounter::new(
            "tokenhook_hook_workers_replaced_total",
            "Hook worker processes killed (over their time limit) or crashed (out of memory) and replaced.",
        )
        .expect("valid metric");
        let hook_fetches = IntCounterVec::new(
            Opts::new(
                "tokenhook_hook_fetch_total",
                "Requests hooks made with fetch, by hook and outcome.",
            ),
            &["hook", "outcome"],
        )
        .expect("valid metric");
        let hook_fetch_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokenhook_hook_fetch_duration_seconds",
                "Time one fetch from a hook took, redirects and body included.",
            )
            .buckets(BUCKETS.to_vec()),
            &["hook"],
        )
        .expect("valid metric");
        for c in [
            Box::new(hook_fetches.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(hook_fetch_duration.clone()),
            Box::new(hook_reloads.clone()),
            Box::new(hook_queue_depth.clone()),
            Box::new(hook_workers_busy.clone()),
            Box::new(hook_workers_up.clone()),
            Box::new(hook_workers_replaced.clone()),
            Box::new(requests.clone()),
            Box::new(stage.clone()),
            Box::new(hook_outcomes.clone()),
            Box::new(hook_ignored_claims.clone()),
            Box::new(jwks_refreshes.clone()),
            Box::new(upstream_jwks_age.clone()),
            Box::new(signing_key_info.clone()),
            Box::new(signing_key_age.clone()),
            Box::new(key_reloads.clone()),
            Box::new(build_info.clone()),
            Box::new(ready.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // CPU, memory, file descriptors and start time of the sidecar process.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let stages = StageHistograms {
            upstream: stage.with_label_values(&["upstream"]),
            verify: stage.with_label_values(&["verify"]),
            hook: stage.with_label_values(&["hook"]),
            sign: stage.with_label_values(&["sign"]),
            total: stage.with_label_values(&["total"]),
        };
        Metrics {
            registry,
            requests: RequestCounters::new(&requests),
            stages,
            hook_outcomes,
            hook_ignored_claims,
            jwks_refreshes,
            upstream_jwks_age,
            signing_key_info,
            signing_key_age,
            key_reloads,
            build_info,
            ready,
            hook_reloads,
            hook_queue_depth,
            hook_workers_busy,
            hook_workers_up,
            hook_workers_replaced,
            hook_fetches,
            hook_fetch_duration,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
