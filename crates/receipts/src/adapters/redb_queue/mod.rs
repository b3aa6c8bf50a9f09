//! Embedded durable job queue on redb: every queue in one file, each message
//! durable before the call that wrote it returns, at-least-once delivery with
//! visibility timeouts, FIFO by send order among visible messages.
//!
//! Queues are by name; a queue given by URL is the queue its last path
//! segment names (the host and the rest of the path mean nothing here).
//!
//! Not SQS: no delivery delays, no redrive policy (the pipeline moves dead
//! letters itself), no FIFO-queue deduplication, one process per file.
//!
//! Writes: every call that changes a queue (ensure, send, receive, which hides
//! what it hands out, delete, change visibility) goes through the platform's
//! group-commit writer, so concurrent workers share one durable transaction.
//! A batch that changed nothing (bad handles, nothing to receive) is aborted,
//! not committed, so it costs no fsync. Reads (`exists`, `ping`, the
//! long-poll peek) run inline against MVCC snapshots.
//!
//! Layout: a message is its metadata in `queue_messages` and its body in
//! `queue_bodies`, both keyed by (queue, seq), seq being the queue's send
//! counter. Each message is in one index: `queue_ready` (queue, seq) while
//! it is visible, `queue_hidden` (queue, `visible_at_ms`, seq) while in flight.
//! A message sent with a trace context has it in `queue_traces`, same key.
//! A receive first moves the hidden messages whose time has come to ready
//! (each moves once per timeout), then takes the lowest seqs:
//! O((batch + expired) · log n), never a scan of the queue.
//!
//! A handle is `<seq>.<token>`, the token drawn afresh for every delivery and
//! stored with the message, so a handle from an earlier delivery (or of a
//! deleted message) no longer matches anything.
//!
//! Long polling: one [`Notify`] per queue, woken by sends and visibility
//! changes; a waiting receiver also sleeps until the earliest hidden message
//! is due, and never polls in a loop.

mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use redb::{Database, ReadableTable};
use store::{
    HIDDEN, Op, Outcome, QUEUES, READY, Reply, Tables, closed, commit, failed, first_due, millis,
    now_ms, set_gauge, unavailable, unexpected_reply,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::domain::{QueueName, QueueRef};
use crate::ports::{Delivery, JobQueue, MAX_BATCH, MAX_BODY_BYTES, Outgoing, QueueError};

/// Most queues the embedded queue holds; creating one more is refused.
pub const MAX_QUEUES: u64 = 1000;

/// Calls waiting for the writer; beyond this, callers wait (backpressure).
/// Each carries at most [`MAX_BATCH`] bodies of at most [`MAX_BODY_BYTES`].
const QUEUE_DEPTH: usize = 256;
/// Most calls one transaction commits.
const MAX_OPS: usize = 64;
/// The longest a receive waits, whatever it asks (a year: "forever").
const MAX_WAIT: Duration = Duration::from_hours(8760);

/// What a receiver sees without writing.
struct Peek {
    /// Something is visible now (or due, waiting to be moved to ready).
    ready: bool,
    next_due_ms: Option<u64>,
}

/// Every queue in one redb file; see the module doc.
pub struct RedbJobQueue {
    db: Arc<Database>,
    writer: GroupCommit<Op, Outcome>,
    wakers: Mutex<HashMap<QueueName, Arc<Notify>>>,
    closed: CloseGate,
}

impl RedbJobQueue {
    /// Opens (or creates) the queue file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let db = platform::embedded::create_database(path).map_err(|e| failed("open", e))?;
        let txn = db.begin_write().map_err(unavailable)?;
        Tables::open(&txn)?;
        txn.commit().map_err(unavailable)?;
        {
            let txn = db.begin_read().map_err(unavailable)?;
            let queues = txn.open_table(QUEUES).map_err(unavailable)?;
            for entry in queues.iter().map_err(unavailable)? {
                let (queue, counters) = entry.map_err(unavailable)?;
                set_gauge(queue.value(), counters.value().1);
            }
        }
        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer = GroupCommit::spawn("receipts-queue", QUEUE_DEPTH, MAX_OPS, move |ops| {
            commit(&writer_db, ops)
                .map_err(|e| BackendError::new("redb", "commit", FailureKind::Other, e))
        })
        .map_err(|e| BackendError::new("redb", "start writer", FailureKind::Other, e))?;
        Ok(Self {
            db,
            writer,
            wakers: Mutex::new(HashMap::new()),
            closed: CloseGate::default(),
        })
    }

    fn check_open(&self) -> Result<(), QueueError> {
        self.closed.check("redb")?;
        Ok(())
    }

    async fn write(&self, op: Op) -> Outcome {
        self.check_open()?;
        self.writer.submit(op).await.map_err(|e| match e {
            CommitError::Closed => closed(),
            CommitError::Failed(error) => failed("commit", error),
        })?
    }

    /// The queue's waker, created on first use (only for queues that exist).
    fn waker(&self, queue: &QueueName) -> Arc<Notify> {
        let mut wakers = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers.entry(queue.clone()).or_default().clone()
    }

    /// Wakes the queue's long-polling receivers, if any.
    fn wake(&self, queue: &QueueName) {
        let wakers = self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waker) = wakers.get(queue) {
            waker.notify_waiters();
        }
    }

    fn read_exists(&self, queue: &QueueName) -> Result<bool, QueueError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let queues = txn.open_table(QUEUES).map_err(unavailable)?;
        Ok(queues.get(queue.as_str()).map_err(unavailable)?.is_some())
    }

    fn peek(&self, queue: &QueueName) -> Result<Peek, QueueError> {
        self.check_open()?;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let queues = txn.open_table(QUEUES).map_err(unavailable)?;
        if queues.get(queue.as_str()).map_err(unavailable)?.is_none() {
            return Err(QueueError::NoSuchQueue(queue.clone()));
        }
        let ready = txn.open_table(READY).map_err(unavailable)?;
        let hidden = txn.open_table(HIDDEN).map_err(unavailable)?;
        let q = queue.as_str();
        let any_ready = ready
            .range((q, 0)..=(q, u64::MAX))
            .map_err(unavailable)?
            .next()
            .transpose()
            .map_err(unavailable)?
            .is_some();
        let next_due_ms = first_due(&hidden, q)?;
        Ok(Peek {
            ready: any_ready || next_due_ms.is_some_and(|due| due <= now_ms()),
            next_due_ms,
        })
    }
}

