//! Embedded kv store on redb: one table, key → encoded [`SealedRecord`].
//!
//! Writes (puts, deletes, rewraps) go through the platform's group-commit
//! writer: whatever is queued commits in one durable transaction, in order,
//! and each caller is answered once its transaction is on disk. Reads run
//! inline against MVCC snapshots and never wait for the writer.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use platform::integrity::{self, CorruptRecord, Progress, ScanReport};
use redb::{Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, TableHandle};

use super::listing::{PageBuilder, record_problem};
use crate::domain::{KeyPrefix, KvKey, Page, PageLimit, RecordProblem, SealedRecord, WrappedKey};
use crate::ports::{KvStore, StoreError};

/// Why `quintet verify` could not scan the store.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The store file could not be opened (missing, in use, unreadable).
    #[error(transparent)]
    Open(platform::integrity::ScanOpenError),
    /// Reading or writing the store failed.
    #[error("{}", platform::backend::chain(.0))]
    Read(BackendError),
    /// A record could not be moved to quarantine.
    #[error("{}", platform::backend::chain(.0))]
    Quarantine(BackendError),
}

pub(crate) const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("kv_items");

const ENGINE: &str = "redb";

/// A failed redb call of `operation`.
fn failed<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::redb(operation, error))
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

/// A [`KvStore`] in an embedded redb file, written through a group-commit writer.
pub struct RedbKvStore {
    db: Arc<Database>,
    writer: GroupCommit<Write, Outcome>,
    closed: CloseGate,
}

impl RedbKvStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::create_database(path)
            .map_err(|e| BackendError::new(ENGINE, "open", FailureKind::Other, e))?;
        let txn = db.begin_write().map_err(failed("open"))?;
        txn.open_table(ITEMS).map_err(failed("open"))?;
        txn.commit().map_err(failed("open"))?;
        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer = GroupCommit::spawn("kv", QUEUE_DEPTH, MAX_BATCH, move |writes: &[Write]| {
            commit(&writer_db, writes).map_err(|e| {
                platform::backend::BackendError::new(
                    "redb",
                    "commit",
                    platform::backend::FailureKind::Other,
                    e,
                )
            })
        })
        .map_err(|e| BackendError::new(ENGINE, "start writer", FailureKind::Other, e))?;
        Ok(Self {
            db,
            writer,
            closed: CloseGate::default(),
        })
    }

    fn check_open(&self) -> Result<(), StoreError> {
        Ok(self.closed.check(ENGINE)?)
    }

    async fn write(&self, write: Write) -> Outcome {
        self.check_open()?;
        self.writer.submit(write).await.map_err(|e| match e {
            CommitError::Closed => BackendError::closed(ENGINE),
            CommitError::Failed(error) => {
                BackendError::new(ENGINE, "commit", FailureKind::Other, error)
            }
        })?
    }
}

/// Applies `writes` in order in one transaction and commits it.
fn commit(db: &Database, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
    let txn = db.begin_write().map_err(failed("commit"))?;
    let outcomes = {
        let mut table = txn.open_table(ITEMS).map_err(failed("commit"))?;
        writes
            .iter()
            .map(|write| apply(&mut table, write))
            .collect::<Result<Vec<_>, StoreError>>()?
    };
    txn.commit().map_err(failed("commit"))?;
    Ok(outcomes)
}

/// One write: `Err` fails the transaction, `Ok(Err)` only this write.
fn apply(table: &mut Table<&str, &[u8]>, write: &Write) -> Result<Outcome, StoreError> {
    let unavailable = failed::<redb::StorageError>("write");
    Ok(match write {
        Write::Put { key, bytes } => {
            table
                .insert(key.as_str(), bytes.as_slice())
                .map_err(&unavailable)?;
            Ok(true)
        }
        Write::Delete { key } => Ok(table.remove(key.as_str()).map_err(&unavailable)?.is_some()),
        Write::Rewrap { key, old, new } => {
            let current = match table.get(key.as_str()).map_err(&unavailable)? {
                Some(value) => decode(key.as_str(), value.value()),
                None => return Ok(Ok(false)),
            };
            match current {
                Ok(mut record) if &record.wrapped == old => {
                    record.wrapped = new.clone();
                    table
                        .insert(key.as_str(), record.encode().as_slice())
                        .map_err(&unavailable)?;
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
    fn engine(&self) -> &'static str {
        "redb"
    }

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
        let txn = self.db.begin_read().map_err(failed("get"))?;
        let table = txn.open_table(ITEMS).map_err(failed("get"))?;
        match table.get(key.as_str()).map_err(failed("get"))? {
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
        let txn = self.db.begin_read().map_err(failed("list"))?;
        let table = txn.open_table(ITEMS).map_err(failed("list"))?;
        let mut page = PageBuilder::new(prefix, after, limit);
        for item in table.range(page.start()..).map_err(failed("list"))? {
            let (key, value) = item.map_err(failed("list"))?;
            if !page.push(key.value(), value.value()) {
                break;
            }
        }
        Ok(page.finish())
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
        self.db.begin_read().map(|_| ()).map_err(failed("ping"))
    }

    async fn close(&self) {
        self.closed.close();
        self.writer.close().await;
    }
}

/// Scans every record of the store file at `path` (which no server may
/// hold): each key must be a valid key and each record must parse, with
/// `authenticate` (given the key and the record) deciding whether its
/// ciphertext is authentic under that key — only the key provider can say,
/// and only that check sees an altered value or a record moved to another
/// key (its associated data names the key it was sealed under). With
/// `quarantine`, moves the failures into the `quarantine` table, after
/// which the service answers 404 for their keys.
pub fn verify(
    path: &Path,
    quarantine: bool,
    progress: Progress<'_>,
    authenticate: &mut dyn FnMut(&KvKey, &SealedRecord) -> Result<(), RecordProblem>,
) -> Result<ScanReport, ScanError> {
    let text = |e: redb::Error| ScanError::Read(BackendError::redb("verify", e));
    let db = integrity::open_existing(path).map_err(ScanError::Open)?;
    let mut report = ScanReport::default();
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let txn = db.begin_read().map_err(|e| text(e.into()))?;
        let has_table = txn
            .list_tables()
            .map_err(|e| text(e.into()))?
            .any(|t| t.name() == ITEMS.name());
        if !has_table {
            return Ok(report);
        }
        let table = txn.open_table(ITEMS).map_err(|e| text(e.into()))?;
        let total = table.len().map_err(|e| text(e.into()))?;
        for item in table.iter().map_err(|e| text(e.into()))? {
            let (key, value) = item.map_err(|e| text(e.into()))?;
            report.scanned += 1;
            progress(report.scanned, total);
            let problem = record_problem(key.value(), value.value(), authenticate);
            if let Some(problem) = problem {
                let name: String = key.value().chars().take(300).collect();
                report.corrupt.push(CorruptRecord {
                    table: ITEMS.name(),
                    key: name,
                    problem,
                });
                bad.push((key.value().to_owned(), value.value().to_vec()));
            }
        }
    }
    if quarantine && !bad.is_empty() {
        let txn = db.begin_write().map_err(|e| text(e.into()))?;
        {
            let mut table = txn.open_table(ITEMS).map_err(|e| text(e.into()))?;
            for (key, stored) in &bad {
                integrity::quarantine(&txn, ITEMS.name(), key, stored)
                    .map_err(ScanError::Quarantine)?;
                table.remove(key.as_str()).map_err(|e| text(e.into()))?;
                report.quarantined += 1;
            }
        }
        txn.commit().map_err(|e| text(e.into()))?;
    }
    Ok(report)
}
