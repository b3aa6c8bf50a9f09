//! Embedded counter store on redb, one file in the data directory.
//!
//! A flush is one durable write transaction; point reads run inline (see the
//! messages store for why: a cached read costs less than a thread hand-off).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::{Counter, CounterKey, KeyPrefix, PageLimit};
use crate::ports::{CounterStore, FlushBatch, Page, StoreError};

/// key → (total, updated_at_ms)
const COUNTERS: TableDefinition<&str, (i64, i64)> = TableDefinition::new("counters");
/// instance id → highest flushed sequence
const FLUSHES: TableDefinition<&str, u64> = TableDefinition::new("counter_flushes");

pub struct RedbCounterStore {
    db: Arc<Database>,
    closed: AtomicBool,
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

impl RedbCounterStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::create_database(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(COUNTERS).map_err(unavailable)?;
        txn.open_table(FLUSHES).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(db),
            closed: AtomicBool::new(false),
        })
    }

    fn db(&self) -> Result<&Database, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("store is closed"));
        }
        Ok(&self.db)
    }
}

fn apply_batch(db: &Database, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let mut totals = Vec::with_capacity(batch.deltas.len());
    {
        let mut counters = txn.open_table(COUNTERS).map_err(unavailable)?;
        let mut flushes = txn.open_table(FLUSHES).map_err(unavailable)?;
        let done = flushes
            .get(batch.instance.as_str())
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0);
        let replay = batch.seq <= done;
        let now = now_ms();
        for (key, delta) in &batch.deltas {
            let current = counters
                .get(key.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().0);
            let value = if replay {
                current.unwrap_or(0)
            } else {
                let value = current.unwrap_or(0).checked_add(*delta).ok_or_else(|| {
                    StoreError::Overflow {
                        key: key.to_string(),
                    }
                })?;
                counters
                    .insert(key.as_str(), (value, now))
                    .map_err(unavailable)?;
                value
            };
            totals.push(Counter {
                key: key.clone(),
                value,
            });
        }
        if !replay {
            flushes
                .insert(batch.instance.as_str(), batch.seq)
                .map_err(unavailable)?;
        }
    }
    txn.commit().map_err(unavailable)?;
    Ok(totals)
}

#[async_trait]
impl CounterStore for RedbCounterStore {
    async fn load(&self, key: &CounterKey) -> Result<Option<i64>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(COUNTERS).map_err(unavailable)?;
        Ok(table
            .get(key.as_str())
            .map_err(unavailable)?
            .map(|v| v.value().0))
    }

    async fn load_with_flushed(
        &self,
        key: &CounterKey,
        instance: &str,
    ) -> Result<(Option<i64>, u64), StoreError> {
        // One read transaction: one snapshot of both tables.
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let counters = txn.open_table(COUNTERS).map_err(unavailable)?;
        let flushes = txn.open_table(FLUSHES).map_err(unavailable)?;
        let total = counters
            .get(key.as_str())
            .map_err(unavailable)?
            .map(|v| v.value().0);
        let flushed = flushes
            .get(instance)
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok((total, flushed))
    }

    async fn apply(&self, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError> {
        self.db()?;
        let db = self.db.clone();
        let batch = batch.clone();
        // A durable commit fsyncs: off the async workers.
        tokio::task::spawn_blocking(move || apply_batch(&db, &batch))
            .await
            .map_err(unavailable)?
    }

    async fn flushed_seq(&self, instance: &str) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(FLUSHES).map_err(unavailable)?;
        Ok(table
            .get(instance)
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&CounterKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(COUNTERS).map_err(unavailable)?;
        let start = match after {
            Some(after) if after.as_str() >= prefix.as_str() => after.as_str(),
            _ => prefix.as_str(),
        };
        let mut items = Vec::new();
        let mut next = None;
        for entry in table.range(start..).map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            let key = key.value();
            if !key.starts_with(prefix.as_str()) {
                break;
            }
            if after.is_some_and(|a| a.as_str() == key) {
                continue;
            }
            if items.len() == limit.as_usize() {
                next = items.last().map(|c: &Counter| c.key.clone());
                break;
            }
            let key = CounterKey::parse(key.to_owned(), usize::MAX).map_err(unavailable)?;
            items.push(Counter {
                key,
                value: value.value().0,
            });
        }
        Ok(Page { items, next })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db()?.begin_read().map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
