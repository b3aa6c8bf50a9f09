//! Embedded message store on fjall (a log-structured merge tree), one
//! directory in the data directory: the default embedded engine.
//!
//! Why not redb: digests are random, so in a B-tree every new message lands
//! in a random leaf, and each durable commit rewrites the leaves it touched
//! (~10.9 KB written per 100-byte message). fjall appends each group's
//! writes to its journal, one fsync per group, and sorts them into tables in
//! the background: ~0.76 KB written per message, flushes and compaction
//! included (BENCHMARKS.md, "Embedded engines").
//!
//! Writes go through the platform's group-commit writer: whatever puts are
//! queued commit in one batch, written to the journal and fsynced
//! (`fdatasync`) before any of them is acknowledged. Reads run inline on a
//! snapshot and never wait for the writer.
//!
//! Layout, in keyspaces of one database (atomic across keyspaces per batch):
//! - `messages`: digest (32 bytes) → seq (u64 BE) · `created_at_ms` (i64 BE) · body;
//! - `messages_by_seq`: seq (u64 BE) → digest, the insertion order;
//! - `meta`: `migrated_from` → the redb file this store was migrated from;
//! - `quarantine`: `<keyspace>/<key>` → the stored bytes of a record
//!   `verify --quarantine` moved aside.

use std::collections::HashSet;
use std::path::Path;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use platform::integrity::{CorruptRecord, Progress, ScanReport};

use crate::domain::{Cursor, Digest, Message, PAGE_MAX_BYTES, PageLimit, StoredMessage};
use crate::ports::{Corruption, MessageStore, Page, PutOutcome, StoreError};

const MESSAGES: &str = "messages";
const BY_SEQ: &str = "messages_by_seq";
const META: &str = "meta";
const QUARANTINE: &str = "quarantine";
/// `meta` key naming the redb file whose messages this store holds.
pub(crate) const MIGRATED_FROM: &[u8] = b"migrated_from";

/// Puts waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most puts one batch commits.
const MAX_BATCH: usize = 512;
/// Bytes before a stored message's body: its seq and its creation time.
const HEADER: usize = 16;

struct Put {
    message: Message,
    created_at_ms: i64,
}

/// The database and its keyspaces.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    pub(crate) db: Database,
    pub(crate) messages: Keyspace,
    pub(crate) by_seq: Keyspace,
    pub(crate) meta: Keyspace,
}

impl Keyspaces {
    /// Opens (or creates) the database in `dir` with its keyspaces.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::open_keyspaces(dir).map_err(BackendError::from)?;
        let open = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(platform::embedded::FJALL_MEMTABLE_BYTES)
            })
            .map_err(failed("open"))
        };
        Ok(Self {
            messages: open(MESSAGES)?,
            by_seq: open(BY_SEQ)?,
            meta: open(META)?,
            db,
        })
    }

    /// The highest sequence number stored, 0 when empty.
    pub(crate) fn last_seq(&self) -> Result<u64, StoreError> {
        match self.by_seq.last_key_value() {
            Some(guard) => {
                let key = guard.key().map_err(failed("open"))?;
                seq_of(&key)
            }
            None => Ok(0),
        }
    }

    /// Writes `records` (digest, seq, `created_at_ms`, body) in one batch,
    /// fsynced before it returns.
    pub(crate) fn write_durably(
        &self,
        records: &[(&[u8], u64, i64, &[u8])],
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for &(digest, seq, created_at_ms, body) in records {
            batch.insert(&self.messages, digest, encode(seq, created_at_ms, body));
            batch.insert(&self.by_seq, seq.to_be_bytes(), digest);
        }
        batch.commit().map_err(failed(operation))
    }
}

/// Messages in a fjall database, written through one group-commit writer.
pub struct FjallMessageStore {
    spaces: Keyspaces,
    writer: GroupCommit<Put, PutOutcome>,
    closed: CloseGate,
}

/// Maps a fjall error met during `operation` to the port's error.
pub(crate) fn failed(operation: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::fjall(operation, error))
}

fn encode(seq: u64, created_at_ms: i64, body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + body.len());
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(&created_at_ms.to_be_bytes());
    value.extend_from_slice(body);
    value
}

