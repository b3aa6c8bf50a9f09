//! Embedded kv store on fjall (a log-structured merge tree), one directory
//! in the data directory: the default embedded engine.
//!
//! Why not redb: a durable redb commit rewrites every B-tree page it
//! touched, ~10.7 KB written per 100-byte set; fjall appends each group to
//! its journal, one fsync per group (BENCHMARKS.md, "Embedded engines").
//! Values of 1 KiB and more are kept apart from the keys (fjall's key-value
//! separation), so compaction moves keys, not megabyte values.
//!
//! Writes (puts, deletes, rewraps) go through the platform's group-commit
//! writer: whatever is queued is applied in order and committed as one
//! batch, fsynced before any caller is answered. Reads run inline and never
//! wait for the writer.
//!
//! Layout, in keyspaces of one database:
//! - `kv_items`: key (UTF-8) → encoded [`SealedRecord`];
//! - `meta`: `migrated_from` → the redb file this store was migrated from;
//! - `quarantine`: `kv_items/<key>` → a record `verify --quarantine` moved aside.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode, Readable,
};
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use platform::integrity::{CorruptRecord, Progress, ScanReport};

use super::listing::{PageBuilder, record_problem};
use super::redb::ScanError;
use crate::domain::{KeyPrefix, KvKey, Page, PageLimit, RecordProblem, SealedRecord, WrappedKey};
use crate::ports::{KvStore, StoreError};

const ITEMS: &str = "kv_items";
const META: &str = "meta";
const QUARANTINE: &str = "quarantine";
/// `meta` key naming the redb file whose records this store holds.
pub(crate) const MIGRATED_FROM: &[u8] = b"migrated_from";

const ENGINE: &str = "fjall";

/// Writes waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most writes one batch commits.
const MAX_BATCH: usize = 256;

/// A failed fjall call of `operation`.
pub(crate) fn failed(operation: &'static str) -> impl Fn(fjall::Error) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::fjall(operation, error))
}

fn decode(key: &str, bytes: &[u8]) -> Result<SealedRecord, StoreError> {
    SealedRecord::decode(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The database and its keyspaces.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    pub(crate) db: Database,
    pub(crate) items: Keyspace,
    pub(crate) meta: Keyspace,
}

impl Keyspaces {
    /// Opens (or creates) the database in `dir` with its keyspaces.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::open_keyspaces(dir).map_err(BackendError::from)?;
        let items = db
            .keyspace(ITEMS, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(platform::embedded::FJALL_MEMTABLE_BYTES)
                    .with_kv_separation(Some(KvSeparationOptions::default()))
            })
            .map_err(failed("open"))?;
        let meta = db
            .keyspace(META, KeyspaceCreateOptions::default)
            .map_err(failed("open"))?;
        Ok(Self { db, items, meta })
    }
}

/// One write, applied in the writer's batch.
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

/// A [`KvStore`] in an embedded fjall database, written through a group-commit writer.
pub struct FjallKvStore {
    spaces: Keyspaces,
    writer: GroupCommit<Write, Outcome>,
    closed: CloseGate,
}

impl FjallKvStore {
    /// Opens (or creates) the store directory; fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let spaces = Keyspaces::open(dir)?;
        let writer_spaces = spaces.clone();
        let writer = GroupCommit::spawn("kv", QUEUE_DEPTH, MAX_BATCH, move |writes: &[Write]| {
            commit(&writer_spaces, writes)
                .map_err(|e| BackendError::new(ENGINE, "commit", FailureKind::Other, e))
        })
        .map_err(|e| BackendError::new(ENGINE, "start writer", FailureKind::Other, e))?;
        Ok(Self {
            spaces,
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
            failed @ CommitError::Failed(_) => failed.into(),
        })?
    }
}

