//! Bearer-token authentication for service routes (HTTP `Authorization`
//! header and gRPC metadata alike, since gRPC metadata is HTTP/2 headers).
//!
//! Only SHA-256 hashes of the configured tokens are kept; comparison is
//! constant-time. A token never appears in a log line or an error message.
//!
//! A configured token is `secret`, `name:secret` or `name:secret:admin`: the
//! name is for the operator (log lines name it, never the secret), and the
//! `admin` scope is what the admin routes (`/admin/…`, e.g. kv's key
//! rotation) require. A token without it may call every service route but no
//! admin route (403).

use crate::error::ErrorResponse;
use crate::grpc::is_grpc;
pub use crate::tokens::{Caller, TokenSet};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Extracts the token from `Authorization: Bearer <token>`.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: resolves the [`Caller`] and refuses unauthenticated calls when tokens are configured.
/// Checks the bearer token and records the caller in the request's
/// extensions; the refusal, if any, is the 401 (or gRPC UNAUTHENTICATED) answer.
pub fn authenticate(tokens: &TokenSet, req: &mut Request) -> Option<Response> {
    let presented = bearer(req.headers());
    let caller = match presented {
        Some(token) => tokens.identify(token),
        None => None,
    };
    if tokens.is_empty() {
        req.extensions_mut()
            .insert(caller.unwrap_or(Caller::Anonymous));
        return None;
    }
    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
        None
    } else {
        let (message, error) = match presented {
            None => (
                "missing bearer token: send 'Authorization: Bearer <token>'",
                "invalid_request",
            ),
            Some(_) => ("invalid bearer token", "invalid_token"),
        };
        if is_grpc(req.headers()) {
            return Some(tonic::Status::unauthenticated(message).into_http());
        }
        let mut response = ErrorResponse::new(StatusCode::UNAUTHORIZED, message).into_response();
        let challenge = format!("Bearer realm=\"quintet\", error=\"{error}\"");
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Some(response)
    }
}

/// The 403 (gRPC `PERMISSION_DENIED`) answer for an admin route called
/// without the admin scope; `None` for other routes and for admins.
pub fn require_admin(tokens: &TokenSet, req: &Request) -> Option<Response> {
    if !req.uri().path().starts_with("/admin/") {
        return None;
    }
    let caller = req
        .extensions()
        .get::<Caller>()
        .copied()
        .unwrap_or(Caller::Anonymous);
    if caller.is_admin(tokens) {
        return None;
    }
    let message = "this route needs a token with the admin scope: configure one as \
                   name:secret:admin in --tokens or --tokens-file";
    if is_grpc(req.headers()) {
        return Some(tonic::Status::permission_denied(message).into_http());
    }
    Some(ErrorResponse::new(StatusCode::FORBIDDEN, message).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