/// A stored value's parts: seq, `created_at_ms`, body.
fn decode(value: &[u8]) -> Option<(u64, i64, &[u8])> {
    let seq = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    let created_at_ms = i64::from_be_bytes(value.get(8..HEADER)?.try_into().ok()?);
    Some((seq, created_at_ms, value.get(HEADER..)?))
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    key.try_into().map(u64::from_be_bytes).map_err(|_| {
        StoreError::Corrupt(Corruption::new(
            hex::encode(key),
            format!("a sequence key of {} bytes", key.len()),
        ))
    })
}

impl FjallMessageStore {
    /// Opens (or creates) the store directory; fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let spaces = Keyspaces::open(dir)?;
        let mut next_seq = spaces.last_seq()? + 1;
        let writer_spaces = spaces.clone();
        let writer =
            GroupCommit::spawn("messages", QUEUE_DEPTH, MAX_BATCH, move |puts: &[Put]| {
                write_batch(&writer_spaces, puts, &mut next_seq)
                    .map_err(|e| BackendError::new("fjall", "commit", FailureKind::Other, e))
            })
            .map_err(|e| BackendError::new("fjall", "start writer", FailureKind::Other, e))?;
        Ok(Self {
            spaces,
            writer,
            closed: CloseGate::default(),
        })
    }
}

/// Commits one group: new messages get the next sequence numbers, a text
/// already stored (before, or earlier in this group) changes nothing. The
/// sequence counter moves only once the batch is durable.
fn write_batch(
    spaces: &Keyspaces,
    puts: &[Put],
    next_seq: &mut u64,
) -> Result<Vec<PutOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(puts.len());
    let mut seen = HashSet::with_capacity(puts.len());
    let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
    let mut seq = *next_seq;
    for put in puts {
        let digest = put.message.digest();
        let key = *digest.as_bytes();
        if !seen.insert(key) || spaces.messages.contains_key(key).map_err(failed("put"))? {
            outcomes.push(PutOutcome::AlreadyStored);
            continue;
        }
        batch.insert(
            &spaces.messages,
            key,
            encode(seq, put.created_at_ms, put.message.text().as_bytes()),
        );
        batch.insert(&spaces.by_seq, seq.to_be_bytes(), key);
        seq += 1;
        outcomes.push(PutOutcome::Created);
    }
    batch.commit().map_err(failed("put"))?;
    *next_seq = seq;
    Ok(outcomes)
}

fn stored(digest_bytes: &[u8], value: &[u8]) -> Result<StoredMessage, StoreError> {
    let corrupt =
        |reason: String| StoreError::Corrupt(Corruption::new(hex::encode(digest_bytes), reason));
    let digest = Digest::from_bytes(digest_bytes).ok_or_else(|| {
        corrupt(format!(
            "a key of {} bytes is not a digest",
            digest_bytes.len()
        ))
    })?;
    let (seq, created_at_ms, body) = decode(value)
        .ok_or_else(|| corrupt(format!("a record of {} bytes has no header", value.len())))?;
    Ok(StoredMessage {
        digest,
        body: body.to_vec(),
        created_at_ms,
        seq,
    })
}

