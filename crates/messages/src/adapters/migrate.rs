//! Moves a message store written by the redb engine (`messages.redb`, the
//! embedded engine before fjall) into the fjall store (`messages.fjall/`).
//!
//! Safe to interrupt at any point, kill -9 included: the redb file is only
//! read, and renamed aside (`messages.redb.migrated`) only after every
//! message was copied, fsynced and compared byte for byte. Messages are
//! copied in insertion order, each chunk one durable batch, so a second run
//! resumes after the highest sequence number already copied.

use std::path::{Path, PathBuf};

use fjall::PersistMode;
use platform::backend::{BackendError, FailureKind};
pub use platform::embedded::Migrated;
use platform::integrity::Progress;
use redb::{ReadableTable, ReadableTableMetadata, TableHandle};

use super::fjall::{FjallMessageStore, Keyspaces, MIGRATED_FROM, failed};
use super::redb::{BY_SEQ, MESSAGES};
use crate::ports::StoreError;

/// Messages copied per durable batch.
const CHUNK: usize = 10_000;

/// Why a migration stopped. Nothing is lost: run it again to resume.
pub type MigrateError = platform::embedded::MigrateError<StoreError>;

impl From<StoreError> for MigrateError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

fn old_failed<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> MigrateError {
    move |error| {
        MigrateError::Store(StoreError::Unavailable(BackendError::redb(
            operation, error,
        )))
    }
}

