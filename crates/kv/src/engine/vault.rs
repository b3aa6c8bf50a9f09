//! The service's core: seals values into records and opens them, with a
//! bounded data-key cache in front of the key provider (like the AWS
//! Encryption SDK's caching materials manager), and rotation.
//!
//! Encryption reuses one data key until it reaches `max_age`, `max_uses`
//! values or `max_bytes` of plaintext, then asks the provider for a new one
//! (one caller asks; the others wait for its answer). Decryption caches
//! unwrapped keys by their wrapped bytes under the same bounds. Any bound of
//! zero turns caching off: every set and get calls the provider.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use platform::trace::{call_span, store_span, traced};

use crate::domain::KeyError;
use crate::domain::envelope::{self, EnvelopeError};
use crate::domain::{
    DataKey, KeyPrefix, KvKey, Namespace, Page, PageLimit, RecordFormat, SealedRecord, WrappedKey,
};
use crate::metrics;
use crate::ports::{BackendError, KeyProvider, KvStore, ProviderError, Refusal, StoreError};

/// Bounds on how long and how much one data key is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Longest a data key is used.
    pub max_age: Duration,
    /// Most values one data key seals (or opens from cache).
    pub max_uses: u64,
    /// Most plaintext bytes one data key seals (or opens from cache).
    pub max_bytes: u64,
    /// Most unwrapped keys kept for decryption.
    pub max_entries: usize,
}

impl CacheLimits {
    fn enabled(&self) -> bool {
        !self.max_age.is_zero() && self.max_uses > 0 && self.max_bytes > 0 && self.max_entries > 0
    }
}

/// Why a kv operation failed; mapped to HTTP, gRPC and TCP answers in `api`.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The key is not a valid key.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// The seed layout was asked of a store that does not keep it.
    #[error(
        "the seed layout is kept only by the DynamoDB store (the original services' table): \
         use --kv-store dynamodb://… or the quintet layout"
    )]
    SeedLayoutUnsupported,
    /// No value is stored under the key.
    #[error("no value for key '{0}'")]
    NotFound(String),
    /// The value (or its sealed record) is larger than allowed.
    #[error("value is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The store failed.
    #[error("kv store unavailable: {0}")]
    Store(#[source] BackendError),
    /// The key provider failed.
    #[error("key provider unavailable: {0}")]
    Provider(#[source] BackendError),
    /// Sealing a value failed (the system random number generator).
    #[error("sealing the value failed: {0}")]
    Seal(#[source] EnvelopeError),
    /// A record failed authentication or could not be parsed: altered,
    /// moved, or wrapped by a key the provider does not have.
    #[error("the record for key '{key}' cannot be decrypted: {reason}")]
    Integrity {
        /// The key it is stored under.
        key: String,
        /// What failed.
        reason: IntegrityFailure,
    },
}

/// What made a record fail its check.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityFailure {
    /// The store could not parse what it holds.
    #[error("{0}")]
    Stored(String),
    /// The key provider refuses the record's wrapped data key.
    #[error(transparent)]
    Refused(Refusal),
    /// The value failed authentication under its data key.
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// The record carries no wrapped key to try.
    #[error("the record has no wrapped data key")]
    NoWrappedKey,
}

impl KvError {
    /// The backend failure behind this error, if it is one.
    pub fn backend(&self) -> Option<&BackendError> {
        match self {
            Self::Store(error) | Self::Provider(error) => Some(error),
            _ => None,
        }
    }

    /// Whether this is a failure behind the service (store, provider,
    /// sealing), answered as unavailable without its detail.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Provider(_) | Self::Seal(_))
    }
}

impl From<StoreError> for KvError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(backend) => KvError::Store(backend),
            StoreError::Corrupt { key, reason } => KvError::Integrity {
                key,
                reason: IntegrityFailure::Stored(reason),
            },
            StoreError::TooLarge { size, limit } => KvError::TooLarge { size, limit },
            StoreError::LayoutNotKept => KvError::SeedLayoutUnsupported,
        }
    }
}