#[async_trait]
impl MessageStore for FjallMessageStore {
    fn engine(&self) -> &'static str {
        "fjall"
    }

    async fn put(&self, message: &Message, created_at_ms: i64) -> Result<PutOutcome, StoreError> {
        self.closed.check("fjall")?;
        let put = Put {
            message: message.clone(),
            created_at_ms,
        };
        self.writer.submit(put).await.map_err(|e| match e {
            CommitError::Closed => StoreError::Unavailable(BackendError::closed("fjall")),
            failed @ CommitError::Failed(_) => StoreError::Unavailable(failed.into()),
        })
    }

    async fn get(&self, digest: &Digest) -> Result<Option<StoredMessage>, StoreError> {
        self.closed.check("fjall")?;
        match self
            .spaces
            .messages
            .get(digest.as_bytes())
            .map_err(failed("get"))?
        {
            Some(value) => stored(digest.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    async fn page(&self, after: Option<Cursor>, limit: PageLimit) -> Result<Page, StoreError> {
        self.closed.check("fjall")?;
        let snapshot = self.spaces.db.snapshot();
        let start = after.map_or(0, |c| c.seq().saturating_add(1));
        let mut items = Vec::new();
        let mut corrupt = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        for entry in snapshot.range(&self.spaces.by_seq, start.to_be_bytes()..) {
            let (seq, digest) = entry.into_inner().map_err(failed("page"))?;
            if items.len() == limit.get() as usize {
                next = items.last().map(|m: &StoredMessage| Cursor::new(m.seq));
                break;
            }
            // A record that cannot be read is skipped and named, not a failed page.
            let message = match snapshot
                .get(&self.spaces.messages, &digest)
                .map_err(failed("page"))?
            {
                Some(value) => stored(&digest, &value).and_then(|m| {
                    if m.seq.to_be_bytes().as_slice() == &*seq {
                        Ok(m)
                    } else {
                        Err(StoreError::Corrupt(Corruption::new(
                            hex::encode(&digest),
                            "the sequence names a message stored with another sequence",
                        )))
                    }
                }),
                None => Err(StoreError::Corrupt(Corruption::new(
                    hex::encode(&seq),
                    "the sequence names a message that is not stored",
                ))),
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    let name = hex::encode(&digest);
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
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.closed.check("fjall")?;
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

/// Maps a failure to open a store for a scan to the port's error.
fn scan_open_failed(error: impl Into<BackendError>) -> StoreError {
    StoreError::Unavailable(error.into())
}

/// Scans every message and every insertion-order entry of the store in
/// `dir` (which no server may hold): each body must hash to the digest it
/// is stored under, be UTF-8 and be named by its sequence entry; each
/// sequence entry must name a stored message. With `quarantine`, moves the
/// failures into the `quarantine` keyspace, after which a get of those
/// digests answers 404 and listings stop naming them.
///
/// Not covered by any check: `created_at`, which the digest does not cover.
pub fn verify(
    dir: &Path,
    quarantine: bool,
    progress: Progress<'_>,
) -> Result<ScanReport, StoreError> {
    if !dir.is_dir() {
        return Err(scan_open_failed(BackendError::new(
            "fjall",
            "open",
            FailureKind::Other,
            format!("{} is not a message store", dir.display()),
        )));
    }
    let spaces = Keyspaces::open(dir)?;
    let mut report = ScanReport::default();
    let total = (spaces.messages.approximate_len() + spaces.by_seq.approximate_len()) as u64;
    // (keyspace, key, stored bytes)
    let mut bad: Vec<(&'static str, Vec<u8>, Vec<u8>)> = Vec::new();
    let snapshot = spaces.db.snapshot();
    for entry in snapshot.iter(&spaces.messages) {
        let (key, value) = entry.into_inner().map_err(failed("verify"))?;
        report.scanned += 1;
        progress(report.scanned, total.max(report.scanned));
        let problem = match decode(&value) {
            _ if key.len() != 32 => Some(format!(
                "key of {} bytes is not a SHA-256 digest",
                key.len()
            )),
            None => Some(format!("a record of {} bytes has no header", value.len())),
            Some((_, _, body)) if Digest::of(body).as_bytes().as_slice() != &*key => {
                Some("body does not hash to its digest (body or key altered)".to_owned())
            }
            Some((_, _, body)) if std::str::from_utf8(body).is_err() => {
                Some("body is not UTF-8".to_owned())
            }
            Some((seq, _, _)) => {
                match snapshot
                    .get(&spaces.by_seq, seq.to_be_bytes())
                    .map_err(failed("verify"))?
                {
                    Some(named) if named == key => None,
                    _ => Some(format!(
                        "its sequence number {seq} does not name it (sequence altered)"
                    )),
                }
            }
        };
        if let Some(problem) = problem {
            report.corrupt.push(CorruptRecord {
                table: MESSAGES,
                key: hex::encode(&key),
                problem,
            });
            bad.push((MESSAGES, key.to_vec(), value.to_vec()));
        }
    }
    for entry in snapshot.iter(&spaces.by_seq) {
        let (seq_key, digest) = entry.into_inner().map_err(failed("verify"))?;
        report.scanned += 1;
        progress(report.scanned, total.max(report.scanned));
        let seq = seq_of(&seq_key).ok();
        let named = snapshot
            .get(&spaces.messages, &digest)
            .map_err(failed("verify"))?;
        let problem = match (seq, named.as_deref().and_then(decode)) {
            (None, _) => Some(format!("a sequence key of {} bytes", seq_key.len())),
            (Some(seq), None) => Some(format!(
                "sequence {seq} names message {} that is not stored (its record was lost or \
                 moved to another key)",
                hex::encode(&digest)
            )),
            (Some(seq), Some((stored_seq, _, _))) if stored_seq != seq => Some(format!(
                "sequence {seq} names message {} stored with sequence {stored_seq}",
                hex::encode(&digest)
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            let key = seq.map_or_else(|| hex::encode(&seq_key), |s| s.to_string());
            report.corrupt.push(CorruptRecord {
                table: BY_SEQ,
                key,
                problem,
            });
            bad.push((BY_SEQ, seq_key.to_vec(), digest.to_vec()));
        }
    }
    drop(snapshot);
    if quarantine && !bad.is_empty() {
        report.quarantined += quarantine_all(&spaces, &bad)?;
    }
    Ok(report)
}

/// Moves the records `verify` found corrupt into the `quarantine` keyspace,
/// in one durable batch: each bad message with its place in the order, and
/// each sequence entry naming nothing. Returns how many records moved.
fn quarantine_all(
    spaces: &Keyspaces,
    bad: &[(&'static str, Vec<u8>, Vec<u8>)],
) -> Result<u64, StoreError> {
    let quarantine = spaces
        .db
        .keyspace(QUARANTINE, KeyspaceCreateOptions::default)
        .map_err(failed("verify"))?;
    let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
    let mut moved = 0;
    for (space, key, stored) in bad {
        let name = if *space == BY_SEQ {
            seq_of(key).map_or_else(|_| hex::encode(key), |s| s.to_string())
        } else {
            hex::encode(key)
        };
        batch.insert(&quarantine, format!("{space}/{name}"), stored.as_slice());
        if *space == MESSAGES {
            batch.remove(&spaces.messages, key.as_slice());
            // Its place in the order goes with it, so listings do not name it.
            if let Some((seq, _, _)) = decode(stored) {
                let names_it = spaces
                    .by_seq
                    .get(seq.to_be_bytes())
                    .map_err(failed("verify"))?
                    .is_some_and(|named| named == key.as_slice());
                if names_it {
                    batch.remove(&spaces.by_seq, seq.to_be_bytes());
                }
            }
        } else {
            batch.remove(&spaces.by_seq, key.as_slice());
        }
        moved += 1;
    }
    batch.commit().map_err(failed("verify"))?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message::new(text.to_owned(), 1024).expect("valid")
    }

    /// Rewrites one stored record as disk rot would: `edit` changes its key or body.
    fn tamper(dir: &Path, digest: Digest, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
        let spaces = Keyspaces::open(dir).expect("open");
        let value = spaces
            .messages
            .get(digest.as_bytes())
            .expect("get")
            .expect("stored");
        let (seq, at, body) = decode(&value).expect("record");
        let mut key = digest.as_bytes().to_vec();
        let mut body = body.to_vec();
        edit(&mut key, &mut body);
        let mut batch = spaces.db.batch().durability(Some(PersistMode::SyncData));
        batch.remove(&spaces.messages, digest.as_bytes().as_slice());
        batch.insert(&spaces.messages, key, encode(seq, at, &body));
        batch.commit().expect("commit");
    }

    #[tokio::test]
    async fn altered_bodies_and_moved_keys_are_skipped_in_pages_and_found_by_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("messages.fjall");
        let (a, b, c) = (message("alpha"), message("bravo"), message("charlie"));
        let store = FjallMessageStore::open(&path).expect("open");
        for m in [&a, &b, &c] {
            store.put(m, 1).await.expect("put");
        }
        store.close().await;
        drop(store);
        tamper(&path, b.digest(), |_, body| body[0] ^= 0x20);
        tamper(&path, c.digest(), |key, _| key[5] ^= 0x01);

        let store = FjallMessageStore::open(&path).expect("reopen");
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
        let mut want = vec![b.digest().to_string(), hex::encode(&moved), "3".to_owned()];
        want.sort();
        assert_eq!(keys, want);

        let report = verify(&path, true, &mut |_, _| {}).expect("quarantine");
        assert_eq!(report.quarantined, 3);
        let report = verify(&path, false, &mut |_, _| {}).expect("verify again");
        assert!(report.corrupt.is_empty(), "{:?}", report.corrupt);
        assert_eq!(report.scanned, 2);

        let store = FjallMessageStore::open(&path).expect("reopen");
        assert_eq!(store.get(&b.digest()).await.expect("get"), None);
        let page = store
            .page(None, PageLimit::parse(None).expect("default"))
            .await
            .expect("page");
        assert_eq!(page.items.len(), 1);
        assert!(page.corrupt.is_empty());
        store.close().await;
    }

    #[test]
    fn a_store_that_is_not_there_is_refused_by_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = verify(&dir.path().join("messages.fjall"), false, &mut |_, _| {})
            .expect_err("nothing to scan");
        assert!(
            platform::backend::chain(&err).contains("not a message store"),
            "{}",
            platform::backend::chain(&err)
        );
    }
}

#[cfg(test)]
mod torn_tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message::new(text.to_owned(), 1024).expect("valid")
    }

    /// How the crash left the journal's last batch.
    #[derive(Debug, Clone, Copy)]
    enum Tear {
        /// Only the first half of its bytes reached the disk.
        Half,
        /// Its start and its end, with the middle never written (sectors
        /// reach the disk in any order).
        Hole,
        /// All of it, with one byte flipped in the middle: not a tear but
        /// rot, in a batch that may have been acknowledged.
        Flipped,
    }

    /// The journal as the disk held it when 20 puts were acknowledged, and
    /// again after a 21st, over which the crash is then staged.
    async fn journal_around_a_last_put(dir: &Path) -> (Vec<u8>, Vec<u8>, PathBuf) {
        let store = FjallMessageStore::open(dir).expect("open");
        for i in 0..20 {
            store
                .put(&message(&format!("acknowledged {i}")), 1)
                .await
                .expect("put");
        }
        let journal = dir.join("0.jnl");
        let before = std::fs::read(&journal).expect("journal");
        store.put(&message("in flight"), 1).await.expect("put");
        let after = std::fs::read(&journal).expect("journal");
        store.close().await;
        drop(store);
        (before, after, journal)
    }

    use std::path::PathBuf;

    /// A crash while the journal's last batch was being written (a batch
    /// whose put was never acknowledged): the next open cuts the journal
    /// back to the last whole batch, every acknowledged message is there,
    /// and writing goes on. A whole batch that fails its checksum is not a
    /// tear (it may have been acknowledged): the open refuses, naming it.
    #[tokio::test]
    async fn a_torn_journal_tail_loses_only_the_batch_being_written() {
        for tear in [Tear::Half, Tear::Hole, Tear::Flipped] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let dir = tmp.path().join("messages.fjall");
            let (before, after, journal) = journal_around_a_last_put(&dir).await;
            let first = before
                .iter()
                .zip(&after)
                .position(|(a, b)| a != b)
                .expect("the last put changed the journal");
            let last = before
                .iter()
                .zip(&after)
                .rposition(|(a, b)| a != b)
                .expect("changed");
            let mut torn = before.clone();
            match tear {
                Tear::Half => {
                    let end = first + (last - first + 1).div_ceil(2);
                    torn[first..end].copy_from_slice(&after[first..end]);
                }
                Tear::Hole => {
                    torn[first..=last].copy_from_slice(&after[first..=last]);
                    let third = (last - first) / 3;
                    torn[first + third..last - third].fill(0);
                }
                Tear::Flipped => {
                    torn[first..=last].copy_from_slice(&after[first..=last]);
                    torn[usize::midpoint(first, last)] ^= 0x40;
                }
            }
            std::fs::write(&journal, &torn).expect("stage the crash");

            if let Tear::Flipped = tear {
                let Err(refused) = FjallMessageStore::open(&dir) else {
                    panic!("a whole batch failing its checksum was dropped without a word");
                };
                let text = platform::backend::chain(&refused);
                assert!(
                    text.contains("journal in") && text.contains("messages.fjall"),
                    "{text}"
                );
                continue;
            }
            let store = FjallMessageStore::open(&dir).expect("recovers");
            for i in 0..20 {
                let m = message(&format!("acknowledged {i}"));
                let got = store.get(&m.digest()).await.expect("get");
                assert!(got.is_some(), "{tear:?}: acknowledged message {i} lost");
            }
            assert_eq!(
                store
                    .get(&message("in flight").digest())
                    .await
                    .expect("get"),
                None,
                "{tear:?}: the torn batch is not half-applied"
            );
            let later = message("after recovery");
            assert_eq!(
                store.put(&later, 2).await.expect("writes go on"),
                PutOutcome::Created
            );
            store.close().await;
            drop(store);
            let store = FjallMessageStore::open(&dir).expect("reopen");
            let got = store
                .get(&later.digest())
                .await
                .expect("get")
                .expect("kept");
            assert_eq!(
                got.seq, 21,
                "{tear:?}: the order goes on after the last whole batch"
            );
            store.close().await;
        }
    }
}
