//! Group commit: one writer takes whatever operations are queued and
//! applies them in one transaction, so one fsync serves many requests, and
//! each caller is answered only once the transaction holding its operation
//! is durable. The writer is a thread of its own for an embedded engine
//! (`spawn`: a blocking commit) or a task for a database (`spawn_async`: one
//! multi-row statement per batch).
//!
//! The writer is engine-agnostic: the store gives a `commit` function that
//! applies a batch in order (later operations see earlier ones) and returns
//! one outcome per operation, or one error for the whole batch, which every
//! caller in it receives. An operation's own failure (a record it finds
//! corrupt) belongs in its outcome, not in the batch error, so it does not
//! fail its neighbours.
//!
//! Bounded: at most `queue_depth` operations wait (callers beyond that wait
//! to enqueue: backpressure) and one transaction holds at most `max_batch`.
//! Batch sizes go to `quintet_store_commit_batch_size{store}`, the time each
//! transaction took to become durable (its fsync, mostly) to
//! `quintet_store_commit_seconds{store}`.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use crate::backend::{BackendError, FailureKind, chain};

/// Why an operation was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// The writer was closed (the store is shutting down).
    #[error("store is closed")]
    Closed,
    /// The transaction holding the operation failed; nothing in it was
    /// applied. Every operation of the batch shares the one cause.
    #[error(transparent)]
    Failed(Arc<BackendError>),
}

impl CommitError {
    /// What kind of failure it is.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Closed => FailureKind::Closed,
            Self::Failed(error) => error.kind(),
        }
    }
}

/// The backend failure a port error wraps: a closed writer is a closed
/// backend; a failed batch keeps its engine, operation and kind, with the
/// shared cause as source.
impl From<CommitError> for BackendError {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Closed => {
                BackendError::bare("group commit", "submit", FailureKind::Closed)
            }
            CommitError::Failed(cause) => BackendError::new(
                cause.engine(),
                cause.operation().to_owned(),
                cause.kind(),
                cause,
            ),
        }
    }
}

struct Job<Op, Out> {
    op: Op,
    reply: oneshot::Sender<Result<Out, CommitError>>,
}

/// Where the writer runs: a thread of its own (an embedded engine's
/// blocking commit) or a task (a database's async round trip).
enum Runner {
    Thread(JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

type Writer<Op, Out> = (mpsc::Sender<Job<Op, Out>>, Runner);

/// A writer committing queued operations in batches.
pub struct GroupCommit<Op, Out> {
    writer: Mutex<Option<Writer<Op, Out>>>,
}

/// Answers every caller of a batch: each its own outcome, or all the one
/// error; records the batch's size and how long its commit took.
fn deliver<Out>(
    store: &'static str,
    replies: Vec<oneshot::Sender<Result<Out, CommitError>>>,
    started: std::time::Instant,
    committed: Result<Vec<Out>, BackendError>,
) {
    metrics::histogram!(crate::metrics::STORE_COMMIT_BATCH_SIZE, "store" => store)
        .record(crate::metrics::count(replies.len()));
    metrics::histogram!(crate::metrics::STORE_COMMIT_SECONDS, "store" => store)
        .record(started.elapsed().as_secs_f64());
    let operations = replies.len();
    let error = match committed {
        Ok(outcomes) if outcomes.len() == operations => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            return;
        }
        Ok(outcomes) => BackendError::new(
            store,
            "commit",
            FailureKind::Other,
            format!(
                "commit returned {} outcomes for {operations} operations",
                outcomes.len()
            ),
        ),
        Err(error) => error,
    };
    let error = Arc::new(error);
    tracing::error!(error = %chain(&*error), store, operations, "store commit failed");
    for reply in replies {
        let _ = reply.send(Err(CommitError::Failed(error.clone())));
    }
}

impl<Op: Send + 'static, Out: Send + 'static> GroupCommit<Op, Out> {
    /// Starts the writer thread, named `<store>-writer`.
    pub fn spawn<F>(
        store: &'static str,
        queue_depth: usize,
        max_batch: usize,
        mut commit: F,
    ) -> std::io::Result<Self>
    where
        F: FnMut(&[Op]) -> Result<Vec<Out>, BackendError> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Op, Out>>(queue_depth.max(1));
        let max_batch = max_batch.max(1);
        let handle = std::thread::Builder::new()
            .name(format!("{store}-writer"))
            .spawn(move || {
                let mut jobs = Vec::with_capacity(max_batch);
                let mut ops = Vec::with_capacity(max_batch);
                while rx.blocking_recv_many(&mut jobs, max_batch) > 0 {
                    let (batch_ops, replies): (Vec<Op>, Vec<_>) =
                        jobs.drain(..).map(|job| (job.op, job.reply)).unzip();
                    ops.extend(batch_ops);
                    let started = std::time::Instant::now();
                    let committed = commit(&ops);
                    deliver(store, replies, started, committed);
                    ops.clear();
                }
            })?;
        Ok(Self {
            writer: Mutex::new(Some((tx, Runner::Thread(handle)))),
        })
    }

