//! Embedded kv store on redb: one table, key → encoded [`SealedRecord`].
//!
//! Each write is its own durable transaction on the blocking pool (redb
//! serializes writers); reads run against MVCC snapshots. Group commit, as
//! the messages store does, is the next step for set throughput.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::{Entry, KeyPrefix, KvKey, Page, PageLimit, SealedRecord, WrappedKey};
use crate::ports::{KvStore, StoreError};

const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("kv_items");

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn decode(key: &str, bytes: &[u8]) -> Result<SealedRecord, StoreError> {
    SealedRecord::decode(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

pub struct RedbKvStore {
    db: Arc<Database>,
    closed: AtomicBool,
}

impl RedbKvStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = Database::create(path)
            .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(ITEMS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(db),
            closed: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("store is closed"));
        }
        Ok(())
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| unavailable(format!("store writer failed: {e}")))?
    }
}

#[async_trait]
impl KvStore for RedbKvStore {
    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError> {
        let key = key.clone();
        let bytes = record.encode();
        self.write(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            txn.open_table(ITEMS)
                .map_err(unavailable)?
                .insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError> {
        self.check_open()?;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        match table.get(key.as_str()).map_err(unavailable)? {
            Some(value) => decode(key.as_str(), value.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn delete(&self, key: &KvKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.write(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let removed = txn
                .open_table(ITEMS)
                .map_err(unavailable)?
                .remove(key.as_str())
                .map_err(unavailable)?
                .is_some();
            txn.commit().map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&KvKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        self.check_open()?;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ITEMS).map_err(unavailable)?;
        let limit = limit.get() as usize;
        let start = match after {
            Some(after) if after.as_str() >= prefix.as_str() => after.as_str(),
            _ => prefix.as_str(),
        };
        let mut entries = Vec::new();
        let mut next = None;
        for item in table.range(start..).map_err(unavailable)? {
            let (key, value) = item.map_err(unavailable)?;
            let key = key.value();
            if !prefix.matches(key) {
                break;
            }
            if after.is_some_and(|a| a.as_str() == key) {
                continue;
            }
            if entries.len() == limit {
                next = entries.last().map(|e: &Entry| e.key.clone());
                break;
            }
            let record = decode(key, value.value())?;
            let key = KvKey::new(key).map_err(|e| StoreError::Corrupt {
                key: key.chars().take(64).collect(),
                reason: e.to_string(),
            })?;
            entries.push(Entry {
                key,
                size: record.plaintext_len(),
            });
        }
        Ok(Page { entries, next })
    }

    async fn rewrap(
        &self,
        key: &KvKey,
        old: &WrappedKey,
        new: &WrappedKey,
    ) -> Result<bool, StoreError> {
        let (key, old, new) = (key.clone(), old.clone(), new.clone());
        self.write(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let replaced = {
                let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
                let current = match table.get(key.as_str()).map_err(unavailable)? {
                    Some(value) => Some(decode(key.as_str(), value.value())?),
                    None => None,
                };
                match current {
                    Some(mut record) if record.wrapped == old => {
                        record.wrapped = new;
                        table
                            .insert(key.as_str(), record.encode().as_slice())
                            .map_err(unavailable)?;
                        true
                    }
                    _ => false,
                }
            };
            txn.commit().map_err(unavailable)?;
            Ok(replaced)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
