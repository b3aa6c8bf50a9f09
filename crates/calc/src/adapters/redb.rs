//! Embedded event log on redb: one table of position → event JSON, in the
//! data directory. Appends come from one writer (the recorder) in batches, so
//! each batch is one durable transaction; reads scan forward from a position.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};
use crate::ports::{EventLog, EventLogError, decode_event};

/// position → `CalculationPerformed` as JSON
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("calc_events");

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
        txn.open_table(EVENTS).map_err(unavailable)?;
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

fn append(db: &Database, events: Vec<Vec<u8>>) -> Result<(), EventLogError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(EVENTS).map_err(unavailable)?;
        let first = match table.last().map_err(unavailable)? {
            Some((seq, _)) => seq.value() + 1,
            None => 1,
        };
        for (seq, json) in (first..).zip(events) {
            table.insert(seq, json.as_slice()).map_err(unavailable)?;
        }
    }
    txn.commit().map_err(unavailable)
}

fn read(db: &Database, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(EVENTS).map_err(unavailable)?;
    let mut events = Vec::new();
    for entry in table
        .range(query.after.saturating_add(1)..)
        .map_err(unavailable)?
    {
        let (seq, json) = entry.map_err(unavailable)?;
        let seq = seq.value();
        let event = decode_event(seq, json.value())?;
        if query.admits(event.at) {
            events.push(StoredEvent { seq, event });
            if events.len() == query.limit {
                break;
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
        let db = self.db()?;
        let encoded = events
            .iter()
            .map(|event| serde_json::to_vec(event).map_err(unavailable))
            .collect::<Result<Vec<_>, _>>()?;
        tokio::task::spawn_blocking(move || append(&db, encoded))
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
