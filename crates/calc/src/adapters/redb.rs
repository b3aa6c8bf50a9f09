//! Embedded event log on redb, one file in the data directory.
//!
//! Appends come from one writer (the recorder) in batches, and each batch is
//! one row: key = the position of its first event, value = (how many events,
//! the events as JSON lines). A B-tree insert per event cost more than
//! encoding it; a row per batch makes an append one insert and one durable
//! commit. Reads find the row holding the first wanted position and scan
//! forward.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};
use platform::backend::{BackendError, CloseGate, FailureKind};

use crate::ports::{EventLog, EventLogError, decode_event};

/// first position → (events in the batch, their JSON, one per line)
const BATCHES: TableDefinition<u64, (u32, &[u8])> = TableDefinition::new("calc_event_batches");

/// Events in a redb file, one row per appended batch.
pub struct RedbEventLog {
    db: Arc<Database>,
    closed: CloseGate,
}

/// Maps a failure met during `operation` to the port's error (redb's own
/// errors, and the few local ones around them: all of kind `Other`).
fn failed<E: Into<platform::backend::BoxError>>(
    operation: &'static str,
) -> impl FnOnce(E) -> EventLogError {
    move |error| {
        EventLogError::Unavailable(BackendError::new(
            "redb",
            operation,
            FailureKind::Other,
            error,
        ))
    }
}

impl RedbEventLog {
    /// Opens (or creates) the log file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let db = platform::embedded::create_database(path).map_err(failed("open"))?;
        let txn = db.begin_write().map_err(failed("open"))?;
        txn.open_table(BATCHES).map_err(failed("open"))?;
        txn.commit().map_err(failed("open"))?;
        Ok(Self {
            db: Arc::new(db),
            closed: CloseGate::default(),
        })
    }

    fn db(&self) -> Result<Arc<Database>, EventLogError> {
        self.closed.check("redb")?;
        Ok(self.db.clone())
    }
}

fn append(db: &Database, count: u32, lines: &[u8]) -> Result<(), EventLogError> {
    let txn = db.begin_write().map_err(failed("append"))?;
    {
        let mut table = txn.open_table(BATCHES).map_err(failed("append"))?;
        let first = match table.last().map_err(failed("append"))? {
            Some((key, value)) => key.value() + u64::from(value.value().0),
            None => 1,
        };
        table
            .insert(first, (count, lines))
            .map_err(failed("append"))?;
    }
    txn.commit().map_err(failed("append"))
}

fn read(db: &Database, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
    let txn = db.begin_read().map_err(failed("read"))?;
    let table = txn.open_table(BATCHES).map_err(failed("read"))?;
    let wanted = query.after.saturating_add(1);
    // The row holding `wanted` starts at or before it.
    let from = match table.range(..=wanted).map_err(failed("read"))?.next_back() {
        Some(row) => row.map_err(failed("read"))?.0.value(),
        None => wanted,
    };
    let mut events = Vec::new();
    for row in table.range(from..).map_err(failed("read"))? {
        let (first, value) = row.map_err(failed("read"))?;
        let (first, (_, lines)) = (first.value(), value.value());
        for (seq, json) in (first..).zip(lines.split(|&b| b == b'\n')) {
            if seq < wanted || json.is_empty() {
                continue;
            }
            let event = decode_event(seq, json)?;
            if query.admits(event.at) {
                events.push(StoredEvent { seq, event });
                if events.len() == query.limit {
                    return Ok(events);
                }
            }
        }
    }
    Ok(events)
}

#[async_trait]
impl EventLog for RedbEventLog {
    fn engine(&self) -> &'static str {
        "redb"
    }

    async fn append(&self, events: &[CalculationPerformed]) -> Result<(), EventLogError> {
        if events.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        let count = u32::try_from(events.len()).map_err(failed("append"))?;
        let mut lines = Vec::with_capacity(events.len() * 192);
        for event in events {
            // JSON has no raw newlines: a line is exactly one event.
            serde_json::to_writer(&mut lines, event).map_err(failed("append"))?;
            lines.push(b'\n');
        }
        tokio::task::spawn_blocking(move || append(&db, count, &lines))
            .await
            .map_err(failed("append"))?
    }

    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
        let db = self.db()?;
        tokio::task::spawn_blocking(move || read(&db, query))
            .await
            .map_err(failed("read"))?
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.db().map(|_| ())
    }

    async fn close(&self) {
        self.closed.close();
    }
}
