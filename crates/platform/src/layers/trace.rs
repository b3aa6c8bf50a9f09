//! The server span of a service request, stacked only when traces are
//! exported (`--otlp-endpoint`; see [`crate::trace`]): its parent is the
//! caller's `traceparent`, its name the route (`POST /messages`) or, for
//! gRPC, the method (`calc.Calculator/Add`), and it carries the status the
//! request was answered with.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

/// Runs the request inside its server span.
pub async fn span(request: Request, next: Next) -> Response {
    let grpc = crate::grpc::is_grpc(request.headers());
    // Always the route template, never the path: a span name must not be
    // whatever a client sends. Each gRPC method has its own route (see
    // `service::grpc_router`), so its template is its path.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let name = if grpc {
        route.trim_start_matches('/').to_owned()
    } else {
        format!("{} {route}", request.method())
    };
    let span = tracing::info_span!(
        "request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = Empty,
        rpc.system = Empty,
        rpc.grpc.status_code = Empty,
    );
    if grpc {
        span.record("rpc.system", "grpc");
    }
    crate::trace::follow_headers(&span, request.headers());
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    // A gRPC error answered at once carries grpc-status in the headers
    // (a trailers-only response); one sent later, in trailers.
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    if let Some(code) = grpc_status {
        span.record("rpc.grpc.status_code", code);
    }
    // The server's own failures only (OpenTelemetry's rule for server
    // spans): a 4xx or a refused argument is the caller's.
    let grpc_failed = grpc_status.is_some_and(|c| matches!(c, 2 | 4 | 12 | 13 | 14 | 15));
    if status.is_server_error() || grpc_failed {
        span.record("otel.status_code", "ERROR");
    }
    response
}