struct CachedKey {
    dek: DataKey,
    wrapped: WrappedKey,
    created: Instant,
    uses: u64,
    bytes: u64,
}

impl CachedKey {
    fn take(&mut self, limits: &CacheLimits, len: u64) -> bool {
        let fits = self.created.elapsed() < limits.max_age
            && self.uses < limits.max_uses
            && self.bytes.saturating_add(len) <= limits.max_bytes;
        if fits {
            self.uses += 1;
            self.bytes += len;
        }
        fits
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RotateReport {
    /// The key every data key is now wrapped under.
    pub key_id: String,
    /// Whether a new master key was made first (local provider with a key dir).
    pub new_key: bool,
    /// Records looked at.
    pub scanned: u64,
    /// Records whose data key was rewrapped under the current key.
    pub rewrapped: u64,
    /// Records already wrapped under the current key.
    pub current: u64,
    /// Records set or deleted while rotating (they are current anyway).
    pub changed_meanwhile: u64,
    /// Records re-encrypted into the layout asked for (`convert`), which
    /// are then wrapped under the current key too.
    pub converted: u64,
    /// The layout records were converted to, when one was asked for.
    #[schema(value_type = Option<String>, example = "seed")]
    pub converted_to: Option<&'static str>,
}

/// Seals values into records and opens them, with a data-key cache in front of the key provider.
pub struct Vault {
    store: Arc<dyn KvStore>,
    provider: Arc<dyn KeyProvider>,
    namespace: Namespace,
    /// The layout new records are sealed in.
    write_format: RecordFormat,
    max_value_bytes: usize,
    limits: CacheLimits,
    encrypt: Mutex<Option<CachedKey>>,
    refill: tokio::sync::Mutex<()>,
    decrypt: Mutex<HashMap<Vec<u8>, CachedKey>>,
    /// Which reading of an ambiguous seed `data_key` opened last (see
    /// [`Vault::decryption_key`]); one vault serves one store (table).
    seed_reading_hint: AtomicUsize,
}

impl Vault {
    /// A vault over `store` and `provider`, writing quintet's layout.
    pub fn new(
        store: Arc<dyn KvStore>,
        provider: Arc<dyn KeyProvider>,
        namespace: Namespace,
        max_value_bytes: usize,
        limits: CacheLimits,
    ) -> Self {
        Self {
            store,
            provider,
            namespace,
            write_format: RecordFormat::V1,
            max_value_bytes,
            limits,
            encrypt: Mutex::new(None),
            refill: tokio::sync::Mutex::new(()),
            decrypt: Mutex::new(HashMap::new()),
            seed_reading_hint: AtomicUsize::new(0),
        }
    }

    /// Seals new records in `format`: quintet's own (the default) or the
    /// seed's, which binds no associated data; only a store that keeps the
    /// seed layout may be given the latter.
    pub fn with_write_format(mut self, format: RecordFormat) -> Result<Self, KvError> {
        if format == RecordFormat::SeedLegacy && !self.store.keeps_seed_layout() {
            return Err(KvError::SeedLayoutUnsupported);
        }
        self.write_format = format;
        Ok(self)
    }

    /// The largest value accepted, in bytes.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    fn provider_call<T>(
        &self,
        op: &'static str,
        result: Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(error) => error.outcome(),
        };
        ::metrics::counter!(metrics::PROVIDER_CALLS, "provider" => self.provider.kind(), "op" => op, "outcome" => outcome).increment(1);
        result
    }

    fn cache_metric(cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        ::metrics::counter!(metrics::DEK_CACHE, "cache" => cache, "result" => result).increment(1);
    }

