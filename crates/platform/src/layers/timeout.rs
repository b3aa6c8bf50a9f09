//! Request timeout: a request that has not produced its response within
//! `--request-timeout` is answered 503 and its handler future dropped.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::ErrorResponse;

/// The answer of a request cut at `limit`: 503, or gRPC `DEADLINE_EXCEEDED`.
pub fn timed_out(limit: Duration, grpc: bool) -> Response {
    metrics::counter!(crate::metrics::REQUEST_TIMEOUTS_TOTAL).increment(1);
    let message = format!(
        "request timed out after {}",
        humantime::format_duration(limit)
    );
    if grpc {
        tonic::Status::deadline_exceeded(message).into_http()
    } else {
        ErrorResponse::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    }
}
