//! Every metric platform emits, declared once: a name constant per metric
//! (call sites use these, never a literal) and [`describe`], which gives
//! each its unit and help text. The telemetry set-up calls it once the
//! Prometheus recorder is installed, so `/metrics` shows `# HELP` for each.
//!
//! The RED metrics of a service's routes carry the service's name
//! (`quintet_<service>_http_…`): [`RouteNames`] builds and describes them
//! when the service's routes are stacked.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Connections open now (gauge).
pub const HTTP_CONNECTIONS_OPEN: &str = "quintet_http_connections_open";
/// Connections the server closed, by `reason` (idle, evicted, refused, …).
pub const HTTP_CONNECTIONS_CLOSED_TOTAL: &str = "quintet_http_connections_closed_total";
/// Requests answered 503 (or gRPC `DEADLINE_EXCEEDED`) by the request timeout.
pub const REQUEST_TIMEOUTS_TOTAL: &str = "quintet_request_timeouts_total";
/// Clients the per-client rate limiter is tracking (gauge).
pub const RATE_LIMIT_CLIENTS: &str = "quintet_rate_limit_clients";
/// Requests refused with 429 by the per-client rate limit.
pub const RATE_LIMITED_TOTAL: &str = "quintet_rate_limited_total";
/// Failed authentications answered 429 because the address failed too often.
pub const AUTH_FAILURES_THROTTLED_TOTAL: &str = "quintet_auth_failures_throttled_total";
/// Operations per group-commit transaction, by `store` (histogram).
pub const STORE_COMMIT_BATCH_SIZE: &str = "quintet_store_commit_batch_size";
/// Seconds one group-commit transaction took to become durable (its writes
/// and its fsync), by `store` (histogram).
pub const STORE_COMMIT_SECONDS: &str = "quintet_store_commit_seconds";
/// 1 while the process is ready (every readiness check passes and it is not
/// shutting down), else 0; evaluated every 2 s and on each `/readyz`.
pub const READY: &str = "quintet_ready";
/// 1 while the readiness check `check` passes, else 0.
pub const READINESS_CHECK_UP: &str = "quintet_readiness_check_up";
/// Spans sent to the OTLP collector (`--otlp-endpoint`).
pub const TRACE_SPANS_EXPORTED_TOTAL: &str = "quintet_trace_spans_exported_total";
/// Batches of spans the OTLP collector did not take (the spans are lost).
pub const TRACE_EXPORT_FAILURES_TOTAL: &str = "quintet_trace_export_failures_total";

/// A count (connections, clients, batch size) as the `f64` a gauge or histogram
/// records: exact up to 2^53, far beyond any count platform keeps.
// The one place counts become f64.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn count(n: usize) -> f64 {
    n as f64
}

/// Describes every metric above (unit and help) to the installed recorder.
pub fn describe() {
    describe_gauge!(
        HTTP_CONNECTIONS_OPEN,
        Unit::Count,
        "Connections open on the listener now."
    );
    describe_counter!(
        HTTP_CONNECTIONS_CLOSED_TOTAL,
        Unit::Count,
        "Connections the server closed, by reason (handshake_timeout, tls_failed, idle, \
         evicted, refused)."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 while the process is ready (every readiness check passes, not shutting down), \
         else 0; evaluated every 2 s and on each /readyz."
    );
    describe_gauge!(
        READINESS_CHECK_UP,
        Unit::Count,
        "1 while the readiness check `check` passes (a store, queue, ledger or event log), \
         else 0."
    );
    describe_counter!(
        TRACE_SPANS_EXPORTED_TOTAL,
        Unit::Count,
        "Spans the OTLP collector took (--otlp-endpoint)."
    );
    describe_counter!(
        TRACE_EXPORT_FAILURES_TOTAL,
        Unit::Count,
        "Batches of spans the OTLP collector did not take; their spans are lost \
         (--otlp-endpoint)."
    );
    describe_counter!(
        REQUEST_TIMEOUTS_TOTAL,
        Unit::Count,
        "Requests cut off by --request-timeout (503 or gRPC DEADLINE_EXCEEDED)."
    );
    describe_gauge!(
        RATE_LIMIT_CLIENTS,
        Unit::Count,
        "Clients (tokens or addresses) the per-client rate limiter is tracking."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Requests refused with 429 by the per-client rate limit (--rate-limit)."
    );
    describe_counter!(
        AUTH_FAILURES_THROTTLED_TOTAL,
        Unit::Count,
        "Failed authentications answered 429 because their address failed too often \
         (--auth-failure-limit)."
    );
    describe_histogram!(
        STORE_COMMIT_BATCH_SIZE,
        Unit::Count,
        "Operations committed together in one embedded-store transaction, by store."
    );
    describe_histogram!(
        STORE_COMMIT_SECONDS,
        Unit::Seconds,
        "Time one group-commit transaction took to become durable (writes and fsync), by store."
    );
}

/// The RED metric names of one service's routes.
#[derive(Debug, Clone, Copy)]
pub struct RouteNames {
    /// `quintet_<service>_http_requests_total{method,route,status}`.
    pub requests_total: &'static str,
    /// `quintet_<service>_http_request_duration_seconds{method,route,status}`.
    pub request_duration_seconds: &'static str,
    /// `quintet_<service>_http_requests_in_flight{method,route}`.
    pub requests_in_flight: &'static str,
}

impl RouteNames {
    /// The names for `service`, described to the installed recorder. Leaked
    /// on purpose: three short strings per service for the process's life.
    pub fn for_service(service: &str) -> Self {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let names = Self {
            requests_total: leak(format!("quintet_{service}_http_requests_total")),
            request_duration_seconds: leak(format!(
                "quintet_{service}_http_request_duration_seconds"
            )),
            requests_in_flight: leak(format!("quintet_{service}_http_requests_in_flight")),
        };
        describe_counter!(
            names.requests_total,
            Unit::Count,
            format!("Requests to the {service} routes answered, by method, route and status.")
        );
        describe_histogram!(
            names.request_duration_seconds,
            Unit::Seconds,
            format!(
                "Time from the headers of a {service} request to its response, by method, route and \
                 status."
            )
        );
        describe_gauge!(
            names.requests_in_flight,
            Unit::Count,
            format!("{service} requests being handled now, by method and route.")
        );
        names
    }
}
