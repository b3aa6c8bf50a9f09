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
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};
use crate::ports::{EventLog, EventLogError, decode_event};

/// first position → (events in the batch, their JSON, one per line)
const BATCHES: TableDefinition<u64, (u32, &[u8])> = TableDefinition::new("calc_event_batches");

pub struct RedbEventLog {
    db: Arc<Database>,
    closed: AtomicBool,
}

fn unavailable(error: impl std::fmt::Display) -> EventLogError {
    EventLogError::Unavailable(error.to_string())
}

impl RedbEventLog {
    /// Opens (or creates) the log file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, EventLogError> {
        let db = platform::embedded::create_database(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(BATCHES).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(Self {
            db: Arc::new(db),
            closed: AtomicBool::new(false),
        })
    }

    fn db(&self) -> Result<Arc<Database>, EventLogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(unavailable("event log is closed"));
        }
        Ok(self.db.clone())
    }
}

fn append(db: &Database, count: u32, lines: Vec<u8>) -> Result<(), EventLogError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(BATCHES).map_err(unavailable)?;
        let first = match table.last().map_err(unavailable)? {
            Some((key, value)) => key.value() + u64::from(value.value().0),
            None => 1,
        };
        table
            .insert(first, (count, lines.as_slice()))
            .map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)
}

fn read(db: &Database, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(BATCHES).map_err(unavailable)?;
    let wanted = query.after.saturating_add(1);
    // The row holding `wanted` starts at or before it.
    let from = match table.range(..=wanted).map_err(unavailable)?.next_back() {
        Some(row) => row.map_err(unavailable)?.0.value(),
        None => wanted,
    };
    let mut events = Vec::new();
    for row in table.range(from..).map_err(unavailable)? {
        let (first, value) = row.map_err(unavailable)?;
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
        let count = u32::try_from(events.len()).map_err(unavailable)?;
        let mut lines = Vec::with_capacity(events.len() * 192);
        for event in events {
            // JSON has no raw newlines: a line is exactly one event.
            serde_json::to_writer(&mut lines, event).map_err(unavailable)?;
            lines.push(b'\n');
        }
        tokio::task::spawn_blocking(move || append(&db, count, lines))
            .await
            .map_err(unavailable)?
    }

    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
        let db = self.db()?;
        tokio::task::spawn_blocking(move || read(&db, query))
            .await
            .map_err(unavailable)?
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.db().map(|_| ())
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