    /// Starts the writer as a task on the current tokio runtime, for a store
    /// whose commit is an async round trip (one multi-row statement per
    /// batch): `commit` takes the batch's operations and answers one
    /// outcome per operation, in order, or one error for them all.
    pub fn spawn_async<F, Fut>(
        store: &'static str,
        queue_depth: usize,
        max_batch: usize,
        mut commit: F,
    ) -> Self
    where
        F: FnMut(Vec<Op>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Out>, BackendError>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<Op, Out>>(queue_depth.max(1));
        let max_batch = max_batch.max(1);
        let handle = tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut jobs, max_batch).await > 0 {
                let (ops, replies): (Vec<Op>, Vec<_>) =
                    jobs.drain(..).map(|job| (job.op, job.reply)).unzip();
                let started = std::time::Instant::now();
                let committed = commit(ops).await;
                deliver(store, replies, started, committed);
            }
        });
        Self {
            writer: Mutex::new(Some((tx, Runner::Task(handle)))),
        }
    }

    /// Queues `op` and waits until the transaction holding it has committed.
    pub async fn submit(&self, op: Op) -> Result<Out, CommitError> {
        let sender = {
            let guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            guard
                .as_ref()
                .map(|(tx, _)| tx.clone())
                .ok_or(CommitError::Closed)?
        };
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { op, reply })
            .await
            .map_err(|_| CommitError::Closed)?;
        answer.await.map_err(|_| CommitError::Closed)?
    }

    /// Stops taking operations, lets the writer commit what is queued, and
    /// waits for its thread to end.
    pub async fn close(&self) {
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((sender, runner)) = writer {
            drop(sender);
            match runner {
                Runner::Thread(handle) => {
                    let _ = tokio::task::spawn_blocking(move || handle.join()).await;
                }
                Runner::Task(handle) => {
                    let _ = handle.await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_operations_share_transactions_and_each_gets_its_outcome() {
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        let writer = Arc::new(
            GroupCommit::spawn("test", 64, 16, move |ops: &[u32]| {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
                Ok(ops.iter().map(|n| n * 2).collect())
            })
            .expect("spawn"),
        );
        let tasks: Vec<_> = (0..200u32)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { (n, writer.submit(n).await) })
            })
            .collect();
        for task in tasks {
            let (n, outcome) = task.await.expect("task");
            assert_eq!(outcome.expect("committed"), n * 2);
        }
        let commits = commits.load(Ordering::SeqCst);
        assert!(commits < 200, "200 operations took {commits} commits");
        writer.close().await;
        assert!(matches!(writer.submit(1).await, Err(CommitError::Closed)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_writer_batches_what_waits_and_answers_each_in_order() {
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        let writer = Arc::new(GroupCommit::spawn_async(
            "test",
            64,
            16,
            move |ops: Vec<u32>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    if ops.contains(&13) {
                        return Err(BackendError::bare("test", "commit", FailureKind::Other));
                    }
                    Ok(ops.iter().map(|n| n + 1).collect())
                }
            },
        ));
        let tasks: Vec<_> = (0..100u32)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { (n, writer.submit(n).await) })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            match task.await.expect("task") {
                (n, Ok(out)) => assert_eq!(out, n + 1),
                (_, Err(error)) => {
                    assert_eq!(error.kind(), FailureKind::Other);
                    failed += 1;
                }
            }
        }
        assert!(failed >= 1, "the batch holding 13 failed as a whole");
        let commits = commits.load(Ordering::SeqCst);
        assert!(commits < 100, "100 operations took {commits} commits");
        writer.close().await;
        assert!(matches!(writer.submit(1).await, Err(CommitError::Closed)));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_operation_in_it_and_the_writer_goes_on() {
        let mut fail_next = true;
        let writer = GroupCommit::spawn("test", 8, 8, move |ops: &[u32]| {
            if std::mem::take(&mut fail_next) {
                let full = std::io::Error::other("disk full");
                return Err(BackendError::new(
                    "redb",
                    "commit",
                    FailureKind::Other,
                    full,
                ));
            }
            Ok(ops.to_vec())
        })
        .expect("spawn");
        let error = writer.submit(1).await.expect_err("the batch failed");
        assert_eq!(error.kind(), FailureKind::Other);
        let backend = BackendError::from(error);
        assert_eq!(backend.to_string(), "redb commit: error");
        assert_eq!(chain(&backend), "redb commit: error: disk full");
        assert_eq!(writer.submit(2).await.expect("committed"), 2);
        writer.close().await;
    }
}
