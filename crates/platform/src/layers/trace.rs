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
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    // A gRPC service is routed by a wildcard: its method is the path, when
    // it looks like one (the path is the caller's: a span name must not be
    // whatever a client sends).
    let path = request.uri().path();
    let route = match request.extensions().get::<MatchedPath>() {
        _ if grpc && looks_like_a_grpc_method(path) => path,
        Some(matched) => matched.as_str(),
        None => "unmatched",
    }
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

/// `/package.Service/Method`: at most 200 bytes of ASCII letters, digits,
/// `.` and `_`, one `/` inside.
fn looks_like_a_grpc_method(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= 200
        && rest.bytes().filter(|b| *b == b'/').count() == 1
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::looks_like_a_grpc_method;

    #[test]
    fn only_method_shaped_paths_name_a_grpc_span() {
        assert!(looks_like_a_grpc_method("/quintet.calc.v1.Calculator/Add"));
        assert!(looks_like_a_grpc_method("/grpc.health.v1.Health/Check"));
        for path in [
            "quintet.calc.v1.Calculator/Add",
            "/quintet.calc.v1.Calculator/Add/more",
            "/quintet.calc.v1.Calculator",
            "/quintet.calc.v1.Calculator/%00",
            &format!("/a.B/{}", "x".repeat(300)),
        ] {
            assert!(!looks_like_a_grpc_method(path), "{path}");
        }
    }
}
