//! Embedded counter store on redb, one file in the data directory.
//!
//! A flush is one durable write transaction; point reads run inline (see the
//! messages store for why: a cached read costs less than a thread hand-off).
//!
//! Every stored total and flushed sequence carries a CRC-32 over its key and
//! fields ([`TotalRecord`], [`FlushRecord`]): a flipped bit in the file is a
//! [`StoreError::Corrupt`] naming the key, never a wrong total. Stores written
//! before the checksum (tables `counters` and `counter_flushes`, plain
//! tuples) are read once, unchecked, when the store opens, and rewritten in
//! the checked tables in the same transaction.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::integrity::{self, CorruptRecord, Progress, ScanReport};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::domain::{Counter, CounterKey, KeyPrefix, PageLimit};
use crate::ports::{CounterStore, FlushBatch, Page, StoreError};

/// key → [`TotalRecord`]
const COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("counter_totals");
/// instance id → [`FlushRecord`]
const FLUSHES: TableDefinition<&str, &[u8]> = TableDefinition::new("counter_flushed_seqs");
/// The unchecked layout of releases before the checksum: key → (total, `updated_at_ms`).
const LEGACY_COUNTERS: TableDefinition<&str, (i64, i64)> = TableDefinition::new("counters");
/// The unchecked layout of releases before the checksum: instance → sequence.
const LEGACY_FLUSHES: TableDefinition<&str, u64> = TableDefinition::new("counter_flushes");

/// The first byte of every checked record.
const FORMAT_V1: u8 = 1;

/// A stored total: `format = 1 | total i64 LE | updated_at_ms i64 LE | crc32 LE`,
/// the CRC over the key's bytes and the 17 bytes before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TotalRecord {
    total: i64,
    updated_at_ms: i64,
}

const TOTAL_LEN: usize = 1 + 8 + 8 + 4;

impl TotalRecord {
    fn encode(&self, key: &str) -> [u8; TOTAL_LEN] {
        let mut out = [0u8; TOTAL_LEN];
        out[0] = FORMAT_V1;
        out[1..9].copy_from_slice(&self.total.to_le_bytes());
        out[9..17].copy_from_slice(&self.updated_at_ms.to_le_bytes());
        let sum = integrity::checksum(&[key.as_bytes(), &out[..17]]);
        out[17..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(key: &str, bytes: &[u8]) -> Result<Self, BadRecord> {
        let body = checked(key, bytes, TOTAL_LEN)?;
        Ok(Self {
            total: i64::from_le_bytes(field(body, 1)?),
            updated_at_ms: i64::from_le_bytes(field(body, 9)?),
        })
    }
}

/// A flushed sequence: `format = 1 | seq u64 LE | crc32 LE`, the CRC over the
/// instance id's bytes and the 9 bytes before it.
struct FlushRecord;

const FLUSH_LEN: usize = 1 + 8 + 4;

impl FlushRecord {
    fn encode(instance: &str, seq: u64) -> [u8; FLUSH_LEN] {
        let mut out = [0u8; FLUSH_LEN];
        out[0] = FORMAT_V1;
        out[1..9].copy_from_slice(&seq.to_le_bytes());
        let sum = integrity::checksum(&[instance.as_bytes(), &out[..9]]);
        out[9..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(instance: &str, bytes: &[u8]) -> Result<u64, BadRecord> {
        let body = checked(instance, bytes, FLUSH_LEN)?;
        Ok(u64::from_le_bytes(field(body, 1)?))
    }
}

/// Why a stored record failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadRecord {
    #[error("record is {found} bytes, expected {expected}")]
    Length { found: usize, expected: usize },
    #[error("unknown record format {0}")]
    Format(u8),
    #[error("checksum mismatch: the record or its key was altered")]
    Checksum,
    #[error("key is not a counter key: {0}")]
    Key(String),
}

/// The record's bytes when its length, format and checksum hold.
fn checked<'a>(key: &str, bytes: &'a [u8], len: usize) -> Result<&'a [u8], BadRecord> {
    if bytes.len() != len {
        return Err(BadRecord::Length {
            found: bytes.len(),
            expected: len,
        });
    }
    if bytes[0] != FORMAT_V1 {
        return Err(BadRecord::Format(bytes[0]));
    }
    let (body, sum) = bytes.split_last_chunk::<4>().ok_or(BadRecord::Length {
        found: bytes.len(),
        expected: len,
    })?;
    if integrity::checksum(&[key.as_bytes(), body]) != u32::from_le_bytes(*sum) {
        return Err(BadRecord::Checksum);
    }
    Ok(body)
}

/// The `N` bytes at `at` in a checked record's body (which [`checked`] has
/// already sized, so a short body is only a length error).
fn field<const N: usize>(body: &[u8], at: usize) -> Result<[u8; N], BadRecord> {
    body.get(at..)
        .and_then(<[u8]>::first_chunk::<N>)
        .copied()
        .ok_or(BadRecord::Length {
            found: body.len(),
            expected: at + N,
        })
}

fn corrupt(key: &str, reason: &BadRecord) -> StoreError {
    StoreError::Corrupt {
        key: key.chars().take(300).collect(),
        reason: reason.to_string(),
    }
}

fn read_total(key: &str, bytes: &[u8]) -> Result<i64, StoreError> {
    TotalRecord::decode(key, bytes)
        .map(|r| r.total)
        .map_err(|reason| corrupt(key, &reason))
}

fn read_flushed(instance: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    FlushRecord::decode(instance, bytes).map_err(|reason| corrupt(instance, &reason))
}

/// Counter totals in a redb file, each record checksummed with its key.
pub struct RedbCounterStore {
    db: Arc<Database>,
    closed: CloseGate,
}

/// Maps a redb error met during `operation` to the port's error.
fn failed<E: Into<redb::Error>>(operation: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::redb(operation, error))
}

