//! Telling gRPC calls from REST calls on the shared listener: a gRPC caller
//! gets its errors as `grpc-status`, not as an HTTP status and JSON body.

/// True for gRPC requests, whose errors must travel as `grpc-status`, not HTTP status.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
