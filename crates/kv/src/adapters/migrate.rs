//! Moves a kv store written by the redb engine (`kv.redb`, the embedded
//! engine before fjall) into the fjall store (`kv.fjall/`).
//!
//! Safe to interrupt at any point, kill -9 included: the redb file is only
//! read, and renamed aside (`kv.redb.migrated`) only after every record was
//! copied, fsynced and compared byte for byte. Records are copied in key
//! order, each chunk one durable batch, so a second run resumes after the
//! last key already copied. Records are copied sealed, as stored: the
//! migration needs no key provider and never sees a plaintext.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use fjall::PersistMode;
use platform::backend::{BackendError, FailureKind};
pub use platform::embedded::Migrated;
use platform::integrity::Progress;
use redb::{ReadableTable, ReadableTableMetadata, TableHandle};

use super::fjall::{FjallKvStore, Keyspaces, MIGRATED_FROM, failed};
use super::redb::ITEMS;
use crate::ports::StoreError;

/// Records copied per durable batch.
const CHUNK: usize = 1_000;

/// Why a migration stopped. Nothing is lost: run it again to resume.
pub type MigrateError = platform::embedded::MigrateError<StoreError>;

impl From<StoreError> for MigrateError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

fn old_failed<E: Into<redb::Error>>(operation: &'static str) -> impl Fn(E) -> MigrateError {
    move |error| {
        MigrateError::Store(StoreError::Unavailable(BackendError::redb(
            operation, error,
        )))
    }
}

/// Copies every record of the redb file `old` into the fjall store `new`
/// (created if missing, resumed if a run was interrupted), compares each
/// copy with its original, records the migration in the new store and
/// renames `old` to `<old>.migrated`. `progress` sees (done, total) for the
/// copy, then for the comparison.
pub fn from_redb(old: &Path, new: &Path, progress: Progress<'_>) -> Result<Migrated, MigrateError> {
    let source = platform::integrity::open_existing(old).map_err(MigrateError::Open)?;
    let spaces = Keyspaces::open(new)?;
    let txn = source.begin_read().map_err(old_failed("read"))?;
    let has_table = txn
        .list_tables()
        .map_err(old_failed("read"))?
        .any(|t| t.name() == ITEMS.name());
    let mut report = Migrated {
        total: 0,
        copied: 0,
        verified: 0,
        unreadable: 0,
        old_file: PathBuf::new(),
    };
    if has_table {
        let items = txn.open_table(ITEMS).map_err(old_failed("read"))?;
        report.total = items.len().map_err(old_failed("read"))?;

        // Copy, resuming after the last key an interrupted run made durable.
        let resume_after = match spaces.items.last_key_value() {
            Some(guard) => Some(guard.key().map_err(failed("migrate"))?),
            None => None,
        };
        let resume_after = resume_after.map(|key| String::from_utf8_lossy(&key).into_owned());
        let mut done = match &resume_after {
            Some(last) => items
                .range::<&str>(..=last.as_str())
                .map_err(old_failed("read"))?
                .count() as u64,
            None => 0,
        };
        let start = match &resume_after {
            Some(last) => Bound::Excluded(last.as_str()),
            None => Bound::Unbounded,
        };
        let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
        for entry in items
            .range::<&str>((start, Bound::Unbounded))
            .map_err(old_failed("read"))?
        {
            let (key, value) = entry.map_err(old_failed("read"))?;
            batch.insert(&spaces.items, key.value(), value.value());
            report.copied += 1;
            done += 1;
            if batch.len() == CHUNK {
                batch.commit().map_err(failed("migrate"))?;
                batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
                progress(done, report.total);
            }
        }
        batch.commit().map_err(failed("migrate"))?;
        progress(done, report.total);

        // Compare every record in the new store with its original.
        let mut compared = 0;
        for entry in items.iter().map_err(old_failed("read"))? {
            let (key, value) = entry.map_err(old_failed("read"))?;
            compared += 1;
            if compared % CHUNK as u64 == 0 {
                progress(compared, report.total);
            }
            let copy = spaces.items.get(key.value()).map_err(failed("migrate"))?;
            if copy.as_deref() != Some(value.value()) {
                return Err(MigrateError::Mismatch {
                    record: format!(
                        "the record under key {:?}",
                        key.value().chars().take(300).collect::<String>()
                    ),
                    old: old.to_path_buf(),
                    new: new.to_path_buf(),
                });
            }
            report.verified += 1;
        }
        progress(compared, report.total);
    }
    drop(txn);
    drop(source);
    spaces
        .meta
        .insert(MIGRATED_FROM, old.to_string_lossy().as_bytes())
        .map_err(failed("migrate"))?;
    spaces
        .db
        .persist(PersistMode::SyncAll)
        .map_err(failed("migrate"))?;
    report.old_file = platform::embedded::retire(old)?;
    Ok(report)
}

/// Opens the embedded kv store `new`, first migrating the redb file `old`
/// into it when there is one (logged: start, progress, counts).
pub fn open_embedded(old: &Path, new: &Path) -> Result<FjallKvStore, StoreError> {
    platform::embedded::migrate_logged("kv", old, new, |progress| from_redb(old, new, progress))
        .map_err(|e| {
            StoreError::Unavailable(BackendError::new("fjall", "migrate", FailureKind::Other, e))
        })?;
    FjallKvStore::open(new)
}
