//! Message store domain: digests, messages, cursors and page limits, each
//! valid by construction. No I/O here.

use std::fmt;

pub use platform::paging::PageLimit;
use sha2::{Digest as _, Sha256};

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A digest that is not 64 hex characters.
    #[error("digest must be 64 hexadecimal characters (SHA-256); {reason}")]
    InvalidDigest {
        /// What is wrong with it (its length, or a character that is not hex).
        reason: String,
    },
    /// An empty message: there is nothing to store.
    #[error("message must not be empty")]
    EmptyMessage,
    /// A message longer than the configured limit.
    #[error("message is {size} bytes; the limit is {max} bytes")]
    MessageTooLarge {
        /// The message's length in bytes.
        size: usize,
        /// The largest length accepted, in bytes.
        max: usize,
    },
    /// A cursor this server did not hand out (its first 64 characters).
    #[error("cursor '{0}' is not one this server handed out")]
    InvalidCursor(String),
    /// A page limit out of range.
    #[error(transparent)]
    InvalidLimit(#[from] platform::paging::InvalidLimit),
}

/// A SHA-256 digest, shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex characters, either case.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        if text.len() != 64 {
            return Err(DomainError::InvalidDigest {
                reason: format!("got {} characters", text.chars().count()),
            });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| DomainError::InvalidDigest {
            reason: "found a character that is not 0-9 or a-f".to_owned(),
        })?;
        Ok(Self(bytes))
    }

    /// From raw bytes as stored; `None` unless exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes of the digest, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A message accepted for storage: non-empty UTF-8 within the size limit, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    text: String,
    digest: Digest,
}

impl Message {
    /// Accepts `text` if it is non-empty and at most `max_bytes` long, and
    /// computes its digest.
    pub fn new(text: String, max_bytes: usize) -> Result<Self, DomainError> {
        if text.is_empty() {
            return Err(DomainError::EmptyMessage);
        }
        if text.len() > max_bytes {
            return Err(DomainError::MessageTooLarge {
                size: text.len(),
                max: max_bytes,
            });
        }
        let digest = Digest::of(text.as_bytes());
        Ok(Self { text, digest })
    }

    /// The message's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The SHA-256 digest of the text, the message's address.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// A position in the insertion order, handed out as an opaque `next` cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(u64);

impl Cursor {
    /// The cursor that continues after sequence number `seq`.
    pub fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The sequence number the next page starts after.
    pub fn seq(&self) -> u64 {
        self.0
    }

    /// Parses a cursor as printed by `Display` (`s` followed by the sequence number).
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        text.strip_prefix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .map(Self)
            .ok_or_else(|| DomainError::InvalidCursor(text.chars().take(64).collect()))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// Upper bound on the message bytes in one page, so a page of large messages
/// stays a bounded response; the page ends early and `next` continues it.
pub const PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// A message as a store returns it, before its integrity is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The digest it is stored under.
    pub digest: Digest,
    /// The stored bytes, not yet checked against the digest.
    pub body: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Its place in the insertion order.
    pub seq: u64,
}

/// A stored message whose bytes hash to its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMessage {
    /// The digest it is stored under, which its text hashes to.
    pub digest: Digest,
    /// The message's text.
    pub text: String,
    /// When it was first stored, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Stored bytes that do not match their digest (or are not UTF-8).
#[derive(Debug, Clone, thiserror::Error)]
#[error("stored message {digest} does not hash to its digest")]
pub struct IntegrityError {
    /// The digest the message is stored under.
    pub digest: Digest,
}

impl StoredMessage {
    /// Re-hashes the stored bytes: content never leaves the store unverified.
    pub fn verify(self) -> Result<VerifiedMessage, IntegrityError> {
        if Digest::of(&self.body) != self.digest {
            return Err(IntegrityError {
                digest: self.digest,
            });
        }
        let text = String::from_utf8(self.body).map_err(|_| IntegrityError {
            digest: self.digest,
        })?;
        Ok(VerifiedMessage {
            digest: self.digest,
            text,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_text_matches_sha256sum() {
        // printf 'hello' | sha256sum
        assert_eq!(
            Digest::of(b"hello").to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn uppercase_digest_parses_and_prints_lowercase() {
        let upper = "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
        assert_eq!(
            Digest::parse(upper).expect("valid").to_string(),
            upper.to_lowercase()
        );
    }

    #[test]
    fn malformed_digests_are_refused_with_a_reason() {
        assert!(matches!(
            Digest::parse("abc"),
            Err(DomainError::InvalidDigest { .. })
        ));
        let not_hex = "g".repeat(64);
        let err = Digest::parse(&not_hex).expect_err("not hex");
        assert!(err.to_string().contains("not 0-9"));
        // 64 bytes but not 64 characters.
        assert!(Digest::parse(&"é".repeat(32)).is_err());
    }

    #[test]
    fn message_limits_are_enforced() {
        assert_eq!(
            Message::new(String::new(), 10),
            Err(DomainError::EmptyMessage)
        );
        assert_eq!(
            Message::new("x".repeat(11), 10),
            Err(DomainError::MessageTooLarge { size: 11, max: 10 })
        );
        let m = Message::new("hi".into(), 10).expect("valid");
        assert_eq!(m.digest(), Digest::of(b"hi"));
    }

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let c = Cursor::new(42);
        assert_eq!(Cursor::parse(&c.to_string()), Ok(c));
        assert!(Cursor::parse("42").is_err());
        assert!(Cursor::parse("s-1").is_err());
    }

    #[test]
    fn tampered_bytes_fail_verification() {
        let stored = StoredMessage {
            digest: Digest::of(b"hello"),
            body: b"hellp".to_vec(),
            created_at_ms: 0,
            seq: 1,
        };
        assert!(stored.verify().is_err());
        let good = StoredMessage {
            digest: Digest::of(b"hello"),
            body: b"hello".to_vec(),
            created_at_ms: 0,
            seq: 1,
        };
        assert_eq!(good.verify().expect("intact").text, "hello");
    }
}
