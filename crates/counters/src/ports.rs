//! What the counters service needs from storage. Every adapter passes the one
//! contract suite in `tests/store_contract.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::BackendError;

use crate::domain::{Counter, CounterKey, KeyPrefix, PageLimit};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (unreachable, closed, an I/O error); its kind says
    /// whether retrying later may help. The cause is the error's source, for
    /// the log ([`platform::backend::chain`]).
    #[error("counter store unavailable")]
    Unavailable(#[from] BackendError),
    /// Applying a batch would take a total out of the i64 range.
    #[error("counter '{key}' would overflow")]
    Overflow {
        /// The key whose total would overflow.
        key: String,
    },
    /// The stored record of `key` failed its check: its total cannot be trusted.
    #[error("the stored total of counter '{key}' is corrupt: {reason}")]
    Corrupt {
        /// The key (its first 300 characters).
        key: String,
        /// What its check found wrong.
        reason: String,
    },
}

/// The increments one instance flushes at once: one delta per key, covering
/// every increment of that instance up to and including sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushBatch {
    /// The flushing instance's id (one per data directory).
    pub instance: String,
    /// The last sequence number the batch covers.
    pub seq: u64,
    /// What to add to each key's total; each key at most once.
    pub deltas: Vec<(CounterKey, i64)>,
}

/// One page of counters in key order; `next` is set when more may follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The page's counters, in key order.
    pub items: Vec<Counter>,
    /// The last key of this page when more may follow; the next page starts after it.
    pub next: Option<CounterKey>,
    /// Keys in this page's range whose stored record failed its check: left
    /// out of `items`, named here.
    pub corrupt: Vec<String>,
}

/// Durable counter totals.
#[async_trait]
pub trait CounterStore: Send + Sync + 'static {
    /// A key's persisted total, `None` if it was never stored.
    async fn load(&self, key: &CounterKey) -> Result<Option<i64>, StoreError>;

    /// A key's persisted total and the highest `seq` flushed by `instance`,
    /// read together (one snapshot), so a caller can tell whether a batch it
    /// has in flight is already in that total.
    async fn load_with_flushed(
        &self,
        key: &CounterKey,
        instance: &str,
    ) -> Result<(Option<i64>, u64), StoreError>;

    /// Adds every delta in one atomic step (`PostgreSQL`: one statement) and
    /// records that `batch.instance` has flushed up to `batch.seq`. A batch
    /// whose `seq` the store already has for that instance changes nothing.
    /// Returns the totals of the batch's keys after the step.
    async fn apply(&self, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError>;

    /// The highest `seq` flushed by `instance` (0 if none).
    async fn flushed_seq(&self, instance: &str) -> Result<u64, StoreError>;

    /// Counters whose key starts with `prefix` and sorts after `after`, in key order.
    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&CounterKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError>;

    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Releases the store; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// The ports [`crate::service`] is built on.
pub struct Backends {
    /// Where flushed totals are kept.
    pub store: Arc<dyn CounterStore>,
}
