//! What the messages service needs from storage. Every adapter passes the one
//! contract suite in `tests/store_contract.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::BackendError;

use crate::domain::{Cursor, Digest, Message, PageLimit, StoredMessage};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (unreachable, closed, an I/O error); its kind says
    /// whether retrying later may help.
    /// (The cause is the error's source, for the log: [`platform::backend::chain`].)
    #[error("message store unavailable")]
    Unavailable(#[from] BackendError),
    /// The store answered something it should never hold.
    #[error("message store is corrupt: {0}")]
    Corrupt(Corruption),
}

/// A stored record that cannot be what it claims: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Corruption {
    /// The record's key as text (a digest in hex, or a sequence number).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Corruption {
    /// The record under `key` is corrupt because of `reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Whether a put stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The message was not stored before and now is.
    Created,
    /// The same text was already stored; nothing changed.
    AlreadyStored,
}

/// One page of messages in insertion order; `next` is set when more may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page's messages, as stored (the caller verifies them).
    pub items: Vec<StoredMessage>,
    /// Where the next page starts; `None` when this page reached the end.
    pub next: Option<Cursor>,
    /// Digests in this page's range the store could not return (their record
    /// is missing or unreadable): left out of `items`, named here.
    pub corrupt: Vec<String>,
}

/// Durable, content-addressed message storage.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// The engine's name, for traces (`fjall`, `redb`, `postgresql`).
    fn engine(&self) -> &'static str;
    /// Stores a message under its digest; storing the same text again changes nothing.
    async fn put(&self, message: &Message, created_at_ms: i64) -> Result<PutOutcome, StoreError>;
    /// The message stored under `digest`, as stored (the caller verifies it).
    async fn get(&self, digest: &Digest) -> Result<Option<StoredMessage>, StoreError>;
    /// Messages after `after` in insertion order: at most `limit` of them and,
    /// beyond the first, at most [`crate::domain::PAGE_MAX_BYTES`] of message bytes.
    async fn page(&self, after: Option<Cursor>, limit: PageLimit) -> Result<Page, StoreError>;
    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Flushes and releases the store; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// The ports [`crate::service`] is built on.
pub struct Backends {
    /// Where messages are kept.
    pub store: Arc<dyn MessageStore>,
}
