//! Request timeout: a request that has not produced its response within
//! `--request-timeout` is answered 503 and its handler future dropped.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::ErrorResponse;

/// Runs the rest of the stack within `limit`, or answers 503 (gRPC `DEADLINE_EXCEEDED`).
pub async fn run(limit: Duration, req: Request, next: Next) -> Response {
    let grpc = crate::grpc::is_grpc(req.headers());
    if let Ok(response) = tokio::time::timeout(limit, next.run(req)).await {
        response
    } else {
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
}
