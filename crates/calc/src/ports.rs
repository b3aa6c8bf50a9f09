//! What calc needs from the outside world: an append-only [`EventLog`] of
//! the calculations it performed. Adapters: redb (embedded, the default),
//! `PostgreSQL`, NATS `JetStream`.

use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::BackendError;

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};

/// Why the event log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// The backend failed (unreachable, closed, an I/O error); its kind says
    /// whether retrying later may help. The cause is the error's source, for
    /// the log ([`platform::backend::chain`]).
    #[error("event log unavailable")]
    Unavailable(#[from] BackendError),
    /// A stored event cannot be read back (damaged or foreign data).
    #[error("event {seq} cannot be read: {reason}")]
    Corrupt {
        /// The event's position.
        seq: u64,
        /// Why it cannot be read.
        reason: String,
    },
}

/// Reads back an event an adapter stored as JSON at position `seq`.
pub fn decode_event(seq: u64, json: &[u8]) -> Result<CalculationPerformed, EventLogError> {
    serde_json::from_slice(json).map_err(|e| EventLogError::Corrupt {
        seq,
        reason: e.to_string(),
    })
}

/// An append-only log of calculations, read back in append order.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// The engine's name, for logs and metrics (`redb`, `postgres`, `nats`).
    fn engine(&self) -> &'static str;

    /// Appends `events` in order, all or none; positions follow the last one.
    async fn append(&self, events: &[CalculationPerformed]) -> Result<(), EventLogError>;

    /// The events matching `query`, in append order.
    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError>;

    /// `Ok` when the log is reachable.
    async fn ping(&self) -> Result<(), EventLogError>;

    /// Releases the log; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// The ports [`crate::service`] is built on.
pub struct Backends {
    /// Where every calculation is recorded; `None`: events are not kept.
    pub events: Option<Arc<dyn EventLog>>,
}
