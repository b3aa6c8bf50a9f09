//! What the kv service needs from the outside world: somewhere to keep
//! sealed records ([`KvStore`]) and something that makes and unwraps data
//! keys ([`KeyProvider`]). Every store passes the one contract suite in
//! `tests/store_contract.rs`; every provider the one in `tests/provider_contract.rs`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{DataKey, KeyPrefix, KvKey, Page, PageLimit, SealedRecord, WrappedKey};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is closed; worth retrying later.
    #[error("kv store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be parsed.
    #[error("kv store holds a corrupt record for '{key}': {reason}")]
    Corrupt { key: String, reason: String },
    /// The record is larger than this store can hold in one item.
    #[error("the sealed record is {size} bytes; this store holds at most {limit} bytes per item")]
    TooLarge { size: usize, limit: usize },
}

/// Durable sealed records by key.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// Stores `record` under `key`, replacing any earlier record. Durable
    /// when it returns.
    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError>;

    /// The record under `key`, `None` if there is none.
    async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError>;

    /// Removes `key`; `false` if there was nothing to remove.
    async fn delete(&self, key: &KvKey) -> Result<bool, StoreError>;

    /// Keys starting with `prefix` after `after`, with their plaintext sizes.
    /// Ordered by key, except in stores that cannot (DynamoDB lists in table
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
        Err(StoreError::Unavailable(
            "this store keeps quintet's layout only: there is nothing to convert".into(),
        ))
    }

    /// Whether this store keeps records in the seed's layout (DynamoDB, the
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
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider cannot be reached, is throttling past its retries, or
    /// refused for a reason worth retrying later.
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refuses this wrapped key: it was altered, or wrapped by a
    /// key this provider does not have.
    #[error("key provider cannot unwrap this data key: {0}")]
    Refused(String),
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

/// Readiness check over a store's `ping`.
pub struct StoreReadiness(pub Arc<dyn KvStore>);

#[async_trait]
impl platform::health::ReadinessCheck for StoreReadiness {
    fn name(&self) -> &str {
        "kv-store"
    }

    async fn check(&self) -> Result<(), platform::health::ReadinessError> {
        self.0
            .ping()
            .await
            .map_err(platform::health::ReadinessError::new)
    }
}