/// Maps a failure of the platform's file helpers (opening, quarantining).
fn failed_text<E: Into<platform::backend::BoxError>>(
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

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

impl RedbCounterStore {
    /// Opens (or creates) the store file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = platform::embedded::create_database(path).map_err(failed_text("open"))?;
        let txn = db.begin_write().map_err(failed("open"))?;
        txn.open_table(COUNTERS).map_err(failed("open"))?;
        txn.open_table(FLUSHES).map_err(failed("open"))?;
        upgrade(&txn).map_err(failed("open"))?;
        txn.commit().map_err(failed("open"))?;
        Ok(Self {
            db: Arc::new(db),
            closed: CloseGate::default(),
        })
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.closed.check("redb")?;
        Ok(&self.db)
    }
}

/// Rewrites a store of the unchecked layout into the checked tables (in the
/// caller's transaction) and drops the old tables. Its records are trusted
/// as they are: they carry nothing to check them against.
// redb's own error, once per open: its size does not matter here.
#[allow(clippy::result_large_err)]
fn upgrade(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    let mut rewritten = 0u64;
    if names.iter().any(|n| n == LEGACY_COUNTERS.name()) {
        let legacy = txn.open_table(LEGACY_COUNTERS)?;
        let mut counters = txn.open_table(COUNTERS)?;
        for entry in legacy.iter()? {
            let (key, value) = entry?;
            let (total, updated_at_ms) = value.value();
            let record = TotalRecord {
                total,
                updated_at_ms,
            };
            counters.insert(key.value(), record.encode(key.value()).as_slice())?;
            rewritten += 1;
        }
        drop(legacy);
        txn.delete_table(LEGACY_COUNTERS)?;
    }
    if names.iter().any(|n| n == LEGACY_FLUSHES.name()) {
        let legacy = txn.open_table(LEGACY_FLUSHES)?;
        let mut flushes = txn.open_table(FLUSHES)?;
        for entry in legacy.iter()? {
            let (instance, seq) = entry?;
            let record = FlushRecord::encode(instance.value(), seq.value());
            flushes.insert(instance.value(), record.as_slice())?;
        }
        drop(legacy);
        txn.delete_table(LEGACY_FLUSHES)?;
    }
    if rewritten > 0 {
        tracing::info!(
            totals = rewritten,
            "rewrote counter totals of an earlier release with checksums"
        );
    }
    Ok(())
}

