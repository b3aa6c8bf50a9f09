//! The embedded queue's storage: its tables, a message's metadata record,
//! handles, and the writer's side (every call that changes a queue, applied
//! in one transaction per group commit). See the parent module's doc for the
//! layout.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use platform::backend::{BackendError, FailureKind};
use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use uuid::Uuid;

use super::MAX_QUEUES;
use crate::domain::QueueName;
use crate::ports::{Delivery, Outgoing, QueueError};

/// queue → (next seq, stored messages). A queue exists once it is here.
pub(super) const QUEUES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queue_queues");
/// A message's metadata: (message id, `sent_at_ms`, `receive_count`,
/// `visible_at_ms`, token, reason); see [`Meta`].
pub(super) type MetaRecord = (u128, i64, u32, u64, u64, Option<&'static str>);
/// (queue, seq) → metadata.
pub(super) const MESSAGES: TableDefinition<(&str, u64), MetaRecord> =
    TableDefinition::new("queue_messages");
/// (queue, seq) → body. Apart from the metadata so a receive rewrites only the latter.
pub(super) const BODIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_bodies");
/// (queue, seq) → the `traceparent` it was sent with; only messages sent
/// with one are here (traces exported), so the metadata record's layout is
/// the same with tracing on or off.
pub(super) const TRACES: TableDefinition<(&str, u64), &str> = TableDefinition::new("queue_traces");
/// (queue, seq) of every visible message.
pub(super) const READY: TableDefinition<(&str, u64), ()> = TableDefinition::new("queue_ready");
/// (queue, `visible_at_ms`, seq) of every in-flight message.
pub(super) const HIDDEN: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("queue_hidden");

/// A failed redb call.
pub(super) fn unavailable(error: impl Into<redb::Error>) -> QueueError {
    BackendError::redb("queue", error).into()
}

/// A failure of opening the file or of the group commit.
pub(super) fn failed(
    operation: &'static str,
    cause: impl Into<platform::backend::BoxError>,
) -> QueueError {
    BackendError::new("redb", operation, FailureKind::Other, cause).into()
}

pub(super) fn closed() -> QueueError {
    BackendError::closed("redb").into()
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A message's metadata, as `MESSAGES` stores it.
pub(super) struct Meta {
    id: u128,
    sent_at_ms: i64,
    receive_count: u32,
    visible_at_ms: u64,
    token: u64,
    reason: Option<String>,
}

pub(super) fn handle(seq: u64, token: u64) -> String {
    format!("{seq}.{token:016x}")
}

/// (seq, token), or `None` for a string no delivery could have produced.
pub(super) fn parse_handle(handle: &str) -> Option<(u64, u64)> {
    let (seq, token) = handle.split_once('.')?;
    Some((seq.parse().ok()?, u64::from_str_radix(token, 16).ok()?))
}

/// One call, applied in the writer's transaction.
pub(super) enum Op {
    Ensure {
        queue: QueueName,
    },
    Send {
        queue: QueueName,
        /// Messages refused before the writer (too large) keep their place.
        entries: Vec<Result<Outgoing, QueueError>>,
    },
    Receive {
        queue: QueueName,
        max: usize,
        visibility_ms: u64,
    },
    Delete {
        queue: QueueName,
        handles: Vec<String>,
    },
    ChangeVisibility {
        queue: QueueName,
        handle: String,
        visibility_ms: u64,
    },
}

pub(super) enum Reply {
    Done,
    Sent(Vec<Result<String, QueueError>>),
    Received {
        deliveries: Vec<Delivery>,
        /// When the earliest in-flight message becomes visible again.
        next_due_ms: Option<u64>,
    },
    Deleted(Vec<Result<(), QueueError>>),
}

/// A call's outcome; its own failure (no such queue) does not fail its batch.
pub(super) type Outcome = Result<Reply, QueueError>;

pub(super) fn unexpected_reply() -> QueueError {
    failed("write", "the queue writer answered another operation")
}

/// When the queue's earliest in-flight message becomes visible.
pub(super) fn first_due(
    hidden: &impl ReadableTable<(&'static str, u64, u64), ()>,
    queue: &str,
) -> Result<Option<u64>, QueueError> {
    let first = hidden
        .range((queue, 0, 0)..=(queue, u64::MAX, u64::MAX))
        .map_err(unavailable)?
        .next()
        .transpose()
        .map_err(unavailable)?;
    Ok(first.map(|(key, _)| key.value().1))
}

pub(super) fn set_gauge(queue: &str, messages: u64) {
    metrics::gauge!(crate::metrics::QUEUE_MESSAGES, "queue" => queue.to_owned())
        .set(crate::metrics::count(messages));
}

/// Applies `ops` in order in one transaction, committed if it changed anything.
pub(super) fn commit(db: &Database, ops: &[Op]) -> Result<Vec<Outcome>, QueueError> {
    let now = now_ms();
    let txn = db.begin_write().map_err(unavailable)?;
    let (outcomes, dirty, counts) = {
        let mut tables = Tables::open(&txn)?;
        let outcomes = ops
            .iter()
            .map(|op| tables.apply(op, now))
            .collect::<Result<Vec<_>, _>>()?;
        (outcomes, tables.dirty, tables.counts)
    };
    if dirty {
        txn.commit().map_err(unavailable)?;
        for (queue, count) in counts {
            set_gauge(queue.as_str(), count);
        }
    } else {
        txn.abort().map_err(unavailable)?;
    }
    Ok(outcomes)
}

/// The queue's tables inside one write transaction.
pub(super) struct Tables<'txn> {
    queues: Table<'txn, &'static str, (u64, u64)>,
    messages: Table<'txn, (&'static str, u64), MetaRecord>,
    bodies: Table<'txn, (&'static str, u64), &'static [u8]>,
    ready: Table<'txn, (&'static str, u64), ()>,
    hidden: Table<'txn, (&'static str, u64, u64), ()>,
    traces: Table<'txn, (&'static str, u64), &'static str>,
    /// Whether anything was written (else the transaction is aborted).
    dirty: bool,
    /// Stored messages per queue whose count changed, for the gauge.
    counts: HashMap<QueueName, u64>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, QueueError> {
        Ok(Self {
            queues: txn.open_table(QUEUES).map_err(unavailable)?,
            messages: txn.open_table(MESSAGES).map_err(unavailable)?,
            bodies: txn.open_table(BODIES).map_err(unavailable)?,
            ready: txn.open_table(READY).map_err(unavailable)?,
            hidden: txn.open_table(HIDDEN).map_err(unavailable)?,
            traces: txn.open_table(TRACES).map_err(unavailable)?,
            dirty: false,
            counts: HashMap::new(),
        })
    }

    /// One call: `Err` fails the transaction, `Ok(Err)` only this call.
    fn apply(&mut self, op: &Op, now: u64) -> Result<Outcome, QueueError> {
        match op {
            Op::Ensure { queue } => {
                if self.queue(queue)?.is_none() {
                    // Jobs name their result queues: without a bound, a producer
                    // could fill the disk and /metrics with queues.
                    if self.queues.len().map_err(unavailable)? >= MAX_QUEUES {
                        return Ok(Err(QueueError::TooManyQueues(MAX_QUEUES)));
                    }
                    self.set_queue(queue, 0, 0)?;
                }
                Ok(Ok(Reply::Done))
            }
            Op::Send { queue, entries } => self.send(queue, entries, now),
            Op::Receive {
                queue,
                max,
                visibility_ms,
            } => self.receive(queue, *max, *visibility_ms, now),
            Op::Delete { queue, handles } => self.delete(queue, handles),
            Op::ChangeVisibility {
                queue,
                handle,
                visibility_ms,
            } => self.change_visibility(queue, handle, *visibility_ms, now),
        }
    }

    /// (next seq, stored messages), or `None` if the queue was never ensured.
    fn queue(&self, queue: &QueueName) -> Result<Option<(u64, u64)>, QueueError> {
        Ok(self
            .queues
            .get(queue.as_str())
            .map_err(unavailable)?
            .map(|v| v.value()))
    }

    fn set_queue(
        &mut self,
        queue: &QueueName,
        next_seq: u64,
        count: u64,
    ) -> Result<(), QueueError> {
        self.queues
            .insert(queue.as_str(), (next_seq, count))
            .map_err(unavailable)?;
        self.dirty = true;
        self.counts.insert(queue.clone(), count);
        Ok(())
    }

    fn meta(&self, queue: &str, seq: u64) -> Result<Option<Meta>, QueueError> {
        Ok(self
            .messages
            .get((queue, seq))
            .map_err(unavailable)?
            .map(|v| {
                let (id, sent_at_ms, receive_count, visible_at_ms, token, reason) = v.value();
                Meta {
                    id,
                    sent_at_ms,
                    receive_count,
                    visible_at_ms,
                    token,
                    reason: reason.map(str::to_owned),
                }
            }))
    }

    fn put_meta(&mut self, queue: &str, seq: u64, meta: &Meta) -> Result<(), QueueError> {
        let value = (
            meta.id,
            meta.sent_at_ms,
            meta.receive_count,
            meta.visible_at_ms,
            meta.token,
            meta.reason.as_deref(),
        );
        self.messages
            .insert((queue, seq), value)
            .map_err(unavailable)?;
        self.dirty = true;
        Ok(())
    }

    /// Puts the message in the index its `visible_at_ms` calls for.
    fn index(
        &mut self,
        queue: &str,
        seq: u64,
        visible_at_ms: u64,
        now: u64,
    ) -> Result<(), QueueError> {
        if visible_at_ms <= now {
            self.ready.insert((queue, seq), ()).map_err(unavailable)?;
        } else {
            self.hidden
                .insert((queue, visible_at_ms, seq), ())
                .map_err(unavailable)?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Takes the message out of whichever index holds it.
    fn unindex(&mut self, queue: &str, seq: u64, visible_at_ms: u64) -> Result<(), QueueError> {
        self.ready.remove((queue, seq)).map_err(unavailable)?;
        self.hidden
            .remove((queue, visible_at_ms, seq))
            .map_err(unavailable)?;
        self.dirty = true;
        Ok(())
    }

    /// The message a handle names, if that handle is its latest delivery's.
    fn find(&self, queue: &str, handle: &str) -> Result<Option<(u64, Meta)>, QueueError> {
        let Some((seq, token)) = parse_handle(handle) else {
            return Ok(None);
        };
        Ok(self
            .meta(queue, seq)?
            .filter(|meta| meta.receive_count > 0 && meta.token == token)
            .map(|meta| (seq, meta)))
    }

    fn send(
        &mut self,
        queue: &QueueName,
        entries: &[Result<Outgoing, QueueError>],
        now: u64,
    ) -> Result<Outcome, QueueError> {
        let Some((mut next_seq, mut count)) = self.queue(queue)? else {
            return Ok(Err(QueueError::NoSuchQueue(queue.clone())));
        };
        let q = queue.as_str();
        let sent_at_ms = i64::try_from(now).unwrap_or(i64::MAX);
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            let message = match entry {
                Ok(message) => message,
                Err(refused) => {
                    outcomes.push(Err(refused.clone()));
                    continue;
                }
            };
            let seq = next_seq;
            next_seq = seq.checked_add(1).ok_or_else(|| {
                failed(
                    "send",
                    format!("queue '{queue}' ran out of sequence numbers"),
                )
            })?;
            let id = Uuid::new_v4();
            let meta = Meta {
                id: id.as_u128(),
                sent_at_ms,
                receive_count: 0,
                visible_at_ms: now,
                token: rand::random(),
                reason: message.reason.clone(),
            };
            self.put_meta(q, seq, &meta)?;
            self.bodies
                .insert((q, seq), message.body.as_slice())
                .map_err(unavailable)?;
            if let Some(traceparent) = message.traceparent.as_deref() {
                self.traces
                    .insert((q, seq), traceparent)
                    .map_err(unavailable)?;
            }
            self.index(q, seq, now, now)?;
            count = count.saturating_add(1);
            outcomes.push(Ok(id.to_string()));
        }
        if outcomes.iter().any(Result::is_ok) {
            self.set_queue(queue, next_seq, count)?;
        }
        Ok(Ok(Reply::Sent(outcomes)))
    }

    fn receive(
        &mut self,
        queue: &QueueName,
        max: usize,
        visibility_ms: u64,
        now: u64,
    ) -> Result<Outcome, QueueError> {
        let Some((next_seq, mut count)) = self.queue(queue)? else {
            return Ok(Err(QueueError::NoSuchQueue(queue.clone())));
        };
        let q = queue.as_str();
        // In-flight messages whose timeout has passed become visible, in
        // their send order among the others.
        let due = self
            .hidden
            .range((q, 0, 0)..=(q, now, u64::MAX))
            .map_err(unavailable)?
            .map(|entry| entry.map(|(key, _)| (key.value().1, key.value().2)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        for (visible_at_ms, seq) in due {
            self.unindex(q, seq, visible_at_ms)?;
            self.index(q, seq, now, now)?;
        }
        let seqs = self
            .ready
            .range((q, 0)..=(q, u64::MAX))
            .map_err(unavailable)?
            .take(max)
            .map(|entry| entry.map(|(key, _)| key.value().1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        let visible_at_ms = now.saturating_add(visibility_ms);
        let mut deliveries = Vec::with_capacity(seqs.len());
        for seq in seqs {
            self.ready.remove((q, seq)).map_err(unavailable)?;
            self.dirty = true;
            let meta = self.meta(q, seq)?;
            let body = self
                .bodies
                .get((q, seq))
                .map_err(unavailable)?
                .map(|b| b.value().to_vec());
            let (Some(mut meta), Some(body)) = (meta, body) else {
                // Half a message: drop what is left rather than fail every receive.
                tracing::error!(
                    queue = q,
                    seq,
                    "queue message without metadata or body dropped"
                );
                self.messages.remove((q, seq)).map_err(unavailable)?;
                self.bodies.remove((q, seq)).map_err(unavailable)?;
                self.traces.remove((q, seq)).map_err(unavailable)?;
                count = count.saturating_sub(1);
                self.set_queue(queue, next_seq, count)?;
                continue;
            };
            let traceparent = self
                .traces
                .get((q, seq))
                .map_err(unavailable)?
                .map(|t| t.value().to_owned());
            meta.receive_count = meta.receive_count.saturating_add(1);
            meta.token = rand::random();
            meta.visible_at_ms = visible_at_ms;
            self.put_meta(q, seq, &meta)?;
            // Hidden even with a 0 timeout: the next receive moves it back.
            self.hidden
                .insert((q, visible_at_ms, seq), ())
                .map_err(unavailable)?;
            deliveries.push(Delivery {
                message_id: Uuid::from_u128(meta.id).to_string(),
                handle: handle(seq, meta.token),
                body,
                receive_count: meta.receive_count,
                sent_at_ms: meta.sent_at_ms,
                reason: meta.reason,
                traceparent,
            });
        }
        let next_due_ms = first_due(&self.hidden, q)?;
        Ok(Ok(Reply::Received {
            deliveries,
            next_due_ms,
        }))
    }

    fn delete(&mut self, queue: &QueueName, handles: &[String]) -> Result<Outcome, QueueError> {
        let Some((next_seq, mut count)) = self.queue(queue)? else {
            return Ok(Err(QueueError::NoSuchQueue(queue.clone())));
        };
        let q = queue.as_str();
        let mut outcomes = Vec::with_capacity(handles.len());
        let mut deleted = false;
        for handle in handles {
            let Some((seq, meta)) = self.find(q, handle)? else {
                outcomes.push(Err(QueueError::InvalidHandle));
                continue;
            };
            self.unindex(q, seq, meta.visible_at_ms)?;
            self.messages.remove((q, seq)).map_err(unavailable)?;
            self.bodies.remove((q, seq)).map_err(unavailable)?;
            self.traces.remove((q, seq)).map_err(unavailable)?;
            count = count.saturating_sub(1);
            deleted = true;
            outcomes.push(Ok(()));
        }
        if deleted {
            self.set_queue(queue, next_seq, count)?;
        }
        Ok(Ok(Reply::Deleted(outcomes)))
    }

    fn change_visibility(
        &mut self,
        queue: &QueueName,
        handle: &str,
        visibility_ms: u64,
        now: u64,
    ) -> Result<Outcome, QueueError> {
        if self.queue(queue)?.is_none() {
            return Ok(Err(QueueError::NoSuchQueue(queue.clone())));
        }
        let q = queue.as_str();
        let Some((seq, mut meta)) = self.find(q, handle)? else {
            return Ok(Err(QueueError::InvalidHandle));
        };
        self.unindex(q, seq, meta.visible_at_ms)?;
        meta.visible_at_ms = now.saturating_add(visibility_ms);
        self.put_meta(q, seq, &meta)?;
        self.index(q, seq, meta.visible_at_ms, now)?;
        Ok(Ok(Reply::Done))
    }
}
