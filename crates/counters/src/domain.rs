//! Counters domain: keys, increments and totals, valid by construction, and
//! the arithmetic on them (checked: an overflow is a refusal, never a wrap).

use std::fmt;

pub use platform::paging::PageLimit;

/// Default and default limit of a key's length, in bytes of UTF-8.
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A key that is empty or longer than the limit.
    #[error("key must be 1 to {max} bytes of UTF-8; got {len} bytes")]
    InvalidKey {
        /// The key's length in bytes.
        len: usize,
        /// The longest key accepted, in bytes.
        max: usize,
    },
    /// An increment that would take a total out of the i64 range.
    #[error("adding {delta} to '{key}' (total {total}) would overflow a signed 64-bit integer")]
    Overflow {
        /// The key (its first 64 characters).
        key: String,
        /// The total before the increment.
        total: i64,
        /// The increment refused.
        delta: i64,
    },
    /// A page limit out of range.
    #[error(transparent)]
    InvalidLimit(#[from] platform::paging::InvalidLimit),
    /// A listing prefix longer than the longest key.
    #[error("prefix must be at most {max} bytes")]
    InvalidPrefix {
        /// The longest prefix accepted, in bytes.
        max: usize,
    },
}

/// A counter's key: 1..=max bytes of UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey(String);

impl CounterKey {
    /// Accepts `text` as a key if it is 1 to `max_bytes` bytes long.
    pub fn parse(text: String, max_bytes: usize) -> Result<Self, DomainError> {
        if text.is_empty() || text.len() > max_bytes {
            return Err(DomainError::InvalidKey {
                len: text.len(),
                max: max_bytes,
            });
        }
        Ok(Self(text))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CounterKey({:?})", self.0)
    }
}

/// A key prefix for listing: 0..=max bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Accepts `text` (none: the empty prefix) if it is at most `max_bytes` long.
    pub fn parse(text: Option<String>, max_bytes: usize) -> Result<Self, DomainError> {
        let text = text.unwrap_or_default();
        if text.len() > max_bytes {
            return Err(DomainError::InvalidPrefix { max: max_bytes });
        }
        Ok(Self(text))
    }

    /// The prefix's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` starts with this prefix.
    pub fn matches(&self, key: &CounterKey) -> bool {
        key.as_str().starts_with(&self.0)
    }
}

/// `total + delta`, refused when it leaves the i64 range.
pub fn add(key: &CounterKey, total: i64, delta: i64) -> Result<i64, DomainError> {
    total
        .checked_add(delta)
        .ok_or_else(|| DomainError::Overflow {
            key: key.as_str().chars().take(64).collect(),
            total,
            delta,
        })
}

/// A key and its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The counter's key.
    pub key: CounterKey,
    /// Its total.
    pub value: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CounterKey {
        CounterKey::parse(s.to_owned(), 8).expect("valid")
    }

    #[test]
    fn keys_are_one_to_max_bytes() {
        assert!(CounterKey::parse(String::new(), 8).is_err());
        assert!(CounterKey::parse("a".repeat(9), 8).is_err());
        // 4 bytes in 1 character counts as 4.
        assert!(CounterKey::parse("🦀🦀🦀".into(), 8).is_err());
        assert_eq!(key("abc").as_str(), "abc");
    }

    #[test]
    fn addition_is_checked() {
        assert_eq!(add(&key("k"), 1, 2), Ok(3));
        assert_eq!(add(&key("k"), -5, 2), Ok(-3));
        assert!(matches!(
            add(&key("k"), i64::MAX, 1),
            Err(DomainError::Overflow { .. })
        ));
        assert!(matches!(
            add(&key("k"), i64::MIN, -1),
            Err(DomainError::Overflow { .. })
        ));
    }

    #[test]
    fn prefixes_match_and_are_bounded() {
        let p = KeyPrefix::parse(Some("ab".into()), 8).expect("valid");
        assert!(p.matches(&key("abc")));
        assert!(!p.matches(&key("b")));
        assert!(KeyPrefix::parse(Some("x".repeat(9)), 8).is_err());
        assert!(KeyPrefix::parse(None, 8).expect("empty").matches(&key("z")));
    }
}
