//! Embedded kv store on redb: one table, key → encoded [`SealedRecord`].
//!
//! Writes (puts, deletes, rewraps) go through the platform's group-commit
//! writer: whatever is queued commits in one durable transaction, in order,
//! and each caller is answered once its transaction is on disk. Reads run
//! inline against MVCC snapshots and never wait for the writer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use platform::group_commit::{CommitError, GroupCommit};
use redb::{Database, ReadableTable, Table, TableDefinition};

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

/// Writes waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most writes one transaction commits.
const MAX_BATCH: usize = 256;

/// One write, applied in the writer's transaction.
enum Write {
    Put {
        key: KvKey,
        bytes: Vec<u8>,
    },
    Delete {
        key: KvKey,
    },
    Rewrap {
        key: KvKey,
        old: WrappedKey,
        new: WrappedKey,
    },
}

/// A write's outcome: `true` when it changed something (a put always does).
type Outcome = Result<bool, StoreError>;

pub struct RedbKvStore {
    db: Arc<Database>,
    writer: GroupCommit<Write, Outcome>,
    closed: AtomicBool,
}

impl RedbKvStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::create_database(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(ITEMS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer = GroupCommit::spawn("kv", QUEUE_DEPTH, MAX_BATCH, move |writes: &[Write]| {
            commit(&writer_db, writes).map_err(|e| e.to_string())
        })
        .map_err(unavailable)?;
        Ok(Self {
            db,
            writer,
            closed: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("store is closed"));
        }
        Ok(())
    }

    async fn write(&self, write: Write) -> Outcome {
        self.check_open()?;
        self.writer.submit(write).await.map_err(|e| match e {
            CommitError::Closed => unavailable("store is closed"),
            CommitError::Failed(error) => unavailable(error),
        })?
    }
}

/// Applies `writes` in order in one transaction and commits it.
fn commit(db: &Database, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let outcomes = {
        let mut table = txn.open_table(ITEMS).map_err(unavailable)?;
        writes
            .iter()
            .map(|write| apply(&mut table, write))
            .collect::<Result<Vec<_>, StoreError>>()?
    };
    txn.commit().map_err(unavailable)?;
    Ok(outcomes)
}

/// One write: `Err` fails the transaction, `Ok(Err)` only this write.
fn apply(table: &mut Table<&str, &[u8]>, write: &Write) -> Result<Outcome, StoreError> {
    Ok(match write {
        Write::Put { key, bytes } => {
            table
                .insert(key.as_str(), bytes.as_slice())
                .map_err(unavailable)?;
            Ok(true)
        }
        Write::Delete { key } => Ok(table.remove(key.as_str()).map_err(unavailable)?.is_some()),
        Write::Rewrap { key, old, new } => {
            let current = match table.get(key.as_str()).map_err(unavailable)? {
                Some(value) => decode(key.as_str(), value.value()),
                None => return Ok(Ok(false)),
            };
            match current {
                Ok(mut record) if &record.wrapped == old => {
                    record.wrapped = new.clone();
                    table
                        .insert(key.as_str(), record.encode().as_slice())
                        .map_err(unavailable)?;
                    Ok(true)
                }
                Ok(_) => Ok(false),
                Err(corrupt) => Err(corrupt),
            }
        }
    })
}

#[async_trait]
impl KvStore for RedbKvStore {
    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError> {
        self.write(Write::Put {
            key: key.clone(),
            bytes: record.encode(),
        })
        .await
        .map(|_| ())
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
        self.write(Write::Delete { key: key.clone() }).await
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
        self.write(Write::Rewrap {
            key: key.clone(),
            old: old.clone(),
            new: new.clone(),
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_open()?;
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.close().await;
    }
}
