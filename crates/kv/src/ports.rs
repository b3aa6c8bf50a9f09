//! What the kv service needs from the outside world: somewhere to keep
//! sealed records ([`KvStore`]) and something that makes and unwraps data
//! keys ([`KeyProvider`]). Every store passes the one contract suite in
//! `tests/store_contract.rs`; every provider the one in `tests/provider_contract.rs`.

use std::sync::Arc;

use async_trait::async_trait;
pub use platform::backend::{BackendError, FailureKind};

use crate::domain::{
    DataKey, EnvelopeError, KeyPrefix, KvKey, Page, PageLimit, SealedRecord, WrappedKey,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store failed, cannot be reached or is closed; its
    /// [`FailureKind`] says whether retrying later may help.
    #[error("kv store unavailable: {0}")]
    Unavailable(#[from] BackendError),
    /// A stored record could not be parsed.
    #[error("kv store holds a corrupt record for '{key}': {reason}")]
    Corrupt {
        /// The key the record is stored under (as stored, possibly invalid).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The record is larger than this store can hold in one item.
    #[error("the sealed record is {size} bytes; this store holds at most {limit} bytes per item")]
    TooLarge {
        /// The sealed record's size in bytes.
        size: usize,
        /// The most this store holds in one item.
        limit: usize,
    },
    /// The store keeps quintet's layout only: there is nothing to convert.
    #[error("this store keeps quintet's layout only: there is nothing to convert")]
    LayoutNotKept,
}

/// Durable sealed records by key.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The engine's name, for traces (`fjall`, `redb`, `postgresql`, `aws.dynamodb`).
    fn engine(&self) -> &'static str;

    /// Stores `record` under `key`, replacing any earlier record. Durable
    /// when it returns.
    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError>;

    /// The record under `key`, `None` if there is none.
    async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError>;

    /// Removes `key`; `false` if there was nothing to remove.
    async fn delete(&self, key: &KvKey) -> Result<bool, StoreError>;

    /// Keys starting with `prefix` after `after`, with their plaintext sizes.
    /// Ordered by key, except in stores that cannot (`DynamoDB` lists in table
    /// order); `next` is always the last key of the page when more may follow.
    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&KvKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError>;

    /// Replaces the wrapped data key of the record under `key` with `new`,
    /// only if it is still wrapped as `old` (a concurrent set wins). Returns
    /// whether it replaced it. The ciphertext is untouched.
    async fn rewrap(
        &self,
        key: &KvKey,
        old: &WrappedKey,
        new: &WrappedKey,
    ) -> Result<bool, StoreError>;

    /// Replaces the record under `key` with `new` (another layout of the
    /// same value, from rotation's `convert`), only if it is still `old` (a
    /// concurrent set wins). Returns whether it replaced it. Stores that
    /// keep quintet's layout only never hold a record in another layout,
    /// so they are never asked.
    async fn replace(
        &self,
        key: &KvKey,
        old: &SealedRecord,
        new: &SealedRecord,
    ) -> Result<bool, StoreError> {
        let _ = (key, old, new);
        Err(StoreError::LayoutNotKept)
    }

    /// Whether this store keeps records in the seed's layout (`DynamoDB`, the
    /// original services' table) as well as quintet's.
    fn keeps_seed_layout(&self) -> bool {
        false
    }

    /// Cheap reachability check for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Releases the store; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// Why a key provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider failed, cannot be reached or is throttling past its
    /// retries (or its rate limit); its [`FailureKind`] says whether
    /// retrying later may help.
    #[error("key provider unavailable: {0}")]
    Unavailable(#[from] BackendError),
    /// The provider refuses this wrapped key: it was altered, or wrapped by a
    /// key this provider does not have.
    #[error("key provider cannot unwrap this data key: {0}")]
    Refused(#[from] Refusal),
}

impl ProviderError {
    /// The outcome label of this error in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Refused(_) => "refused",
        }
    }
}

/// Why a provider refuses to unwrap a data key: the same call will never
/// succeed, so the record it belongs to cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No master key of this provider has the id the wrapped key names.
    #[error("no local master key has id '{0}'")]
    UnknownKeyId(String),
    /// The wrapped key is not as long as this provider's wrapped keys are.
    #[error("a wrapped key is {expected} bytes, not {actual}")]
    Length {
        /// The length this provider's wrapped keys have.
        expected: usize,
        /// The length of the one given.
        actual: usize,
    },
    /// The wrapped key failed authentication under the master key it names.
    #[error("wrapped key failed authentication")]
    Authentication,
    /// What unwrapped is not a data key.
    #[error("the wrapped blob is not a data key: {0}")]
    NotADataKey(EnvelopeError),
    /// The KMS refused the blob (altered, another key's, or a key we may not use).
    #[error("kms refused it: {0}")]
    Kms(#[source] BackendError),
}

/// Makes data keys and unwraps them: a local master key or a KMS.
#[async_trait]
pub trait KeyProvider: Send + Sync + 'static {
    /// Short name for logs and metrics (`local`, `aws-kms`).
    fn kind(&self) -> &'static str;

    /// The id of the key new data keys are wrapped under.
    async fn current_key_id(&self) -> Result<String, ProviderError>;

    /// A fresh data key and its wrapped form, under the current key.
    async fn generate(&self) -> Result<(DataKey, WrappedKey), ProviderError>;

    /// The data key inside `wrapped`. `wrapped.key_id` may be empty (items
    /// written by the seed); a provider then finds the key itself or refuses.
    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, ProviderError>;

    /// Wraps an existing data key under the current key (for rotation).
    async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, ProviderError>;

    /// Makes a new current key if the provider manages its own keys (the
    /// local provider with a key file); `Ok(false)` if it does not (KMS
    /// rotates its key material itself; env-given keys change by restart).
    async fn add_key(&self) -> Result<bool, ProviderError> {
        Ok(false)
    }
}

/// What the kv service needs from outside, built by the binary: the store
/// records are kept in. The key provider is named by kv's own options
/// (`--kv-key-provider`) and built by [`crate::service`].
#[derive(Clone)]
pub struct Backends {
    /// Where sealed records are kept.
    pub store: Arc<dyn KvStore>,
}