fn apply_batch(db: &Database, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError> {
    let txn = db.begin_write().map_err(failed("apply"))?;
    let mut totals = Vec::with_capacity(batch.deltas.len());
    {
        let mut counters = txn.open_table(COUNTERS).map_err(failed("apply"))?;
        let mut flushes = txn.open_table(FLUSHES).map_err(failed("apply"))?;
        let done = match flushes
            .get(batch.instance.as_str())
            .map_err(failed("apply"))?
        {
            Some(v) => read_flushed(&batch.instance, v.value())?,
            None => 0,
        };
        let replay = batch.seq <= done;
        let now = now_ms();
        for (key, delta) in &batch.deltas {
            // A corrupt total fails the flush, naming the key: adding to a
            // value that cannot be trusted would make it look trustworthy.
            let current = match counters.get(key.as_str()).map_err(failed("apply"))? {
                Some(v) => Some(read_total(key.as_str(), v.value())?),
                None => None,
            };
            let value = if replay {
                current.unwrap_or(0)
            } else {
                let value = current.unwrap_or(0).checked_add(*delta).ok_or_else(|| {
                    StoreError::Overflow {
                        key: key.to_string(),
                    }
                })?;
                let record = TotalRecord {
                    total: value,
                    updated_at_ms: now,
                };
                counters
                    .insert(key.as_str(), record.encode(key.as_str()).as_slice())
                    .map_err(failed("apply"))?;
                value
            };
            totals.push(Counter {
                key: key.clone(),
                value,
            });
        }
        if !replay {
            let record = FlushRecord::encode(&batch.instance, batch.seq);
            flushes
                .insert(batch.instance.as_str(), record.as_slice())
                .map_err(failed("apply"))?;
        }
    }
    txn.commit().map_err(failed("apply"))?;
    Ok(totals)
}

#[async_trait]
impl CounterStore for RedbCounterStore {
    async fn load(&self, key: &CounterKey) -> Result<Option<i64>, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed("load"))?;
        let table = txn.open_table(COUNTERS).map_err(failed("load"))?;
        match table.get(key.as_str()).map_err(failed("load"))? {
            Some(v) => read_total(key.as_str(), v.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn load_with_flushed(
        &self,
        key: &CounterKey,
        instance: &str,
    ) -> Result<(Option<i64>, u64), StoreError> {
        // One read transaction: one snapshot of both tables.
        let txn = self.db()?.begin_read().map_err(failed("load"))?;
        let counters = txn.open_table(COUNTERS).map_err(failed("load"))?;
        let flush_table = txn.open_table(FLUSHES).map_err(failed("load"))?;
        let total = match counters.get(key.as_str()).map_err(failed("load"))? {
            Some(v) => Some(read_total(key.as_str(), v.value())?),
            None => None,
        };
        let flushed = match flush_table.get(instance).map_err(failed("load"))? {
            Some(v) => read_flushed(instance, v.value())?,
            None => 0,
        };
        Ok((total, flushed))
    }

    async fn apply(&self, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError> {
        self.db()?;
        let db = self.db.clone();
        let batch = batch.clone();
        // A durable commit fsyncs: off the async workers.
        tokio::task::spawn_blocking(move || apply_batch(&db, &batch))
            .await
            .map_err(|e| BackendError::new("redb", "apply", FailureKind::Other, e))?
    }

    async fn flushed_seq(&self, instance: &str) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed("flushed seq"))?;
        let table = txn.open_table(FLUSHES).map_err(failed("flushed seq"))?;
        match table.get(instance).map_err(failed("flushed seq"))? {
            Some(v) => read_flushed(instance, v.value()),
            None => Ok(0),
        }
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&CounterKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        let txn = self.db()?.begin_read().map_err(failed("page"))?;
        let table = txn.open_table(COUNTERS).map_err(failed("page"))?;
        let start = match after {
            Some(after) if after.as_str() >= prefix.as_str() => after.as_str(),
            _ => prefix.as_str(),
        };
        let mut items = Vec::new();
        let mut corrupt = Vec::new();
        let mut next = None;
        for entry in table.range(start..).map_err(failed("page"))? {
            let (key, value) = entry.map_err(failed("page"))?;
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
            // A corrupt record is skipped and named, not a failed page.
            let parsed = CounterKey::parse(key.to_owned(), usize::MAX)
                .map_err(|e| BadRecord::Key(e.to_string()));
            match parsed.and_then(|k| TotalRecord::decode(key, value.value()).map(|r| (k, r))) {
                Ok((key, record)) => items.push(Counter {
                    key,
                    value: record.total,
                }),
                Err(reason) => {
                    tracing::error!(key, %reason, "skipped a corrupt counter total in a listing");
                    corrupt.push(key.to_owned());
                }
            }
        }
        Ok(Page {
            items,
            next,
            corrupt,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db()?.begin_read().map(|_| ()).map_err(failed("ping"))
    }

    async fn close(&self) {
        self.closed.close();
    }
}

/// Scans every stored total and flushed sequence of the store file at
/// `path` (which no server may hold) and checks each; with `quarantine`,
/// moves the corrupt ones into the `quarantine` table, after which the
/// service answers 404 for their keys.
pub fn verify(
    path: &Path,
    quarantine: bool,
    progress: Progress<'_>,
) -> Result<ScanReport, StoreError> {
    let db = integrity::open_existing(path).map_err(failed_text("open"))?;
    let mut report = ScanReport::default();
    let mut bad: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    {
        let txn = db.begin_read().map_err(failed("verify"))?;
        let names: Vec<String> = txn
            .list_tables()
            .map_err(failed("verify"))?
            .map(|t| t.name().to_owned())
            .collect();
        let has = |name: &str| names.iter().any(|n| n == name);
        if has(LEGACY_COUNTERS.name()) || has(LEGACY_FLUSHES.name()) {
            // Never started by this release: nothing is checked yet.
            let legacy = txn.open_table(LEGACY_COUNTERS).map_err(failed("verify"))?;
            report.unchecked = legacy.len().map_err(failed("verify"))?;
        }
        let tables = [
            (COUNTERS, COUNTERS.name(), TOTAL_LEN),
            (FLUSHES, FLUSHES.name(), FLUSH_LEN),
        ];
        let mut total = 0;
        for (definition, name, _) in tables {
            if has(name) {
                let table = txn.open_table(definition).map_err(failed("verify"))?;
                total += table.len().map_err(failed("verify"))?;
            }
        }
        for (definition, name, len) in tables {
            if !has(name) {
                continue;
            }
            let table = txn.open_table(definition).map_err(failed("verify"))?;
            for entry in table.iter().map_err(failed("verify"))? {
                let (key, value) = entry.map_err(failed("verify"))?;
                report.scanned += 1;
                progress(report.scanned, total);
                if let Err(problem) = checked(key.value(), value.value(), len) {
                    report.corrupt.push(CorruptRecord {
                        table: name,
                        key: key.value().chars().take(300).collect(),
                        problem: problem.to_string(),
                    });
                    bad.push((name, key.value().to_owned(), value.value().to_vec()));
                }
            }
        }
    }
    if quarantine && !bad.is_empty() {
        let txn = db.begin_write().map_err(failed("verify"))?;
        for (name, key, stored) in &bad {
            integrity::quarantine(&txn, name, key, stored).map_err(failed_text("quarantine"))?;
            let definition = if *name == COUNTERS.name() {
                COUNTERS
            } else {
                FLUSHES
            };
            let mut table = txn.open_table(definition).map_err(failed("verify"))?;
            table.remove(key.as_str()).map_err(failed("verify"))?;
            report.quarantined += 1;
        }
        txn.commit().map_err(failed("verify"))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flipped_bit_of_a_total_or_its_key_is_seen() {
        let record = TotalRecord {
            total: 42,
            updated_at_ms: 7,
        };
        let bytes = record.encode("hits");
        assert_eq!(TotalRecord::decode("hits", &bytes), Ok(record));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[i] ^= 1 << bit;
                assert!(
                    TotalRecord::decode("hits", &flipped).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        assert!(TotalRecord::decode("hitz", &bytes).is_err(), "moved key");
        assert!(TotalRecord::decode("hits", &bytes[..20]).is_err());
        let flushed = FlushRecord::encode("instance", 9);
        assert_eq!(FlushRecord::decode("instance", &flushed), Ok(9));
        let mut flipped = flushed;
        flipped[3] ^= 0x10;
        assert!(FlushRecord::decode("instance", &flipped).is_err());
    }

    fn key(text: &str) -> CounterKey {
        CounterKey::parse(text.to_owned(), 256).expect("valid key")
    }

    fn batch(seq: u64, deltas: &[(&str, i64)]) -> FlushBatch {
        FlushBatch {
            instance: "i".into(),
            seq,
            deltas: deltas.iter().map(|(k, d)| (key(k), *d)).collect(),
        }
    }

    /// Overwrites a stored total's bytes with a flipped copy, as disk rot would.
    fn flip_total(path: &Path, name: &str) {
        let db = Database::create(path).expect("open");
        let txn = db.begin_write().expect("write");
        {
            let mut table = txn.open_table(COUNTERS).expect("table");
            let mut bytes = table
                .get(name)
                .expect("get")
                .expect("stored")
                .value()
                .to_vec();
            bytes[3] ^= 0x01;
            table.insert(name, bytes.as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }

    #[tokio::test]
    async fn a_corrupt_total_is_named_on_read_skipped_in_a_page_and_quarantined_by_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("counters.redb");
        let store = RedbCounterStore::open(&path).expect("open");
        store
            .apply(&batch(1, &[("a", 1), ("b", 2), ("c", 3)]))
            .await
            .expect("applied");
        drop(store);
        flip_total(&path, "b");

        let store = RedbCounterStore::open(&path).expect("reopen");
        assert_eq!(store.load(&key("a")).await.expect("a"), Some(1));
        match store.load(&key("b")).await {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, "b");
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            store.load_with_flushed(&key("b"), "i").await,
            Err(StoreError::Corrupt { .. })
        ));
        assert!(
            matches!(
                store.apply(&batch(2, &[("b", 1)])).await,
                Err(StoreError::Corrupt { .. })
            ),
            "a flush never adds to a corrupt total"
        );
        let page = store
            .page(
                &KeyPrefix::default(),
                None,
                PageLimit::parse(None).expect("the default limit"),
            )
            .await
            .expect("page");
        let keys: Vec<&str> = page.items.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert_eq!(page.corrupt, ["b"]);
        let err = verify(&path, false, &mut |_, _| {}).expect_err("held by the store");
        let err = platform::backend::chain(&err);
        assert!(err.contains("stop the quintet server"), "{err}");
        drop(store);

        let mut seen = 0;
        let report = verify(&path, false, &mut |done, _| seen = done).expect("verify");
        assert_eq!(report.scanned, 4, "3 totals and 1 flushed sequence");
        assert_eq!(seen, 4);
        assert_eq!(report.corrupt.len(), 1);
        assert_eq!(report.corrupt[0].key, "b");
        assert_eq!(report.quarantined, 0);
        let report = verify(&path, true, &mut |_, _| {}).expect("quarantine");
        assert_eq!(report.quarantined, 1);
        let report = verify(&path, false, &mut |_, _| {}).expect("verify again");
        assert!(report.corrupt.is_empty());
        assert_eq!(report.scanned, 3);

        let store = RedbCounterStore::open(&path).expect("reopen");
        assert_eq!(store.load(&key("b")).await.expect("b"), None);
        let db = &store.db;
        let txn = db.begin_read().expect("read");
        let kept = txn.open_table(integrity::QUARANTINE).expect("quarantine");
        assert!(kept.get("counter_totals/b").expect("get").is_some());
    }

    #[tokio::test]
    async fn a_store_of_the_unchecked_layout_opens_and_is_rewritten_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("counters.redb");
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut counters = txn.open_table(LEGACY_COUNTERS).expect("table");
                counters.insert("old", (41, 5)).expect("insert");
                let mut flushes = txn.open_table(LEGACY_FLUSHES).expect("table");
                flushes.insert("i", 3).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let report = verify(&path, false, &mut |_, _| {}).expect("verify");
        assert_eq!(report.unchecked, 1);

        let store = RedbCounterStore::open(&path).expect("opens the earlier layout");
        assert_eq!(store.load(&key("old")).await.expect("load"), Some(41));
        assert_eq!(store.flushed_seq("i").await.expect("seq"), 3);
        let totals = store
            .apply(&batch(4, &[("old", 1)]))
            .await
            .expect("applied");
        assert_eq!(totals[0].value, 42);
        drop(store);
        let report = verify(&path, false, &mut |_, _| {}).expect("verify");
        assert_eq!((report.unchecked, report.scanned), (0, 2));
        assert!(report.corrupt.is_empty());
    }
}
