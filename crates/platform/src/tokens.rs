//! The configured bearer tokens, as the server keeps them: SHA-256 hashes
//! compared in constant time, each with its scope. Parsing a configured
//! entry (`secret`, `name:secret` or `name:secret:admin`) lives here too, so
//! configuration and the auth layer share it without depending on each other.
//! A token never appears in a log line, an error message or `Debug`.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who is calling: a configured token (by a short fingerprint of its hash,
/// with its scope) or nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A caller that presented one of the configured tokens.
    Token {
        /// The first 8 bytes of the token's SHA-256: tells callers apart
        /// (rate limits, logs) without revealing the token.
        id: [u8; 8],
        /// Whether the token has the admin scope.
        admin: bool,
    },
    /// A caller with no token, on routes that are open.
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
    /// The secret holds a character a bearer token may not (RFC 6750 token68);
    /// carries the secret's length, never the secret.
    #[error(
        "a token of {0} characters holds characters not allowed in a bearer token (use letters, \
         digits and -._~+/=)"
    )]
    Characters(usize),
    /// The third field is a scope other than `admin`.
    #[error(
        "token '{name}' has the scope '{scope}'; the only scope is 'admin' (write name:secret:admin)"
    )]
    Scope {
        /// The entry's name (at most 64 characters of it).
        name: String,
        /// The unknown scope (at most 64 characters of it).
        scope: String,
    },
    /// An entry with an empty secret, or a `:` and an empty name.
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
}
