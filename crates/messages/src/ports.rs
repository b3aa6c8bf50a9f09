//! What the messages service needs from storage. Every adapter passes the one
//! contract suite in `tests/store_contract.rs`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Cursor, Digest, Message, PageLimit, StoredMessage};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is closed; worth retrying later.
    #[error("message store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something it should never hold.
    #[error("message store is corrupt: {0}")]
    Corrupt(String),
}

/// Whether a put stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyStored,
}

/// One page of messages in insertion order; `next` is set when more may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<StoredMessage>,
    pub next: Option<Cursor>,
    /// Digests in this page's range the store could not return (their record
    /// is missing or unreadable): left out of `items`, named here.
    pub corrupt: Vec<String>,
}

/// Durable, content-addressed message storage.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
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

/// Readiness check over a store's `ping`.
pub struct StoreReadiness(pub Arc<dyn MessageStore>);

#[async_trait]
impl platform::health::ReadinessCheck for StoreReadiness {
    fn name(&self) -> &str {
        "messages-store"
    }

    async fn check(&self) -> Result<(), platform::health::ReadinessError> {
        self.0
            .ping()
            .await
            .map_err(platform::health::ReadinessError::new)
    }
}