/// Applies `writes` in order (a later write sees an earlier one in the same
/// batch) and commits them as one batch, fsynced before it returns.
fn commit(spaces: &Keyspaces, writes: &[Write]) -> Result<Vec<Outcome>, StoreError> {
    // What this batch has written so far: `None` for a delete. A put's
    // value is borrowed from its write, not copied.
    let mut pending: HashMap<&str, Option<Cow<'_, [u8]>>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(writes.len());
    let current = |pending: &HashMap<&str, Option<Cow<'_, [u8]>>>, key: &str| match pending.get(key)
    {
        Some(value) => Ok(value.as_deref().map(<[u8]>::to_vec)),
        None => spaces
            .items
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(failed("write")),
    };
    for write in writes {
        outcomes.push(match write {
            Write::Put { key, bytes } => {
                pending.insert(key.as_str(), Some(Cow::Borrowed(bytes.as_slice())));
                Ok(true)
            }
            Write::Delete { key } => {
                let existed = current(&pending, key.as_str())?.is_some();
                pending.insert(key.as_str(), None);
                Ok(existed)
            }
            Write::Rewrap { key, old, new } => match current(&pending, key.as_str())? {
                None => Ok(false),
                Some(bytes) => match decode(key.as_str(), &bytes) {
                    Ok(mut record) if &record.wrapped == old => {
                        record.wrapped = new.clone();
                        pending.insert(key.as_str(), Some(Cow::Owned(record.encode())));
                        Ok(true)
                    }
                    Ok(_) => Ok(false),
                    Err(corrupt) => Err(corrupt),
                },
            },
        });
    }
    let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
    for (key, value) in pending {
        match value {
            Some(bytes) => batch.insert(&spaces.items, key, bytes.as_ref()),
            None => batch.remove(&spaces.items, key),
        }
    }
    batch.commit().map_err(failed("commit"))?;
    Ok(outcomes)
}

#[async_trait]
impl KvStore for FjallKvStore {
    fn engine(&self) -> &'static str {
        "fjall"
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
        match self.spaces.items.get(key.as_str()).map_err(failed("get"))? {
            Some(value) => decode(key.as_str(), &value).map(Some),
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
        let snapshot = self.spaces.db.snapshot();
        let mut page = PageBuilder::new(prefix, after, limit);
        for item in snapshot.range(&self.spaces.items, page.start()..) {
            let (key, value) = item.into_inner().map_err(failed("list"))?;
            if !page.push(&String::from_utf8_lossy(&key), &value) {
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
        // Fails once a write failed to reach the disk (fjall then refuses
        // every write: the process must restart and recover its journal).
        self.spaces
            .db
            .persist(PersistMode::Buffer)
            .map_err(failed("ping"))
    }

    async fn close(&self) {
        self.closed.close();
        self.writer.close().await;
    }
}

/// Scans every record of the store in `dir` (which no server may hold):
/// each key must be a valid key and each record must parse, with
/// `authenticate` deciding whether its ciphertext is authentic under that
/// key (only that check sees an altered value or a record moved to another
/// key). With `quarantine`, moves the failures into the `quarantine`
/// keyspace, after which the service answers 404 for their keys.
pub fn verify(
    dir: &Path,
    quarantine: bool,
    progress: Progress<'_>,
    authenticate: &mut dyn FnMut(&KvKey, &SealedRecord) -> Result<(), RecordProblem>,
) -> Result<ScanReport, ScanError> {
    let read = |e: StoreError| match e {
        StoreError::Unavailable(e) => ScanError::Read(e),
        other => ScanError::Read(BackendError::new(
            ENGINE,
            "verify",
            FailureKind::Other,
            other,
        )),
    };
    if !dir.is_dir() {
        return Err(ScanError::Read(BackendError::new(
            ENGINE,
            "open",
            FailureKind::Other,
            format!("{} is not a kv store", dir.display()),
        )));
    }
    let spaces = Keyspaces::open(dir).map_err(read)?;
    let mut report = ScanReport::default();
    let total = spaces.items.approximate_len() as u64;
    let mut bad: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let snapshot = spaces.db.snapshot();
    for item in snapshot.iter(&spaces.items) {
        let (key, value) = item.into_inner().map_err(|e| read(failed("verify")(e)))?;
        report.scanned += 1;
        progress(report.scanned, total.max(report.scanned));
        let problem = match std::str::from_utf8(&key) {
            Err(_) => Some("stored key is not UTF-8".to_owned()),
            Ok(text) => record_problem(text, &value, authenticate),
        };
        if let Some(problem) = problem {
            let name: String = String::from_utf8_lossy(&key).chars().take(300).collect();
            report.corrupt.push(CorruptRecord {
                table: ITEMS,
                key: name,
                problem,
            });
            bad.push((key.to_vec(), value.to_vec()));
        }
    }
    drop(snapshot);
    if quarantine && !bad.is_empty() {
        let quarantined = spaces
            .db
            .keyspace(QUARANTINE, KeyspaceCreateOptions::default)
            .map_err(|e| ScanError::Quarantine(BackendError::fjall("open quarantine", e)))?;
        let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
        for (key, stored) in &bad {
            let mut name = format!("{ITEMS}/").into_bytes();
            name.extend_from_slice(key);
            batch.insert(&quarantined, name, stored.as_slice());
            batch.remove(&spaces.items, key.as_slice());
            report.quarantined += 1;
        }
        batch
            .commit()
            .map_err(|e| ScanError::Quarantine(BackendError::fjall("quarantine", e)))?;
    }
    Ok(report)
}
