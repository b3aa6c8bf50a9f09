//! The one JSON error shape every REST route answers with: `{"error": "<what was wrong>"}`.
//! Services decide the status for each of their errors (in their `api/http.rs`);
//! this type only renders it.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

/// An error answer: a status and a message meant for the caller.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// What the body's `error` says.
    pub message: String,
    /// What the caller may not see (a driver's or SDK's text: hosts, SQL,
    /// request details): logged with the request id, never sent.
    detail: Option<String>,
}

/// The hidden detail of a server error, carried from the handler to the
/// observe layer, which logs it with the request id and puts the request id
/// in the body (see `layers::observe`).
#[derive(Debug, Clone)]
pub(crate) struct HiddenDetail {
    /// What the body says instead (`messages store unavailable; retry later`).
    pub(crate) class: String,
    /// The text that stays in the log.
    pub(crate) detail: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in words meant for the caller.
    pub error: String,
}

impl ErrorResponse {
    /// An answer with `status` whose body says `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
        }
    }

    /// A failure behind the service (store, queue, key provider): the body
    /// says only `class` (e.g. `messages store unavailable; retry later`) and
    /// the request id; `detail` goes to the log under that request id.
    // By value, as the handlers hand over the error they are done with.
    #[allow(clippy::needless_pass_by_value)]
    pub fn hidden(status: StatusCode, class: impl Into<String>, detail: impl ToString) -> Self {
        Self {
            status,
            message: class.into(),
            detail: Some(detail.to_string()),
        }
    }

    /// Maps a failure to read the request body: over the size limit → 413, else 400.
    // By value, as `map_err` hands over the rejection it is done with.
    #[allow(clippy::needless_pass_by_value)]
    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes"),
            )
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                format!("could not read request body: {rejection}"),
            )
        }
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let hidden = self.detail.map(|detail| HiddenDetail {
            class: self.message.clone(),
            detail,
        });
        let body = Json(ErrorBody {
            error: self.message,
        });
        let mut response = (self.status, body).into_response();
        if let Some(hidden) = hidden {
            response.extensions_mut().insert(hidden);
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read, so this connection cannot
            // carry another request: say so, or a client may send its next
            // one on it while the server closes it.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        if unavailable {
            // Every 503 here is transient (a store, a queue, a limit): say when to come back.
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// The media type of a request body, lowercased and without parameters
/// (`Application/JSON; charset=utf-8` → `application/json`); `None` if absent.
pub fn media_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .unwrap_or("");
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The answer for a path no service routes.
fn not_found(method: &http::Method, uri: &http::Uri) -> ErrorResponse {
    ErrorResponse::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// Fallback for unrouted requests: gRPC callers get UNIMPLEMENTED, others a JSON 404.
pub async fn not_found_or_unimplemented(req: axum::extract::Request) -> Response {
    if crate::grpc::is_grpc(req.headers()) {
        return tonic::Status::unimplemented(format!("no gRPC method {}", req.uri().path()))
            .into_http();
    }
    not_found(req.method(), req.uri()).into_response()
}
