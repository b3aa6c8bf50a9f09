//! kv's domain: keys and prefixes valid by construction, the sealed record
//! format, and the envelope encryption itself. No I/O.

pub mod envelope;
pub mod record;

use std::fmt;

pub use envelope::{DataKey, EnvelopeError};
pub use platform::paging::PageLimit;
pub use record::{
    RecordFormat, SealedRecord, SeedKeyReading, WrappedKey, encode_seed_key, seed_key_readings,
};

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// Default largest value, in bytes.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// Why a key, prefix or cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("key must not be empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_BYTES`] bytes.
    #[error("key is {0} bytes; the limit is {MAX_KEY_BYTES} bytes of UTF-8")]
    TooLong(usize),
    /// NUL ends strings in C clients, logs and some stores' tools, so a key
    /// with one would not be the same key everywhere.
    #[error("key contains a NUL byte (\\0), which keys may not contain")]
    Nul,
    /// Raw bytes given as a key are not UTF-8.
    #[error("key is not valid UTF-8")]
    NotUtf8,
}

/// Why a namespace was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("namespace must be 1..=128 bytes without NUL")]
pub struct NamespaceError;

/// Why a record is not authentic under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordProblem {
    /// No master key of the provider opens its data key.
    #[error("its data key opens under no master key of the provider (altered wrapped key)")]
    WrappedKey,
    /// Its value fails authentication under its key.
    #[error("its value fails authentication under this key (altered, or moved from another key)")]
    Value,
}

/// A key: 1..=1024 bytes of UTF-8 without NUL.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvKey(String);

impl KvKey {
    /// A key: 1..=1024 bytes of UTF-8 without NUL.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        match key.len() {
            0 => Err(KeyError::Empty),
            n if n > MAX_KEY_BYTES => Err(KeyError::TooLong(n)),
            _ if key.contains('\0') => Err(KeyError::Nul),
            _ => Ok(Self(key)),
        }
    }

    /// Like [`KvKey::new`] from raw bytes, refusing invalid UTF-8.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, KeyError> {
        let key = String::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)?;
        Self::new(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvKey({:?})", self.0)
    }
}

impl fmt::Display for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key prefix for listing: 0..=1024 bytes of UTF-8 (empty matches all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// A prefix: at most [`MAX_KEY_BYTES`] bytes.
    pub fn new(prefix: impl Into<String>) -> Result<Self, KeyError> {
        let prefix = prefix.into();
        if prefix.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong(prefix.len()));
        }
        Ok(Self(prefix))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `key` starts with this prefix.
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.0)
    }
}

/// The namespace a deployment's records are bound to: it is part of every
/// record's associated data, so a record copied into another deployment's
/// store under another namespace fails to decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    /// A namespace: 1..=128 bytes without NUL.
    pub fn new(name: impl Into<String>) -> Result<Self, NamespaceError> {
        let name = name.into();
        if name.is_empty() || name.len() > 128 || name.contains('\0') {
            return Err(NamespaceError);
        }
        Ok(Self(name))
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self("default".into())
    }
}

/// One listed key and the plaintext size of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: KvKey,
    /// Its value's plaintext size in bytes.
    pub size: u64,
}

/// One page of a listing; `next` (the last key of this page) is set when
/// more may follow and is passed back as the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The keys of this page, with their sizes.
    pub entries: Vec<Entry>,
    /// The cursor for the next page, when more may follow.
    pub next: Option<KvKey>,
    /// Keys in this page's range whose stored record cannot be read: left
    /// out of `entries`, named here.
    pub corrupt: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert_eq!(KvKey::new(""), Err(KeyError::Empty));
        assert!(KvKey::new("a".repeat(1024)).is_ok());
        assert_eq!(KvKey::new("a".repeat(1025)), Err(KeyError::TooLong(1025)));
        // 1024 bytes, fewer characters.
        assert!(KvKey::new("é".repeat(512)).is_ok());
        assert!(KvKey::new("é".repeat(513)).is_err());
        assert!(KvKey::from_utf8(vec![0xff]).is_err());
        assert_eq!(KvKey::new("a\0b"), Err(KeyError::Nul));
        assert_eq!(KvKey::new("\0"), Err(KeyError::Nul));
    }
}