    /// A data key for sealing `len` bytes, from the cache if it still may be used.
    async fn encryption_key(&self, len: u64) -> Result<(DataKey, WrappedKey), KvError> {
        let cacheable = self.limits.enabled() && len <= self.limits.max_bytes;
        if cacheable {
            if let Some(hit) = self.try_cached(len) {
                Self::cache_metric("encrypt", true);
                return Ok(hit);
            }
            let _one_caller = self.refill.lock().await;
            if let Some(hit) = self.try_cached(len) {
                Self::cache_metric("encrypt", true);
                return Ok(hit);
            }
            Self::cache_metric("encrypt", false);
            let (dek, wrapped) = self.generate().await?;
            let mut entry = CachedKey {
                dek: dek.clone(),
                wrapped: wrapped.clone(),
                created: Instant::now(),
                uses: 0,
                bytes: 0,
            };
            entry.take(&self.limits, len);
            *self
                .encrypt
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(entry);
            return Ok((dek, wrapped));
        }
        self.generate().await
    }

    fn try_cached(&self, len: u64) -> Option<(DataKey, WrappedKey)> {
        let mut slot = self
            .encrypt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = slot.as_mut()?;
        entry
            .take(&self.limits, len)
            .then(|| (entry.dek.clone(), entry.wrapped.clone()))
    }

    async fn generate(&self) -> Result<(DataKey, WrappedKey), KvError> {
        let result = traced(
            call_span(self.provider.kind(), "generate"),
            self.provider.generate(),
        )
        .await;
        self.provider_call("generate", result)
            .map_err(provider_error)
    }

    /// The data key of `record`, from the cache if it still may be used,
    /// and the reading of its wrapped key that opened it.
    ///
    /// A seed item's stored `data_key` may have more than one reading (see
    /// [`crate::domain::seed_key_readings`]): they are tried in order, at
    /// most one provider call each, until one is not refused. Which position
    /// won is remembered for this store, so later records with the same
    /// ambiguity make one call.
    async fn decryption_key(
        &self,
        key: &KvKey,
        record: &SealedRecord,
        len: u64,
    ) -> Result<(DataKey, WrappedKey), KvError> {
        let wrapped = &record.wrapped;
        if self.limits.enabled() {
            let mut cache = self
                .decrypt
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(entry) = cache.get_mut(&wrapped.bytes) {
                if entry.wrapped.key_id == wrapped.key_id && entry.take(&self.limits, len) {
                    Self::cache_metric("decrypt", true);
                    return Ok((entry.dek.clone(), entry.wrapped.clone()));
                }
                cache.remove(&wrapped.bytes);
            }
        }
        Self::cache_metric("decrypt", false);
        let readings = record.wrapped_readings();
        let hint = self.seed_reading_hint.load(Ordering::Relaxed);
        let order = std::iter::once(hint)
            .filter(|&i| i < readings.len())
            .chain((0..readings.len()).filter(|&i| i != hint));
        let mut refused = None;
        let mut opened = None;
        for index in order {
            let candidate = readings[index].clone();
            let result = traced(
                call_span(self.provider.kind(), "unwrap"),
                self.provider.unwrap(&candidate),
            )
            .await;
            match self.provider_call("unwrap", result) {
                Ok(dek) => {
                    if readings.len() > 1 {
                        self.seed_reading_hint.store(index, Ordering::Relaxed);
                    }
                    opened = Some((dek, candidate));
                    break;
                }
                Err(ProviderError::Refused(reason)) => {
                    refused.get_or_insert(reason);
                }
                Err(other) => return Err(provider_error(other)),
            }
        }
        let Some((dek, opened_with)) = opened else {
            return Err(KvError::Integrity {
                key: key.to_string(),
                reason: refused.map_or(IntegrityFailure::NoWrappedKey, IntegrityFailure::Refused),
            });
        };
        if self.limits.enabled() {
            let mut cache = self
                .decrypt
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= self.limits.max_entries {
                let limits = self.limits;
                cache.retain(|_, e| e.created.elapsed() < limits.max_age);
                if cache.len() >= self.limits.max_entries {
                    cache.clear();
                }
            }
            cache.insert(
                wrapped.bytes.clone(),
                CachedKey {
                    dek: dek.clone(),
                    wrapped: opened_with.clone(),
                    created: Instant::now(),
                    uses: 1,
                    bytes: len,
                },
            );
        }
        Ok((dek, opened_with))
    }

