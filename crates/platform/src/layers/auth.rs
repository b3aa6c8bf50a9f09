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

use std::fmt;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ErrorResponse;

/// Who is calling: a configured token (by a short fingerprint of its hash,
/// with its scope) or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Token { id: [u8; 8], admin: bool },
    Anonymous,
}

impl Caller {
    /// Whether the caller may use the admin routes: a token with the admin
    /// scope, or anyone when no token is configured (the routes are open).
    pub fn is_admin(&self, tokens: &TokenSet) -> bool {
        match self {
            Caller::Token { admin, .. } => *admin,
            Caller::Anonymous => tokens.is_empty(),
        }
    }
}

/// One configured token: its hash and whether it has the admin scope.
#[derive(Clone)]
struct Entry {
    hash: [u8; 32],
    admin: bool,
}

/// The accepted bearer tokens, kept as SHA-256 hashes.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Arc<Vec<Entry>>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet([redacted; {}])", self.entries.len())
    }
}

/// A configured token that cannot be used, described without the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "a token of {0} characters holds characters not allowed in a bearer token (use letters, \
         digits and -._~+/=)"
    )]
    Characters(usize),
    #[error(
        "token '{name}' has the scope '{scope}'; the only scope is 'admin' (write name:secret:admin)"
    )]
    Scope { name: String, scope: String },
    #[error(
        "a token entry has an empty name or secret: write secret, name:secret or name:secret:admin"
    )]
    Empty,
}

impl TokenSet {
    /// Plain secrets, none of them admin (tests and tools).
    pub fn new(tokens: impl IntoIterator<Item = String>) -> Self {
        let entries = tokens
            .into_iter()
            .map(|t| Entry {
                hash: Sha256::digest(t.as_bytes()).into(),
                admin: false,
            })
            .collect();
        Self {
            entries: Arc::new(entries),
        }
    }

    /// Parses configured entries: `secret`, `name:secret` or `name:secret:admin`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, TokenError> {
        let mut parsed = Vec::new();
        for entry in entries {
            let mut fields = entry.splitn(3, ':');
            let first = fields.next().unwrap_or_default();
            let (name, secret, scope) = match (fields.next(), fields.next()) {
                (None, _) => ("", first, None),
                (Some(secret), scope) => (first, secret, scope),
            };
            if secret.is_empty() || (entry.contains(':') && name.is_empty()) {
                return Err(TokenError::Empty);
            }
            if !is_token68(secret) {
                return Err(TokenError::Characters(secret.len()));
            }
            let admin = match scope {
                None => false,
                Some("admin") => true,
                Some(other) => {
                    return Err(TokenError::Scope {
                        name: name.chars().take(64).collect(),
                        scope: other.chars().take(64).collect(),
                    });
                }
            };
            parsed.push(Entry {
                hash: Sha256::digest(secret.as_bytes()).into(),
                admin,
            });
        }
        Ok(Self {
            entries: Arc::new(parsed),
        })
    }

    /// True when no token is configured and the service routes are open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the caller a presented token identifies, if it is one of ours.
    /// Every configured hash is compared, in constant time each.
    pub fn identify(&self, presented: &str) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for known in self.entries.iter() {
            if bool::from(known.hash.ct_eq(&hash)) {
                found = Some(known.admin);
            }
        }
        let admin = found?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash[..8]);
        Some(Caller::Token { id, admin })
    }
}

/// RFC 6750 `b64token` characters: what may follow `Bearer ` in a header.
fn is_token68(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
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

/// The 403 (gRPC PERMISSION_DENIED) answer for an admin route called
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
    if super::is_grpc(req.headers()) {
        return Some(tonic::Status::permission_denied(message).into_http());
    }
    Some(ErrorResponse::new(StatusCode::FORBIDDEN, message).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_token_is_identified_and_unknown_is_not() {
        let set = TokenSet::new(["alpha".to_owned(), "beta".to_owned()]);
        assert!(matches!(
            set.identify("beta"),
            Some(Caller::Token { admin: false, .. })
        ));
        assert_ne!(set.identify("alpha"), set.identify("beta"));
        assert_eq!(set.identify("gamma"), None);
        assert_eq!(set.identify(""), None);
    }

    #[test]
    fn entries_name_a_token_and_may_give_it_the_admin_scope() {
        let set = TokenSet::parse(["plain", "ci:s3cret", "ops:r00t=:admin"]).expect("valid");
        assert!(matches!(
            set.identify("plain"),
            Some(Caller::Token { admin: false, .. })
        ));
        assert!(matches!(
            set.identify("s3cret"),
            Some(Caller::Token { admin: false, .. })
        ));
        assert!(matches!(
            set.identify("r00t="),
            Some(Caller::Token { admin: true, .. })
        ));
        assert_eq!(
            set.identify("ci:s3cret"),
            None,
            "the name is not part of the secret"
        );
        assert_eq!(
            TokenSet::parse(["ops:x:root"]).err(),
            Some(TokenError::Scope {
                name: "ops".into(),
                scope: "root".into()
            })
        );
        assert_eq!(TokenSet::parse([":x"]).err(), Some(TokenError::Empty));
        assert_eq!(TokenSet::parse(["ops:"]).err(), Some(TokenError::Empty));
        let err = TokenSet::parse(["ops:s3cret value"]).expect_err("space");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(Caller::Anonymous.is_admin(&TokenSet::default()));
        assert!(!Caller::Anonymous.is_admin(&set));
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
