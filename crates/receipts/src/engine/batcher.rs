//! Batching for queue calls: callers hand in one entry each and wait for its
//! own outcome; one task per destination gathers entries into calls of at
//! most [`MAX_BATCH`], sending as soon as the batch is full or `linger` has
//! passed since its first entry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::backend::{BackendError, FailureKind};
use tokio::sync::{mpsc, oneshot};

use crate::domain::QueueRef;
use crate::ports::{MAX_BATCH, QueueError};

type Reply<R> = oneshot::Sender<Result<R, QueueError>>;
type Lane<T, R> = mpsc::Sender<(T, Reply<R>)>;
/// Sends one batch to one queue; one outcome per entry, in order.
pub type BatchFn<T, R> = Arc<
    dyn Fn(
            QueueRef,
            Vec<T>,
        )
            -> Pin<Box<dyn Future<Output = Result<Vec<Result<R, QueueError>>, QueueError>> + Send>>
        + Send
        + Sync,
>;

/// What went wrong in the batching itself (not in the queue it calls).
#[derive(Debug, thiserror::Error)]
enum BatchFailure {
    #[error("the batch call answered no outcome")]
    NoOutcome,
    #[error("the batcher stopped")]
    Stopped,
    #[error("the batch call answered {answered} outcomes for {entries} entries")]
    Outcomes { answered: usize, entries: usize },
}

/// A batching failure of the `call` batcher as the callers' error.
fn failed(call: &'static str, failure: BatchFailure) -> QueueError {
    let kind = match failure {
        BatchFailure::Stopped => FailureKind::Closed,
        BatchFailure::NoOutcome | BatchFailure::Outcomes { .. } => FailureKind::Other,
    };
    BackendError::new("batcher", call, kind, failure).into()
}

/// Entries waiting per destination before callers wait to enqueue.
const QUEUE_DEPTH: usize = 1024;
/// Destinations with a batching task at most; beyond, calls go unbatched.
const MAX_DESTINATIONS: usize = 1024;

/// Batches entries per destination (see the module doc).
pub struct Batcher<T, R> {
    name: &'static str,
    linger: Duration,
    call: BatchFn<T, R>,
    lanes: Mutex<HashMap<QueueRef, Lane<T, R>>>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// A batcher named `name` (for metrics and errors) that waits up to `linger` for a batch to fill and sends it with `call`.
    pub fn new(name: &'static str, linger: Duration, call: BatchFn<T, R>) -> Self {
        Self {
            name,
            linger,
            call,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Submits `entry` for `queue` and waits for its outcome.
    pub async fn submit(&self, queue: &QueueRef, entry: T) -> Result<R, QueueError> {
        let lane = {
            let mut lanes = self
                .lanes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lanes.retain(|_, tx| !tx.is_closed());
            match lanes.get(queue) {
                Some(tx) => Some(tx.clone()),
                None if lanes.len() < MAX_DESTINATIONS => {
                    let tx = self.spawn_lane(queue.clone());
                    lanes.insert(queue.clone(), tx.clone());
                    Some(tx)
                }
                None => None,
            }
        };
        let Some(lane) = lane else {
            let mut outcomes = (self.call)(queue.clone(), vec![entry]).await?;
            return outcomes
                .pop()
                .unwrap_or_else(|| Err(failed(self.name, BatchFailure::NoOutcome)));
        };
        let (reply, answer) = oneshot::channel();
        lane.send((entry, reply))
            .await
            .map_err(|_| failed(self.name, BatchFailure::Stopped))?;
        answer
            .await
            .map_err(|_| failed(self.name, BatchFailure::Stopped))?
    }

    fn spawn_lane(&self, queue: QueueRef) -> Lane<T, R> {
        let (tx, mut rx) = mpsc::channel::<(T, Reply<R>)>(QUEUE_DEPTH);
        let (call, linger, name) = (self.call.clone(), self.linger, self.name);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                let deadline = tokio::time::sleep(linger);
                tokio::pin!(deadline);
                while batch.len() < MAX_BATCH {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(entry) => batch.push(entry),
                            None => break,
                        },
                        () = &mut deadline => break,
                    }
                }
                let (entries, replies): (Vec<T>, Vec<Reply<R>>) = batch.drain(..).unzip();
                metrics::histogram!(crate::metrics::BATCH_SIZE, "call" => name).record(
                    crate::metrics::count(u64::try_from(entries.len()).unwrap_or(u64::MAX)),
                );
                match call(queue.clone(), entries).await {
                    Ok(outcomes) if outcomes.len() == replies.len() => {
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(outcome);
                        }
                    }
                    Ok(outcomes) => {
                        let error = failed(
                            name,
                            BatchFailure::Outcomes {
                                answered: outcomes.len(),
                                entries: replies.len(),
                            },
                        );
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                    Err(error) => {
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        tx
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_entries_share_calls_of_at_most_ten_and_get_their_own_outcome() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let call: BatchFn<u32, u32> = Arc::new(move |_queue, entries: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                assert!(entries.len() <= MAX_BATCH);
                Ok(entries
                    .into_iter()
                    .map(|n| {
                        if n == 13 {
                            Err(QueueError::InvalidHandle)
                        } else {
                            Ok(n + 1)
                        }
                    })
                    .collect())
            })
        });
        let batcher = Arc::new(Batcher::new("test", Duration::from_millis(20), call));
        let queue = QueueRef::parse("q").expect("name");
        let tasks: Vec<_> = (0..50u32)
            .map(|n| {
                let (batcher, queue) = (batcher.clone(), queue.clone());
                tokio::spawn(async move { (n, batcher.submit(&queue, n).await) })
            })
            .collect();
        for task in tasks {
            let (n, outcome) = task.await.expect("task");
            if n == 13 {
                assert!(
                    matches!(outcome, Err(QueueError::InvalidHandle)),
                    "{outcome:?}"
                );
            } else {
                assert_eq!(outcome.expect("sent"), n + 1);
            }
        }
        let calls = calls.load(Ordering::SeqCst);
        assert!((5..50).contains(&calls), "50 entries took {calls} calls");
    }
}