    /// Seals and stores `value` under `key`.
    pub async fn set(&self, key: &KvKey, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.max_value_bytes {
            return Err(KvError::TooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        let (dek, wrapped) = self.encryption_key(value.len() as u64).await?;
        let record = envelope::seal(
            &dek,
            wrapped,
            self.write_format,
            &self.namespace,
            key,
            value,
        )
        .map_err(KvError::Seal)?;
        traced(
            store_span(self.store.engine(), "put"),
            self.store.put(key, &record),
        )
        .await?;
        Ok(())
    }

    /// The plaintext stored under `key`.
    pub async fn get(&self, key: &KvKey) -> Result<Vec<u8>, KvError> {
        let record = traced(store_span(self.store.engine(), "get"), self.store.get(key))
            .await?
            .ok_or_else(|| KvError::NotFound(key.to_string()))?;
        let (dek, _) = self
            .decryption_key(key, &record, record.plaintext_len())
            .await?;
        envelope::open(&dek, record, &self.namespace, key).map_err(|e| Self::open_error(key, e))
    }

    /// Removes `key`; [`KvError::NotFound`] if there was nothing to remove.
    pub async fn delete(&self, key: &KvKey) -> Result<(), KvError> {
        if traced(
            store_span(self.store.engine(), "delete"),
            self.store.delete(key),
        )
        .await?
        {
            Ok(())
        } else {
            Err(KvError::NotFound(key.to_string()))
        }
    }

    /// One page of the keys starting with `prefix` after `after`.
    pub async fn list(
        &self,
        prefix: &KeyPrefix,
        after: Option<&KvKey>,
        limit: PageLimit,
    ) -> Result<Page, KvError> {
        Ok(traced(
            store_span(self.store.engine(), "page"),
            self.store.page(prefix, after, limit),
        )
        .await?)
    }

    /// Re-wraps every stored data key under the provider's current key (after
    /// making a new one where the provider manages its own). Values are not
    /// re-encrypted and each record keeps its layout. Each distinct data key
    /// is unwrapped and wrapped once.
    ///
    /// With `convert`, records in another layout are instead re-encrypted
    /// into that one under a current data key (compare-and-set: a record
    /// set meanwhile is left as it is).
    pub async fn rotate(&self, convert: Option<RecordFormat>) -> Result<RotateReport, KvError> {
        type Readings = (WrappedKey, Vec<Vec<u8>>);
        if convert == Some(RecordFormat::SeedLegacy) && !self.store.keeps_seed_layout() {
            return Err(KvError::SeedLayoutUnsupported);
        }
        let result = self.provider.add_key().await;
        let new_key = self
            .provider_call("add_key", result)
            .map_err(provider_error)?;
        let key_id = self
            .provider
            .current_key_id()
            .await
            .map_err(provider_error)?;
        *self
            .encrypt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let mut report = RotateReport {
            key_id: key_id.clone(),
            new_key,
            scanned: 0,
            rewrapped: 0,
            current: 0,
            changed_meanwhile: 0,
            converted: 0,
            converted_to: convert.map(format_name),
        };
        // Each distinct stored wrapped key (with its other readings) → (the
        // reading that opened it, its new wrapping).
        let mut rewrapped: HashMap<Readings, (WrappedKey, WrappedKey)> = HashMap::new();
        let prefix = KeyPrefix::default();
        let Ok(limit) = PageLimit::parse(Some("1000")) else {
            unreachable!("1000 is PageLimit::MAX, a valid page size")
        };
        let mut after: Option<KvKey> = None;
        loop {
            let page = self.store.page(&prefix, after.as_ref(), limit).await?;
            for entry in &page.entries {
                report.scanned += 1;
                let Some(record) = self.store.get(&entry.key).await? else {
                    report.changed_meanwhile += 1;
                    continue;
                };
                if let Some(target) = convert.filter(|&f| f != record.format) {
                    if self.convert(&entry.key, record, target).await? {
                        report.converted += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                    continue;
                }
                if record.wrapped.key_id == key_id {
                    report.current += 1;
                    continue;
                }
                let stored = (record.wrapped.clone(), record.wrapped_alternates.clone());
                let (old, new) = if let Some(done) = rewrapped.get(&stored) {
                    done.clone()
                } else {
                    let (dek, old) = self.decryption_key(&entry.key, &record, 0).await?;
                    let result = self.provider.wrap(&dek).await;
                    let new = self.provider_call("wrap", result).map_err(provider_error)?;
                    rewrapped.insert(stored, (old.clone(), new.clone()));
                    (old, new)
                };
                if self.store.rewrap(&entry.key, &old, &new).await? {
                    report.rewrapped += 1;
                } else {
                    report.changed_meanwhile += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tracing::info!(key_id = %report.key_id, scanned = report.scanned, rewrapped = report.rewrapped, converted = report.converted, converted_to = report.converted_to.unwrap_or("-"), "kv data keys rotated");
        Ok(report)
    }

    /// Re-encrypts `record` (stored under `key`) into `target`'s layout
    /// under a current data key; `false` if the record changed meanwhile.
    async fn convert(
        &self,
        key: &KvKey,
        record: SealedRecord,
        target: RecordFormat,
    ) -> Result<bool, KvError> {
        let (dek, _) = self
            .decryption_key(key, &record, record.plaintext_len())
            .await?;
        let plaintext = envelope::open(&dek, record.clone(), &self.namespace, key)
            .map_err(|e| Self::open_error(key, e))?;
        let (dek, wrapped) = self.encryption_key(plaintext.len() as u64).await?;
        let converted = envelope::seal(&dek, wrapped, target, &self.namespace, key, &plaintext)
            .map_err(KvError::Seal)?;
        Ok(self.store.replace(key, &record, &converted).await?)
    }

    fn open_error(key: &KvKey, error: EnvelopeError) -> KvError {
        match error {
            EnvelopeError::Authentication => KvError::Integrity {
                key: key.to_string(),
                reason: IntegrityFailure::Envelope(error),
            },
            other => KvError::Seal(other),
        }
    }
}

/// The name of a layout, as `--kv-write-format` and `convert` spell it.
pub fn format_name(format: RecordFormat) -> &'static str {
    match format {
        RecordFormat::V1 => "quintet",
        RecordFormat::SeedLegacy => "seed",
    }
}

fn provider_error(error: ProviderError) -> KvError {
    match error {
        ProviderError::Unavailable(backend) => KvError::Provider(backend),
        ProviderError::Refused(reason) => KvError::Integrity {
            key: String::new(),
            reason: IntegrityFailure::Refused(reason),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::adapters::local_keys::LocalKeyProvider;
    use crate::adapters::redb::RedbKvStore;

    /// The real local provider, counting the calls that reach it.
    struct Counting(LocalKeyProvider, AtomicU64, AtomicU64);

    #[async_trait]
    impl KeyProvider for Counting {
        fn kind(&self) -> &'static str {
            "local"
        }
        async fn current_key_id(&self) -> Result<String, ProviderError> {
            self.0.current_key_id().await
        }
        async fn generate(&self) -> Result<(DataKey, WrappedKey), ProviderError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.generate().await
        }
        async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, ProviderError> {
            self.2.fetch_add(1, Ordering::SeqCst);
            self.0.unwrap(wrapped).await
        }
        async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, ProviderError> {
            self.0.wrap(key).await
        }
        async fn add_key(&self) -> Result<bool, ProviderError> {
            self.0.add_key().await
        }
    }

    struct Fixture {
        vault: Vault,
        provider: Arc<Counting>,
        store: Arc<RedbKvStore>,
        _dir: tempfile::TempDir,
    }

    fn fixture(limits: CacheLimits) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let provider = Arc::new(Counting(
            LocalKeyProvider::open_dir(&dir.path().join("keys")).expect("keys"),
            AtomicU64::new(0),
            AtomicU64::new(0),
        ));
        let store = Arc::new(RedbKvStore::open(&dir.path().join("kv.redb")).expect("store"));
        let vault = Vault::new(
            store.clone(),
            provider.clone(),
            Namespace::default(),
            1 << 20,
            limits,
        );
        Fixture {
            vault,
            provider,
            store,
            _dir: dir,
        }
    }

    fn limits(max_uses: u64) -> CacheLimits {
        CacheLimits {
            max_age: Duration::from_mins(5),
            max_uses,
            max_bytes: 1 << 30,
            max_entries: 100,
        }
    }

    fn key(name: &str) -> KvKey {
        KvKey::new(name).expect("valid")
    }

    #[tokio::test]
    async fn a_set_after_max_uses_asks_the_provider_again() {
        let f = fixture(limits(3));
        for i in 0..7 {
            f.vault
                .set(&key(&format!("k{i}")), b"v")
                .await
                .expect("set");
        }
        // Uses 1-3 on the first key, 4-6 on the second, 7 on a third.
        assert_eq!(f.provider.1.load(Ordering::SeqCst), 3);
        for i in 0..7 {
            assert_eq!(
                f.vault.get(&key(&format!("k{i}"))).await.expect("get"),
                b"v"
            );
        }
        assert_eq!(
            f.provider.2.load(Ordering::SeqCst),
            3,
            "one unwrap per data key"
        );
    }

    #[tokio::test]
    async fn zero_turns_caching_off() {
        let f = fixture(limits(0));
        for i in 0..5 {
            f.vault
                .set(&key(&format!("k{i}")), b"v")
                .await
                .expect("set");
            f.vault.get(&key(&format!("k{i}"))).await.expect("get");
        }
        assert_eq!(f.provider.1.load(Ordering::SeqCst), 5);
        assert_eq!(f.provider.2.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn byte_bound_and_oversized_values() {
        let f = fixture(CacheLimits {
            max_bytes: 10,
            ..limits(100)
        });
        f.vault.set(&key("a"), &[1; 6]).await.expect("set");
        f.vault
            .set(&key("b"), &[1; 6])
            .await
            .expect("set: 12 bytes > 10, new key");
        f.vault
            .set(&key("c"), &[1; 11])
            .await
            .expect("set: bigger than the bound, uncached");
        assert_eq!(f.provider.1.load(Ordering::SeqCst), 3);
        let err = f
            .vault
            .set(&key("d"), &vec![0; (1 << 20) + 1])
            .await
            .expect_err("too large");
        assert!(matches!(err, KvError::TooLarge { .. }), "{err}");
        assert!(matches!(
            f.vault.get(&key("d")).await,
            Err(KvError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn rotation_rewraps_each_data_key_once_and_values_still_open() {
        let f = fixture(limits(2));
        for i in 0..5 {
            f.vault
                .set(&key(&format!("k{i}")), format!("value {i}").as_bytes())
                .await
                .expect("set");
        }
        let before = f
            .store
            .get(&key("k0"))
            .await
            .expect("get")
            .expect("present");
        let report = f.vault.rotate(None).await.expect("rotate");
        assert!(report.new_key);
        assert!(report.key_id.starts_with("local:v2:"), "{}", report.key_id);
        assert_eq!(
            (report.scanned, report.rewrapped, report.current),
            (5, 5, 0)
        );
        let after = f
            .store
            .get(&key("k0"))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(after.wrapped.key_id, report.key_id);
        assert_eq!(
            after.ciphertext, before.ciphertext,
            "values are not re-encrypted"
        );
        for i in 0..5 {
            assert_eq!(
                f.vault.get(&key(&format!("k{i}"))).await.expect("get"),
                format!("value {i}").as_bytes()
            );
        }
        f.vault.set(&key("new"), b"x").await.expect("set");
        let new = f
            .store
            .get(&key("new"))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            new.wrapped.key_id, report.key_id,
            "new sets use the new key"
        );
        let again = f.vault.rotate(None).await.expect("rotate again");
        assert_eq!(
            again.current, 0,
            "a second rotation made a v3 key: all rewrapped"
        );
        assert_eq!(again.rewrapped, 6);
    }

    /// A store whose records read two ways, the first of them wrong (what a
    /// seed item's ambiguous `data_key` looks like to the vault).
    struct Ambiguous(Arc<RedbKvStore>);

    #[async_trait]
    impl KvStore for Ambiguous {
        fn engine(&self) -> &'static str {
            "redb"
        }

        async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError> {
            self.0.put(key, record).await
        }
        async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError> {
            Ok(self.0.get(key).await?.map(|mut record| {
                let real = std::mem::replace(&mut record.wrapped.bytes, b"not a key".to_vec());
                record.wrapped_alternates = vec![real];
                record
            }))
        }
        async fn delete(&self, key: &KvKey) -> Result<bool, StoreError> {
            self.0.delete(key).await
        }
        async fn page(
            &self,
            prefix: &KeyPrefix,
            after: Option<&KvKey>,
            limit: PageLimit,
        ) -> Result<Page, StoreError> {
            self.0.page(prefix, after, limit).await
        }
        async fn rewrap(
            &self,
            key: &KvKey,
            old: &WrappedKey,
            new: &WrappedKey,
        ) -> Result<bool, StoreError> {
            self.0.rewrap(key, old, new).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn close(&self) {}
    }

    #[tokio::test]
    async fn the_reading_that_opened_a_record_is_tried_first_next_time() {
        let f = fixture(limits(0));
        f.vault.set(&key("a"), b"first").await.expect("set");
        f.vault.set(&key("b"), b"second").await.expect("set");
        let vault = Vault::new(
            Arc::new(Ambiguous(f.store.clone())),
            f.provider.clone(),
            Namespace::default(),
            1 << 20,
            limits(0),
        );
        let unwraps = || f.provider.2.load(Ordering::SeqCst);
        let before = unwraps();
        assert_eq!(vault.get(&key("a")).await.expect("get"), b"first");
        assert_eq!(
            unwraps() - before,
            2,
            "the wrong reading, then the right one"
        );
        assert_eq!(vault.get(&key("b")).await.expect("get"), b"second");
        assert_eq!(unwraps() - before, 3, "remembered: one call");
        // Rotation rewraps the reading that opened, and the record still opens.
        let report = vault.rotate(None).await.expect("rotate");
        assert_eq!(report.rewrapped, 2);
        assert_eq!(f.vault.get(&key("a")).await.expect("get"), b"first");
    }

    #[tokio::test]
    async fn a_record_copied_to_another_key_or_tampered_is_an_integrity_error() {
        let f = fixture(limits(100));
        f.vault
            .set(&key("alice"), b"alice's secret")
            .await
            .expect("set");
        let record = f
            .store
            .get(&key("alice"))
            .await
            .expect("get")
            .expect("present");
        f.store.put(&key("bob"), &record).await.expect("copy");
        assert!(matches!(
            f.vault.get(&key("bob")).await,
            Err(KvError::Integrity { .. })
        ));
        let mut tampered = record.clone();
        tampered.wrapped.bytes[20] ^= 1;
        f.store.put(&key("carol"), &tampered).await.expect("put");
        assert!(matches!(
            f.vault.get(&key("carol")).await,
            Err(KvError::Integrity { .. })
        ));
    }
}
