//! Embedded message store on redb, one file in the data directory.
//!
//! Writes go through the platform's group-commit writer: whatever puts are
//! queued commit in one transaction, so one fsync serves many requests, and
//! every put is durable before it is acknowledged. Reads run inline against
//! MVCC snapshots and never wait for the writer.
//!
//! Write cost: digests are random, so every new message lands in a random
//! B-tree leaf, and a durable commit rewrites each touched leaf (copy on
//! write): ~10 KB written per message whatever the batch size. That, not the
//! fsync, bounds POST throughput (see BENCHMARKS.md).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use platform::integrity::{self, CorruptRecord, Progress, ScanReport};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::domain::{Cursor, Digest, Message, PAGE_MAX_BYTES, PageLimit, StoredMessage};
use crate::ports::{Corruption, MessageStore, Page, PutOutcome, StoreError};

/// digest → (seq, `created_at_ms`, body)
pub(crate) const MESSAGES: TableDefinition<&[u8], (u64, i64, &[u8])> =
    TableDefinition::new("messages");
/// seq → digest, the insertion order.
pub(crate) const BY_SEQ: TableDefinition<u64, &[u8]> = TableDefinition::new("messages_by_seq");

/// Puts waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most puts one transaction commits.
const MAX_BATCH: usize = 512;

struct Put {
    message: Message,
    created_at_ms: i64,
}

/// Messages in a redb file, written through one group-commit writer.
pub struct RedbMessageStore {
    db: Arc<Database>,
    writer: GroupCommit<Put, PutOutcome>,
    closed: CloseGate,
}

/// Maps a redb error met during `operation` to the port's error.
fn failed<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::redb(operation, error))
}

impl RedbMessageStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::create_database(path)
            .map_err(|text| BackendError::new("redb", "open", FailureKind::Other, text))?;
        let txn = db.begin_write().map_err(failed("open"))?;
        txn.open_table(MESSAGES).map_err(failed("open"))?;
        txn.open_table(BY_SEQ).map_err(failed("open"))?;
        txn.commit().map_err(failed("open"))?;

        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer =
            GroupCommit::spawn("messages", QUEUE_DEPTH, MAX_BATCH, move |puts: &[Put]| {
                write_batch(&writer_db, puts).map_err(|e| {
                    platform::backend::BackendError::new(
                        "redb",
                        "commit",
                        platform::backend::FailureKind::Other,
                        e,
                    )
                })
            })
            .map_err(|e| BackendError::new("redb", "start writer", FailureKind::Other, e))?;
        Ok(Self {
            db,
            writer,
            closed: CloseGate::default(),
        })
    }

    /// Runs a read inline, not on the blocking pool: a point read from redb's
    /// cache takes microseconds, less than the hand-off to a blocking thread
    /// and back costs (measured on GET: ~70 → ~50 µs of CPU per request).
    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.closed.check("redb")?;
        f(&self.db)
    }
}

fn write_batch(db: &Database, batch: &[Put]) -> Result<Vec<PutOutcome>, StoreError> {
    let txn = db.begin_write().map_err(failed("put"))?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut messages = txn.open_table(MESSAGES).map_err(failed("put"))?;
        let mut by_seq = txn.open_table(BY_SEQ).map_err(failed("put"))?;
        let mut next_seq = match by_seq.last().map_err(failed("put"))? {
            Some((seq, _)) => seq.value() + 1,
            None => 1,
        };
        for request in batch {
            let digest = request.message.digest();
            let key: &[u8] = digest.as_bytes();
            // A repeat within this batch sees the earlier insert: same transaction.
            if messages.get(key).map_err(failed("put"))?.is_some() {
                outcomes.push(PutOutcome::AlreadyStored);
                continue;
            }
            messages
                .insert(
                    key,
                    (
                        next_seq,
                        request.created_at_ms,
                        request.message.text().as_bytes(),
                    ),
                )
                .map_err(failed("put"))?;
            by_seq.insert(next_seq, key).map_err(failed("put"))?;
            next_seq += 1;
            outcomes.push(PutOutcome::Created);
        }
    }
    txn.commit().map_err(failed("put"))?;
    Ok(outcomes)
}

