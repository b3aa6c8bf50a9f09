//! Bearer-token authentication for service routes (HTTP `Authorization`
//! header and gRPC metadata alike, since gRPC metadata is HTTP/2 headers).
//!
//! Only SHA-256 hashes of the configured tokens are kept; comparison is
//! constant-time. A token never appears in a log line or an error message.

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ErrorResponse;

/// Who is calling: a configured token (by a short fingerprint) or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Token([u8; 8]),
    Anonymous,
}

/// The accepted bearer tokens, kept as SHA-256 hashes.
#[derive(Clone, Default)]
pub struct TokenSet {
    hashes: Arc<Vec<[u8; 32]>>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet([redacted; {}])", self.hashes.len())
    }
}

impl TokenSet {
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Self {
        let hashes = tokens
            .into_iter()
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect();
        Self {
            hashes: Arc::new(hashes),
        }
    }

    /// True when no token is configured and the service routes are open.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Returns the caller a presented token identifies, if it is one of ours.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0u8);
        for known in self.hashes.iter() {
            found |= known.ct_eq(&hash);
        }
        if bool::from(found) {
            let mut id = [0u8; 8];
            id.copy_from_slice(&hash[..8]);
            Some(Caller::Token(id))
        } else {
            None
        }
    }
}

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
    match caller {
        Some(caller) => {
            req.extensions_mut().insert(caller);
            None
        }
        None => {
            let (message, error) = match presented {
                None => (
                    "missing bearer token: send 'Authorization: Bearer <token>'",
                    "invalid_request",
                ),
                Some(_) => ("invalid bearer token", "invalid_token"),
            };
            if super::is_grpc(req.headers()) {
                return Some(tonic::Status::unauthenticated(message).into_http());
            }
            let mut response =
                ErrorResponse::new(StatusCode::UNAUTHORIZED, message).into_response();
            let challenge = format!("Bearer realm=\"quintet\", error=\"{error}\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            Some(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_token_is_identified_and_unknown_is_not() {
        let set = TokenSet::new(["alpha".to_owned(), "beta".to_owned()]);
        assert!(matches!(set.identify("beta"), Some(Caller::Token(_))));
        assert_ne!(set.identify("alpha"), set.identify("beta"));
        assert_eq!(set.identify("gamma"), None);
        assert_eq!(set.identify(""), None);
    }

    #[test]
    fn debug_does_not_print_tokens() {
        let set = TokenSet::new(["topsecret".to_owned()]);
        assert!(!format!("{set:?}").contains("topsecret"));
    }

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