/// Copies every message of the redb file `old` into the fjall store `new`
/// (created if missing, resumed if a run was interrupted), compares each
/// copy with its original, records the migration in the new store and
/// renames `old` to `<old>.migrated`. `progress` sees (done, total) for the
/// copy, then for the comparison.
pub fn from_redb(old: &Path, new: &Path, progress: Progress<'_>) -> Result<Migrated, MigrateError> {
    let source = platform::integrity::open_existing(old).map_err(MigrateError::Open)?;
    let spaces = Keyspaces::open(new)?;
    let txn = source.begin_read().map_err(old_failed("read"))?;
    let has_tables = txn
        .list_tables()
        .map_err(old_failed("read"))?
        .any(|t| t.name() == MESSAGES.name());
    let mut report = Migrated {
        total: 0,
        copied: 0,
        verified: 0,
        unreadable: 0,
        old_file: PathBuf::new(),
    };
    if has_tables {
        let messages = txn.open_table(MESSAGES).map_err(old_failed("read"))?;
        let by_seq = txn.open_table(BY_SEQ).map_err(old_failed("read"))?;
        report.total = by_seq.len().map_err(old_failed("read"))?;

        // Copy, resuming after what an interrupted run made durable.
        let resume_after = spaces.last_seq()?;
        let mut done = by_seq
            .range(..=resume_after)
            .map_err(old_failed("read"))?
            .count() as u64;
        let mut chunk: Vec<(Vec<u8>, u64, i64, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let flush = |chunk: &mut Vec<(Vec<u8>, u64, i64, Vec<u8>)>| {
            let records: Vec<(&[u8], u64, i64, &[u8])> = chunk
                .iter()
                .map(|(d, s, at, b)| (d.as_slice(), *s, *at, b.as_slice()))
                .collect();
            let written = spaces.write_durably(&records, "migrate");
            chunk.clear();
            written
        };
        for entry in by_seq
            .range(resume_after.saturating_add(1)..)
            .map_err(old_failed("read"))?
        {
            let (seq, digest) = entry.map_err(old_failed("read"))?;
            let digest = digest.value();
            done += 1;
            match messages.get(digest).map_err(old_failed("read"))? {
                Some(value) => {
                    let (_, created_at_ms, body) = value.value();
                    chunk.push((digest.to_vec(), seq.value(), created_at_ms, body.to_vec()));
                    report.copied += 1;
                }
                None => report.unreadable += 1,
            }
            if chunk.len() == CHUNK {
                flush(&mut chunk)?;
                progress(done, report.total);
            }
        }
        flush(&mut chunk)?;
        progress(done, report.total);

        report.verified = compare(
            &messages,
            &by_seq,
            &spaces,
            old,
            new,
            report.total,
            progress,
        )?;
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

/// Compares every message of the old store with its copy in the new one;
/// returns how many were compared.
fn compare(
    messages: &redb::ReadOnlyTable<&'static [u8], (u64, i64, &'static [u8])>,
    by_seq: &redb::ReadOnlyTable<u64, &'static [u8]>,
    spaces: &Keyspaces,
    old: &Path,
    new: &Path,
    total: u64,
    progress: Progress<'_>,
) -> Result<u64, MigrateError> {
    let mut verified = 0;
    let mut compared = 0;
    for entry in by_seq.iter().map_err(old_failed("read"))? {
        let (seq, digest) = entry.map_err(old_failed("read"))?;
        let digest = digest.value();
        compared += 1;
        if compared % CHUNK as u64 == 0 {
            progress(compared, total);
        }
        let Some(value) = messages.get(digest).map_err(old_failed("read"))? else {
            continue;
        };
        let (_, created_at_ms, body) = value.value();
        let copy = spaces.messages.get(digest).map_err(failed("migrate"))?;
        let same = copy.as_deref().is_some_and(|copy| {
            copy.get(..8) == Some(seq.value().to_be_bytes().as_slice())
                && copy.get(8..16) == Some(created_at_ms.to_be_bytes().as_slice())
                && copy.get(16..) == Some(body)
        });
        if !same {
            return Err(MigrateError::Mismatch {
                record: format!("message {}", hex::encode(digest)),
                old: old.to_path_buf(),
                new: new.to_path_buf(),
            });
        }
        verified += 1;
    }
    progress(compared, total);
    Ok(verified)
}

/// Opens the embedded message store `new`, first migrating the redb file
/// `old` into it when there is one (logged: start, progress, counts).
pub fn open_embedded(old: &Path, new: &Path) -> Result<FjallMessageStore, StoreError> {
    platform::embedded::migrate_logged("messages", old, new, |progress| {
        from_redb(old, new, progress)
    })
    .map_err(|e| {
        StoreError::Unavailable(BackendError::new("fjall", "migrate", FailureKind::Other, e))
    })?;
    FjallMessageStore::open(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::redb::RedbMessageStore;
    use crate::domain::{Message, PageLimit};
    use crate::ports::MessageStore;

    #[tokio::test]
    async fn an_interrupted_migration_resumes_and_every_message_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("messages.redb");
        let new = dir.path().join("messages.fjall");
        let texts: Vec<String> = (0..2_500).map(|i| format!("message {i}")).collect();
        let store = RedbMessageStore::open(&old).expect("open");
        for (at, text) in (0i64..).zip(&texts) {
            let m = Message::new(text.clone(), 1024).expect("valid");
            store.put(&m, at).await.expect("put");
        }
        store.close().await;
        drop(store);

        // An interrupted run: the first 1,000 made durable, then a crash.
        {
            let source = platform::integrity::open_existing(&old).expect("open old");
            let txn = source.begin_read().expect("read");
            let messages = txn.open_table(MESSAGES).expect("table");
            let spaces = Keyspaces::open(&new).expect("new");
            let mut records = Vec::new();
            for text in &texts[..1_000] {
                let m = Message::new(text.clone(), 1024).expect("valid");
                let value = messages
                    .get(m.digest().as_bytes().as_slice())
                    .expect("get")
                    .expect("stored");
                let (s, at, body) = value.value();
                records.push((m.digest().as_bytes().to_vec(), s, at, body.to_vec()));
            }
            let refs: Vec<(&[u8], u64, i64, &[u8])> = records
                .iter()
                .map(|(d, s, at, b)| (d.as_slice(), *s, *at, b.as_slice()))
                .collect();
            spaces.write_durably(&refs, "test").expect("write");
        }

        let report = from_redb(&old, &new, &mut |_, _| {}).expect("migrate");
        assert_eq!(report.total, 2_500);
        assert_eq!(report.copied, 1_500, "resumed after the first 1,000");
        assert_eq!(report.verified, 2_500);
        assert!(!old.exists() && report.old_file.exists());

        let store = open_embedded(&old, &new).expect("open after migration");
        for ((at, seq), text) in (0i64..).zip(1u64..).zip(&texts) {
            let m = Message::new(text.clone(), 1024).expect("valid");
            let got = store
                .get(&m.digest())
                .await
                .expect("get")
                .expect("migrated");
            assert_eq!(got.body, text.as_bytes());
            assert_eq!(got.created_at_ms, at);
            assert_eq!(got.seq, seq);
        }
        let page = store
            .page(None, PageLimit::parse(Some("5")).expect("limit"))
            .await
            .expect("page");
        assert_eq!(page.items[0].body, b"message 0");
        // New messages follow the migrated ones in the order.
        let m = Message::new("after".to_owned(), 1024).expect("valid");
        store.put(&m, 9).await.expect("put");
        let got = store.get(&m.digest()).await.expect("get").expect("stored");
        assert_eq!(got.seq, 2_501);
        store.close().await;
    }
}