fn stored(
    digest_bytes: &[u8],
    (seq, created_at_ms, body): (u64, i64, &[u8]),
) -> Result<StoredMessage, StoreError> {
    let digest = Digest::from_bytes(digest_bytes).ok_or_else(|| {
        StoreError::Corrupt(Corruption::new(
            printable_digest(digest_bytes),
            format!("a key of {} bytes is not a digest", digest_bytes.len()),
        ))
    })?;
    Ok(StoredMessage {
        digest,
        body: body.to_vec(),
        created_at_ms,
        seq,
    })
}

#[async_trait]
impl MessageStore for RedbMessageStore {
    fn engine(&self) -> &'static str {
        "redb"
    }

    async fn put(&self, message: &Message, created_at_ms: i64) -> Result<PutOutcome, StoreError> {
        self.closed.check("redb")?;
        let put = Put {
            message: message.clone(),
            created_at_ms,
        };
        self.writer.submit(put).await.map_err(|e| match e {
            CommitError::Closed => StoreError::Unavailable(BackendError::closed("redb")),
            CommitError::Failed(error) => {
                StoreError::Unavailable(BackendError::new("redb", "put", FailureKind::Other, error))
            }
        })
    }

    async fn get(&self, digest: &Digest) -> Result<Option<StoredMessage>, StoreError> {
        let digest = *digest;
        self.read(move |db| {
            let txn = db.begin_read().map_err(failed("get"))?;
            let table = txn.open_table(MESSAGES).map_err(failed("get"))?;
            let key: &[u8] = digest.as_bytes();
            match table.get(key).map_err(failed("get"))? {
                Some(value) => stored(key, value.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    async fn page(&self, after: Option<Cursor>, limit: PageLimit) -> Result<Page, StoreError> {
        self.read(move |db| {
            let txn = db.begin_read().map_err(failed("page"))?;
            let by_seq = txn.open_table(BY_SEQ).map_err(failed("page"))?;
            let messages = txn.open_table(MESSAGES).map_err(failed("page"))?;
            let start = after.map_or(0, |c| c.seq().saturating_add(1));
            let mut items = Vec::new();
            let mut corrupt = Vec::new();
            let mut bytes = 0usize;
            let mut next = None;
            for entry in by_seq.range(start..).map_err(failed("page"))? {
                let (seq, digest) = entry.map_err(failed("page"))?;
                if items.len() == limit.get() as usize {
                    next = items.last().map(|m: &StoredMessage| Cursor::new(m.seq));
                    break;
                }
                let digest = digest.value();
                // A record that cannot be read is skipped and named, not a failed page.
                let message = match messages.get(digest).map_err(failed("page"))? {
                    Some(value) => stored(digest, value.value()),
                    None => Err(StoreError::Corrupt(Corruption::new(
                        seq.value().to_string(),
                        "the sequence names a message that is not stored",
                    ))),
                };
                let message = match message {
                    Ok(message) => message,
                    Err(error) => {
                        let name = printable_digest(digest);
                        tracing::error!(digest = %name, %error, "skipped an unreadable message in a listing");
                        corrupt.push(name);
                        continue;
                    }
                };
                bytes += message.body.len();
                if !items.is_empty() && bytes > PAGE_MAX_BYTES {
                    next = items.last().map(|m: &StoredMessage| Cursor::new(m.seq));
                    break;
                }
                items.push(message);
            }
            Ok(Page {
                items,
                next,
                corrupt,
            })
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|db| db.begin_read().map(|_| ()).map_err(failed("ping")))
    }

    async fn close(&self) {
        self.closed.close();
        self.writer.close().await;
    }
}

/// A stored digest as text: lowercase hex (whatever its length).
fn printable_digest(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Maps a failure the integrity helpers report as text to the port's error.
fn scan_failed<E: Into<platform::backend::BoxError>>(
    operation: &'static str,
) -> impl FnOnce(E) -> StoreError {
    move |text| {
        StoreError::Unavailable(BackendError::new(
            "redb",
            operation,
            FailureKind::Other,
            text,
        ))
    }
}

/// Scans every message and every insertion-order entry of the store file at
/// `path` (which no server may hold): each body must hash to the digest it
/// is stored under, be UTF-8 and be named by its sequence entry; each
/// sequence entry must name a stored message. With `quarantine`, moves the
/// failures into the `quarantine` table, after which a get of those digests
/// answers 404 and listings stop naming them.
///
/// Not covered by any check: `created_at`, which the digest does not cover.
pub fn verify(
    path: &Path,
    quarantine: bool,
    progress: Progress<'_>,
) -> Result<ScanReport, StoreError> {
    let db = integrity::open_existing(path).map_err(scan_failed("open"))?;
    let mut report = ScanReport::default();
    // (table, key bytes, stored bytes)
    let mut bad_messages: Vec<(Vec<u8>, u64, Vec<u8>)> = Vec::new();
    let mut bad_seqs: Vec<(u64, Vec<u8>)> = Vec::new();
    {
        let txn = db.begin_read().map_err(failed("verify"))?;
        let has_tables = txn
            .list_tables()
            .map_err(failed("verify"))?
            .any(|t| t.name() == MESSAGES.name());
        if !has_tables {
            return Ok(report);
        }
        let messages = txn.open_table(MESSAGES).map_err(failed("verify"))?;
        let by_seq = txn.open_table(BY_SEQ).map_err(failed("verify"))?;
        let total =
            messages.len().map_err(failed("verify"))? + by_seq.len().map_err(failed("verify"))?;
        for entry in messages.iter().map_err(failed("verify"))? {
            let (key, value) = entry.map_err(failed("verify"))?;
            report.scanned += 1;
            progress(report.scanned, total);
            let key = key.value();
            let (seq, _, body) = value.value();
            let problem = if key.len() != 32 {
                Some(format!(
                    "key of {} bytes is not a SHA-256 digest",
                    key.len()
                ))
            } else if Digest::of(body).as_bytes() != key {
                Some("body does not hash to its digest (body or key altered)".to_owned())
            } else if std::str::from_utf8(body).is_err() {
                Some("body is not UTF-8".to_owned())
            } else {
                match by_seq.get(seq).map_err(failed("verify"))? {
                    Some(named) if named.value() == key => None,
                    _ => Some(format!(
                        "its sequence number {seq} does not name it (sequence altered)"
                    )),
                }
            };
            if let Some(problem) = problem {
                report.corrupt.push(CorruptRecord {
                    table: MESSAGES.name(),
                    key: printable_digest(key),
                    problem,
                });
                let stored = <(u64, i64, &[u8]) as redb::Value>::as_bytes(&value.value());
                bad_messages.push((key.to_vec(), seq, AsRef::<[u8]>::as_ref(&stored).to_vec()));
            }
        }
        for entry in by_seq.iter().map_err(failed("verify"))? {
            let (seq, digest) = entry.map_err(failed("verify"))?;
            report.scanned += 1;
            progress(report.scanned, total);
            let digest = digest.value();
            let named = messages.get(digest).map_err(failed("verify"))?;
            let problem = match named {
                None => Some(format!(
                    "sequence {} names message {} that is not stored (its record was lost or \
                     moved to another key)",
                    seq.value(),
                    printable_digest(digest)
                )),
                Some(value) if value.value().0 != seq.value() => Some(format!(
                    "sequence {} names message {} stored with sequence {}",
                    seq.value(),
                    printable_digest(digest),
                    value.value().0
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                report.corrupt.push(CorruptRecord {
                    table: BY_SEQ.name(),
                    key: seq.value().to_string(),
                    problem,
                });
                bad_seqs.push((seq.value(), digest.to_vec()));
            }
        }
    }
    if quarantine && !(bad_messages.is_empty() && bad_seqs.is_empty()) {
        report.quarantined += quarantine_all(&db, &bad_messages, &bad_seqs)?;
    }
    Ok(report)
}

/// Moves the records `verify` found corrupt into the `quarantine` table, in
/// one transaction: each bad message with its place in the order, and each
/// sequence entry naming nothing. Returns how many records moved.
fn quarantine_all(
    db: &Database,
    bad_messages: &[(Vec<u8>, u64, Vec<u8>)],
    bad_seqs: &[(u64, Vec<u8>)],
) -> Result<u64, StoreError> {
    let mut quarantined = 0;
    let txn = db.begin_write().map_err(failed("verify"))?;
    {
        let mut messages = txn.open_table(MESSAGES).map_err(failed("verify"))?;
        let mut by_seq = txn.open_table(BY_SEQ).map_err(failed("verify"))?;
        for (key, seq, stored) in bad_messages {
            let name = printable_digest(key);
            integrity::quarantine(&txn, MESSAGES.name(), &name, stored)
                .map_err(scan_failed("quarantine"))?;
            messages.remove(key.as_slice()).map_err(failed("verify"))?;
            // Its place in the order goes with it, so listings do not name it.
            let names_it = by_seq
                .get(seq)
                .map_err(failed("verify"))?
                .is_some_and(|named| named.value() == key.as_slice());
            if names_it {
                by_seq.remove(seq).map_err(failed("verify"))?;
            }
            quarantined += 1;
        }
        for (seq, digest) in bad_seqs {
            integrity::quarantine(&txn, BY_SEQ.name(), &seq.to_string(), digest)
                .map_err(scan_failed("quarantine"))?;
            by_seq.remove(seq).map_err(failed("verify"))?;
            quarantined += 1;
        }
    }
    txn.commit().map_err(failed("verify"))?;
    Ok(quarantined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message::new(text.to_owned(), 1024).expect("valid")
    }

    /// Rewrites one stored record as disk rot would: `edit` changes its key or body.
    fn tamper(path: &Path, digest: Digest, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
        let db = Database::create(path).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(MESSAGES).expect("table");
            let (seq, at, body) = {
                let value = table
                    .get(digest.as_bytes().as_slice())
                    .expect("get")
                    .expect("stored");
                let (seq, at, body) = value.value();
                (seq, at, body.to_vec())
            };
            table.remove(digest.as_bytes().as_slice()).expect("remove");
            let mut key = digest.as_bytes().to_vec();
            let mut body = body;
            edit(&mut key, &mut body);
            table
                .insert(key.as_slice(), (seq, at, body.as_slice()))
                .expect("insert");
        }
        txn.commit().expect("commit");
    }

    #[tokio::test]
    async fn altered_bodies_and_moved_keys_are_skipped_in_pages_and_found_by_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("messages.redb");
        let (a, b, c) = (message("alpha"), message("bravo"), message("charlie"));
        let store = RedbMessageStore::open(&path).expect("open");
        for m in [&a, &b, &c] {
            store.put(m, 1).await.expect("put");
        }
        store.close().await;
        drop(store);
        tamper(&path, b.digest(), |_, body| body[0] ^= 0x20);
        tamper(&path, c.digest(), |key, _| key[5] ^= 0x01);

        let store = RedbMessageStore::open(&path).expect("reopen");
        let got = store
            .get(&b.digest())
            .await
            .expect("get")
            .expect("still stored");
        assert!(got.verify().is_err(), "an altered body never verifies");
        assert_eq!(
            store.get(&c.digest()).await.expect("get"),
            None,
            "a record whose key moved is not under its digest any more"
        );
        let page = store
            .page(None, PageLimit::parse(None).expect("default"))
            .await
            .expect("the page is served");
        let served: Vec<Digest> = page.items.iter().map(|m| m.digest).collect();
        assert_eq!(
            served,
            [a.digest(), b.digest()],
            "b is returned to be verified by the edge"
        );
        assert_eq!(page.corrupt, [c.digest().to_string()]);
        store.close().await;
        drop(store);

        let report = verify(&path, false, &mut |_, _| {}).expect("verify");
        assert_eq!(report.scanned, 6);
        let mut keys: Vec<&str> = report.corrupt.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        let mut moved = c.digest().as_bytes().to_vec();
        moved[5] ^= 0x01;
        let mut want = vec![
            b.digest().to_string(),
            printable_digest(&moved),
            "3".to_owned(),
        ];
        want.sort();
        assert_eq!(keys, want);

        let report = verify(&path, true, &mut |_, _| {}).expect("quarantine");
        assert_eq!(report.quarantined, 3);
        let report = verify(&path, false, &mut |_, _| {}).expect("verify again");
        assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
        assert_eq!(report.scanned, 2);

        let store = RedbMessageStore::open(&path).expect("reopen");
        assert_eq!(store.get(&b.digest()).await.expect("get"), None);
        let page = store
            .page(None, PageLimit::parse(None).expect("default"))
            .await
            .expect("page");
        assert_eq!(page.items.len(), 1);
        assert!(page.corrupt.is_empty());
        store.close().await;
    }
}