#[async_trait]
impl JobQueue for RedbJobQueue {
    fn kind(&self) -> &'static str {
        "redb"
    }

    async fn ensure(&self, queue: &QueueRef) -> Result<(), QueueError> {
        let queue = queue.name();
        self.check_open()?;
        if self.read_exists(queue)? {
            return Ok(());
        }
        match self
            .write(Op::Ensure {
                queue: queue.clone(),
            })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn exists(&self, queue: &QueueRef) -> Result<bool, QueueError> {
        let queue = queue.name();
        self.check_open()?;
        self.read_exists(queue)
    }

    async fn send_batch(
        &self,
        queue: &QueueRef,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        let queue = queue.name();
        if messages.len() > MAX_BATCH {
            return Err(QueueError::TooManyEntries(messages.len()));
        }
        let entries = messages
            .iter()
            .map(|m| {
                if m.body.len() > MAX_BODY_BYTES {
                    Err(QueueError::TooLarge(m.body.len()))
                } else {
                    Ok(m.clone())
                }
            })
            .collect();
        let Reply::Sent(outcomes) = self
            .write(Op::Send {
                queue: queue.clone(),
                entries,
            })
            .await?
        else {
            return Err(unexpected_reply());
        };
        let sent = outcomes.iter().filter(|o| o.is_ok()).count();
        if sent > 0 {
            metrics::counter!(crate::metrics::QUEUE_SENT_TOTAL, "queue" => queue.to_string())
                .increment(sent as u64);
            self.wake(queue);
        }
        Ok(outcomes)
    }

    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let queue = queue.name();
        if max > MAX_BATCH {
            return Err(QueueError::TooManyEntries(max));
        }
        let start = Instant::now();
        let deadline = start + wait.min(MAX_WAIT);
        let visibility_ms = millis(visibility);
        // Checks the queue before it gets a waker, so wakers exist only for real queues.
        let mut peek = self.peek(queue)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let waker = self.waker(queue);
        loop {
            // Registered before looking, so a send between the look and the
            // wait still wakes this receiver.
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut next_due_ms = peek.next_due_ms;
            if peek.ready {
                let op = Op::Receive {
                    queue: queue.clone(),
                    max,
                    visibility_ms,
                };
                let Reply::Received {
                    deliveries,
                    next_due_ms: due,
                } = self.write(op).await?
                else {
                    return Err(unexpected_reply());
                };
                if !deliveries.is_empty() {
                    metrics::counter!(crate::metrics::QUEUE_RECEIVED_TOTAL, "queue" => queue.to_string())
                        .increment(deliveries.len() as u64);
                    return Ok(deliveries);
                }
                next_due_ms = due;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake_at = next_due_ms.map_or(deadline, |due| {
                // At least 1 ms: a message due now is moved by the next receive.
                let in_ms = due.saturating_sub(now_ms()).max(1);
                deadline.min(now + Duration::from_millis(in_ms))
            });
            tokio::select! {
                () = notified.as_mut() => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
            peek = self.peek(queue)?;
        }
    }

    async fn delete_batch(
        &self,
        queue: &QueueRef,
        handles: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let queue = queue.name();
        if handles.len() > MAX_BATCH {
            return Err(QueueError::TooManyEntries(handles.len()));
        }
        let Reply::Deleted(outcomes) = self
            .write(Op::Delete {
                queue: queue.clone(),
                handles: handles.to_vec(),
            })
            .await?
        else {
            return Err(unexpected_reply());
        };
        let deleted = outcomes.iter().filter(|o| o.is_ok()).count();
        if deleted > 0 {
            metrics::counter!(crate::metrics::QUEUE_DELETED_TOTAL, "queue" => queue.to_string())
                .increment(deleted as u64);
        }
        Ok(outcomes)
    }

    async fn change_visibility(
        &self,
        queue: &QueueRef,
        handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let queue = queue.name();
        let visibility_ms = millis(visibility);
        match self
            .write(Op::ChangeVisibility {
                queue: queue.clone(),
                handle: handle.to_owned(),
                visibility_ms,
            })
            .await?
        {
            Reply::Done => {
                // Waiting receivers time their sleep by the earliest hidden
                // message; this one may now be due sooner (or at once).
                self.wake(queue);
                Ok(())
            }
            _ => Err(unexpected_reply()),
        }
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.check_open()?;
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }

    /// Stops taking calls, wakes long-polling receivers (they answer
    /// `Unavailable`) and lets the writer commit what is queued.
    async fn close(&self) {
        self.closed.close();
        {
            let wakers = self
                .wakers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for waker in wakers.values() {
                waker.notify_waiters();
            }
        }
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::store::{BODIES, MESSAGES, TRACES, handle, parse_handle};
    use super::*;
    use redb::ReadableTableMetadata;

    #[tokio::test]
    async fn the_number_of_queues_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = RedbJobQueue::open(&dir.path().join("q.redb")).expect("open");
        let name = |i: u64| QueueRef::from(QueueName::new(format!("q{i}")).expect("name"));
        for i in 0..MAX_QUEUES {
            queue.ensure(&name(i)).await.expect("within the bound");
        }
        queue
            .ensure(&name(0))
            .await
            .expect("an existing queue is fine");
        let err = queue
            .ensure(&name(MAX_QUEUES))
            .await
            .expect_err("one too many");
        assert!(
            matches!(err, QueueError::TooManyQueues(MAX_QUEUES)),
            "{err}"
        );
        assert!(err.to_string().contains("sqs://"), "{err}");
        queue.close().await;
    }

    fn open() -> (tempfile::TempDir, RedbJobQueue, QueueRef) {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = RedbJobQueue::open(&dir.path().join("q.redb")).expect("open");
        let name = QueueRef::from(QueueName::new("jobs").expect("name"));
        (dir, queue, name)
    }

    fn outgoing(body: &str, reason: Option<&str>) -> Outgoing {
        Outgoing {
            traceparent: None,
            body: body.as_bytes().to_vec(),
            reason: reason.map(str::to_owned),
        }
    }

    /// The rows `jobs` has in each index: (ready, hidden, messages, bodies),
    /// and the count its `QUEUES` row keeps.
    fn rows(queue: &RedbJobQueue) -> (usize, usize, usize, usize, u64) {
        let txn = queue.db.begin_read().expect("read");
        let count = |len: u64| usize::try_from(len).expect("small");
        let ready = txn.open_table(READY).expect("ready").len().expect("len");
        let hidden = txn.open_table(HIDDEN).expect("hidden").len().expect("len");
        let messages = txn
            .open_table(MESSAGES)
            .expect("messages")
            .len()
            .expect("len");
        let bodies = txn.open_table(BODIES).expect("bodies").len().expect("len");
        let kept = txn
            .open_table(QUEUES)
            .expect("queues")
            .get("jobs")
            .expect("get")
            .expect("the queue")
            .value()
            .1;
        (
            count(ready),
            count(hidden),
            count(messages),
            count(bodies),
            kept,
        )
    }

    #[tokio::test]
    async fn a_trace_context_is_stored_only_when_sent_and_deleted_with_its_message() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        let traced = Outgoing {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..outgoing("traced", None)
        };
        queue
            .send_batch(&name, &[traced, outgoing("plain", None)])
            .await
            .expect("send");
        let trace_rows = || {
            let txn = queue.db.begin_read().expect("read");
            txn.open_table(TRACES).expect("traces").len().expect("len")
        };
        assert_eq!(trace_rows(), 1, "only the traced message has a row");
        let got = queue
            .receive(&name, 10, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        let handles: Vec<String> = got.iter().map(|d| d.handle.clone()).collect();
        queue.delete_batch(&name, &handles).await.expect("delete");
        assert_eq!(trace_rows(), 0, "deleted with its message");
        queue.close().await;
    }

    #[tokio::test]
    async fn a_received_message_moves_from_ready_to_hidden_until_it_is_due() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        queue
            .send_batch(&name, &[outgoing("a", None)])
            .await
            .expect("send");
        assert_eq!(rows(&queue), (1, 0, 1, 1, 1));
        let jobs = name.name().clone();
        assert!(queue.peek(&jobs).expect("peek").ready);

        let got = queue
            .receive(&name, 10, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!(rows(&queue), (0, 1, 1, 1, 1));
        let peek = queue.peek(&jobs).expect("peek");
        assert!(!peek.ready);
        let due = peek.next_due_ms.expect("in flight");
        assert!(due > now_ms() + 50_000, "due in about a minute, not {due}");
        let again = queue
            .receive(&name, 10, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        assert!(again.is_empty(), "hidden while in flight");

        // Visibility 0: back in the ready index, received again, counted.
        queue
            .change_visibility(&name, &got[0].handle, Duration::ZERO)
            .await
            .expect("visible again");
        assert!(queue.peek(&jobs).expect("peek").ready);
        let again = queue
            .receive(&name, 10, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message_id, got[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(
            again[0].handle, got[0].handle,
            "each delivery its own handle"
        );
        queue.close().await;
    }

    #[tokio::test]
    async fn a_long_poll_wakes_on_a_send_and_on_a_message_coming_due() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        let queue = Arc::new(queue);

        // Woken by a send: long before the 30 s wait is over.
        let (waiting, waiter_name) = (queue.clone(), name.clone());
        let started = Instant::now();
        let waiter = tokio::spawn(async move {
            waiting
                .receive(
                    &waiter_name,
                    1,
                    Duration::from_secs(30),
                    Duration::from_mins(1),
                )
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue
            .send_batch(&name, &[outgoing("a", None)])
            .await
            .expect("send");
        let got = waiter.await.expect("task").expect("receive");
        assert_eq!(got.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(10));

        // Woken by the in-flight message coming due (no send at all).
        queue
            .change_visibility(&name, &got[0].handle, Duration::from_millis(200))
            .await
            .expect("hide");
        let started = Instant::now();
        let again = queue
            .receive(&name, 1, Duration::from_secs(30), Duration::from_mins(1))
            .await
            .expect("receive");
        assert_eq!(again.len(), 1);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(10),
            "{elapsed:?}"
        );
        queue.close().await;
    }

    #[tokio::test]
    async fn a_dead_letter_keeps_its_reason_and_its_first_send_time() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        let before = i64::try_from(now_ms()).expect("ms");
        queue
            .send_batch(
                &name,
                &[
                    outgoing("job", Some("post_queue 'nowhere' does not exist")),
                    outgoing("plain", None),
                ],
            )
            .await
            .expect("send");
        let got = queue
            .receive(&name, 10, Duration::ZERO, Duration::ZERO)
            .await
            .expect("receive");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].reason.as_deref(),
            Some("post_queue 'nowhere' does not exist")
        );
        assert_eq!(got[1].reason, None);
        // Visibility 0: received again at once, reason and send time kept.
        let again = queue
            .receive(&name, 10, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        assert_eq!(again.len(), 2);
        for delivery in &again {
            let first = got
                .iter()
                .find(|d| d.message_id == delivery.message_id)
                .expect("the same message");
            assert_eq!(delivery.reason, first.reason);
            assert_eq!(delivery.sent_at_ms, first.sent_at_ms);
            assert_eq!(delivery.receive_count, 2);
            assert!(first.sent_at_ms >= before);
        }
        queue.close().await;
    }

    #[tokio::test]
    async fn delete_by_handle_removes_every_row_and_refuses_a_stale_handle() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        queue
            .send_batch(&name, &[outgoing("a", None), outgoing("b", None)])
            .await
            .expect("send");
        let first = queue
            .receive(&name, 1, Duration::ZERO, Duration::ZERO)
            .await
            .expect("receive");
        // Redelivered at once: the first handle is stale now.
        let second = queue
            .receive(&name, 1, Duration::ZERO, Duration::from_mins(1))
            .await
            .expect("receive");
        assert_eq!(first[0].message_id, second[0].message_id);
        let outcomes = queue
            .delete_batch(
                &name,
                &[
                    first[0].handle.clone(),
                    "junk".into(),
                    second[0].handle.clone(),
                ],
            )
            .await
            .expect("delete");
        assert!(matches!(
            outcomes.as_slice(),
            [
                Err(QueueError::InvalidHandle),
                Err(QueueError::InvalidHandle),
                Ok(())
            ]
        ));
        assert_eq!(rows(&queue), (1, 0, 1, 1, 1));
        let outcomes = queue
            .delete_batch(&name, &[second[0].handle.clone()])
            .await
            .expect("delete");
        assert!(matches!(
            outcomes.as_slice(),
            [Err(QueueError::InvalidHandle)]
        ));
        queue.close().await;
    }

    #[tokio::test]
    async fn calls_after_close_fail_as_closed() {
        let (_dir, queue, name) = open();
        queue.ensure(&name).await.expect("ensure");
        queue.close().await;
        let err = queue.ping().await.expect_err("closed");
        assert!(
            matches!(&err, QueueError::Unavailable(e) if e.kind() == FailureKind::Closed),
            "{err}"
        );
        assert!(
            queue
                .send_batch(&name, &[outgoing("a", None)])
                .await
                .is_err()
        );
    }

    #[test]
    fn handles_round_trip_and_junk_is_refused() {
        assert_eq!(
            parse_handle(&handle(42, 0xdead_beef)),
            Some((42, 0xdead_beef))
        );
        assert_eq!(
            parse_handle(&handle(u64::MAX, u64::MAX)),
            Some((u64::MAX, u64::MAX))
        );
        for junk in ["", ".", "1", "x.1", "1.x", "1.2.3", "-1.2"] {
            assert_eq!(parse_handle(junk), None, "{junk}");
        }
    }
}
