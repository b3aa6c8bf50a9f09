//! The pipeline: receivers take jobs off the input queue (up to 10 per call,
//! long polling, never more than `concurrency` jobs in flight); each job is
//! validated, its transactions claimed in the ledger, one result per
//! transaction posted to the job's `post_queue` (batched per destination),
//! and only then is the job deleted (batched too).
//!
//! A job's fields besides `receipt`, `user_id` and `post_queue` are ignored
//! (logged at debug, counted), as the original worker ignored them.
//!
//! Failure handling, in order of the stages:
//! - a body that is not a job, a `post_queue` that does not exist, an Apple
//!   configuration error (21004), a receipt Apple refuses without naming a
//!   transaction (21002, malformed: there is no transaction id to post), or
//!   a job received more than `max_receives` times → the dead-letter queue
//!   with the reason, then deleted: nothing is dropped silently;
//! - Apple, the ledger or a queue unavailable → the job stays on the queue
//!   and is retried after a backoff (its visibility is set to it);
//! - a crash anywhere → the job is redelivered after its visibility timeout;
//!   the ledger remembers which job claimed each transaction, so the same
//!   job gets OK again and posts an identical result (results are
//!   at-least-once; duplicates are identical), while another job with the
//!   same transaction gets INVALID.
//!
//! Slow jobs keep their visibility extended while they run. On shutdown the
//! receivers stop, in-flight jobs get `drain` to finish, and the rest are
//! returned to the queue (visibility 0) for another worker.

pub mod batcher;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::domain::{Job, QueueRef, ResultMessage, Validation, queue_name};
use crate::ports::{
    Claim, Delivery, JobQueue, MAX_BATCH, Outgoing, ReceiptValidator, TransactionLedger,
    ValidatorError,
};
use batcher::{BatchFn, Batcher};
use platform::backend::chain;

/// Why a job went to the dead-letter queue, as the metric's `reason` label
/// says it (the message's `reason` attribute says it in full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadLetter {
    NotAJob,
    MaxReceives,
    NoPostQueue,
    AppleConfig,
    NoTransaction,
}

impl DeadLetter {
    fn label(self) -> &'static str {
        match self {
            Self::NotAJob => "not_a_job",
            Self::MaxReceives => "max_receives",
            Self::NoPostQueue => "no_post_queue",
            Self::AppleConfig => "apple_config",
            Self::NoTransaction => "no_transaction",
        }
    }
}

/// How the pipeline runs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The queue jobs arrive on.
    pub input: QueueRef,
    /// Where jobs that cannot be processed go.
    pub dead_letter: QueueRef,
    /// Concurrent receive loops.
    pub receivers: usize,
    /// Jobs in flight at most.
    pub concurrency: usize,
    /// How long a received job stays hidden (extended while it runs).
    pub visibility: Duration,
    /// Long-polling wait of one receive.
    pub wait: Duration,
    /// Receives after which a job goes to the dead-letter queue.
    pub max_receives: u32,
    /// How long a result or delete waits for others to share its call.
    pub linger: Duration,
    /// How long in-flight jobs get to finish on shutdown.
    pub drain: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            input: queue_name!("receipts").into(),
            dead_letter: queue_name!("receipts-dlq").into(),
            receivers: 2,
            concurrency: 256,
            visibility: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            max_receives: 5,
            linger: Duration::from_millis(5),
            drain: Duration::from_secs(20),
        }
    }
}

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    DeadLettered,
    Retry,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Retry => "retry",
        }
    }
}

/// The running pipeline (see the module doc).
pub struct Pipeline {
    queue: Arc<dyn JobQueue>,
    ledger: Arc<dyn TransactionLedger>,
    validator: Arc<dyn ReceiptValidator>,
    config: PipelineConfig,
    sends: Batcher<Outgoing, String>,
    deletes: Batcher<String, ()>,
}

impl Pipeline {
    /// A pipeline on these ports; it runs once [`Pipeline::run`] is called.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        ledger: Arc<dyn TransactionLedger>,
        validator: Arc<dyn ReceiptValidator>,
        config: PipelineConfig,
    ) -> Self {
        let send_queue = queue.clone();
        let send: BatchFn<Outgoing, String> = Arc::new(move |name, messages| {
            let queue = send_queue.clone();
            Box::pin(async move { queue.send_batch(&name, &messages).await })
        });
        let delete_queue = queue.clone();
        let delete: BatchFn<String, ()> = Arc::new(move |name, handles| {
            let queue = delete_queue.clone();
            Box::pin(async move { queue.delete_batch(&name, &handles).await })
        });
        Self {
            sends: Batcher::new("send", config.linger, send),
            deletes: Batcher::new("delete", config.linger, delete),
            queue,
            ledger,
            validator,
            config,
        }
    }

    /// Runs until `stop`, then drains (see the module doc).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        for queue in [&self.config.input, &self.config.dead_letter] {
            while let Err(e) = self.queue.ensure(queue).await {
                tracing::error!(error = %chain(&e), %queue, "receipts: queue not ready; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let jobs = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let receivers: Vec<_> = (0..self.config.receivers.max(1))
            .map(|_| {
                let (this, permits, jobs, stop, hard_stop) = (
                    self.clone(),
                    permits.clone(),
                    jobs.clone(),
                    stop.clone(),
                    hard_stop.clone(),
                );
                tokio::spawn(async move { this.receive_loop(permits, jobs, stop, hard_stop).await })
            })
            .collect();
        join_all(receivers).await;
        jobs.close();
        if tokio::time::timeout(self.config.drain, jobs.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                jobs = jobs.len(),
                "receipts: drain time over; returning unfinished jobs to the queue"
            );
            hard_stop.cancel();
            jobs.wait().await;
        }
    }

    async fn receive_loop(
        self: Arc<Self>,
        permits: Arc<Semaphore>,
        jobs: TaskTracker,
        stop: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let mut failures = 0u32;
        loop {
            // One permit per job: wait for the first, take up to nine more if free.
            let first = tokio::select! {
                () = stop.cancelled() => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let mut held = vec![first];
            while held.len() < MAX_BATCH {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => held.push(permit),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = self.queue.receive(&self.config.input, held.len(), self.config.wait, self.config.visibility) => received,
            };
            metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => "receive")
                .record(started.elapsed().as_secs_f64());
            let deliveries = match received {
                Ok(deliveries) => {
                    failures = 0;
                    deliveries
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                    );
                    tracing::warn!(error = %chain(&e), retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "receipts: receive failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            metrics::counter!(crate::metrics::RECEIVED_TOTAL).increment(deliveries.len() as u64);
            for delivery in deliveries {
                let Some(permit) = held.pop() else { break };
                let (this, hard_stop) = (self.clone(), hard_stop.clone());
                jobs.spawn(async move {
                    metrics::gauge!(crate::metrics::IN_FLIGHT).increment(1.0);
                    this.run_job(delivery, hard_stop).await;
                    metrics::gauge!(crate::metrics::IN_FLIGHT).decrement(1.0);
                    drop(permit);
                });
            }
        }
    }

    /// One job, with its visibility kept extended while it runs, or given
    /// back to the queue if shutdown cuts it short.
    async fn run_job(&self, delivery: Delivery, hard_stop: CancellationToken) {
        let handle = delivery.handle.clone();
        let sent_at_ms = delivery.sent_at_ms;
        let started = Instant::now();
        let span = job_span(&delivery);
        let work = self.process(delivery).instrument(span);
        tokio::pin!(work);
        let mut keepalive = tokio::time::interval(self.config.visibility / 2);
        keepalive.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut work => break Some(outcome),
                () = hard_stop.cancelled() => break None,
                _ = keepalive.tick() => {
                    if let Err(e) = self.queue.change_visibility(&self.config.input, &handle, self.config.visibility).await {
                        tracing::warn!(error = %chain(&e), "receipts: could not extend a job's visibility");
                    }
                }
            }
        };
        let Some(outcome) = outcome else {
            let _ = self
                .queue
                .change_visibility(&self.config.input, &handle, Duration::ZERO)
                .await;
            metrics::counter!(crate::metrics::JOBS_TOTAL, "outcome" => "returned").increment(1);
            return;
        };
        metrics::counter!(crate::metrics::JOBS_TOTAL, "outcome" => outcome.label()).increment(1);
        if outcome != Outcome::Retry {
            metrics::histogram!(crate::metrics::PROCESSING_SECONDS)
                .record(started.elapsed().as_secs_f64());
            let age_ms = now_ms().saturating_sub(sent_at_ms).max(0);
            metrics::histogram!(crate::metrics::JOB_SECONDS)
                .record(Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)).as_secs_f64());
        }
    }

    // The job's stages in the order they run, each a few lines: read in one place.
    #[allow(clippy::too_many_lines)]
    async fn process(&self, delivery: Delivery) -> Outcome {
        let job = match Job::parse(&delivery.body) {
            Ok(job) => job,
            Err(e) => {
                return self
                    .dead_letter(&delivery, DeadLetter::NotAJob, e.to_string())
                    .await;
            }
        };
        if !job.ignored.is_empty() {
            tracing::debug!(
                message_id = %delivery.message_id,
                count = job.ignored.count(),
                fields = ?job.ignored.names(),
                "receipts: job fields ignored"
            );
            metrics::counter!(crate::metrics::JOB_UNKNOWN_FIELDS_TOTAL)
                .increment(job.ignored.count() as u64);
        }
        if delivery.receive_count > self.config.max_receives {
            let reason = format!(
                "received {} times without completing (--receipts-max-receives {})",
                delivery.receive_count, self.config.max_receives
            );
            return self
                .dead_letter(&delivery, DeadLetter::MaxReceives, reason)
                .await;
        }
        match self.queue.exists(&job.post_queue).await {
            Ok(true) => {}
            Ok(false) => {
                let reason = format!("post_queue '{}' does not exist", job.post_queue);
                return self
                    .dead_letter(&delivery, DeadLetter::NoPostQueue, reason)
                    .await;
            }
            Err(e) => {
                return self.retry(&delivery, "post queue check", &e).await;
            }
        }

        let started = Instant::now();
        let validation = self.validator.validate(&job.receipt).await;
        metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => "apple")
            .record(started.elapsed().as_secs_f64());
        let results = match validation {
            // The original never posts a result without a transaction id,
            // and its consumers expect one: such a job is kept, not answered.
            Ok(Validation::Invalid {
                reason,
                transactions,
            }) if transactions.is_empty() => {
                let reason = format!("the receipt names no transaction to report: {reason}");
                return self
                    .dead_letter(&delivery, DeadLetter::NoTransaction, reason)
                    .await;
            }
            // Named but refused (21006: valid, expired): INVALID for each,
            // claiming none, as the original did.
            Ok(Validation::Invalid {
                reason,
                transactions,
            }) => transactions
                .into_iter()
                .map(|t| ResultMessage::invalid(job.user_id.clone(), t.transaction_id, &reason))
                .collect(),
            Ok(Validation::Valid { transactions, .. }) => {
                let started = Instant::now();
                let mut results = Vec::with_capacity(transactions.len());
                for transaction in transactions {
                    let id = transaction.transaction_id;
                    match self
                        .ledger
                        .claim(&id, &delivery.message_id, &job.user_id)
                        .await
                    {
                        Ok(Claim::New | Claim::SameJob) => {
                            results.push(ResultMessage::ok(job.user_id.clone(), id));
                        }
                        Ok(Claim::OtherJob { .. }) => results.push(ResultMessage::invalid(
                            job.user_id.clone(),
                            id,
                            "transaction already validated",
                        )),
                        Err(e) => return self.retry(&delivery, "ledger", &e).await,
                    }
                }
                metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => "ledger")
                    .record(started.elapsed().as_secs_f64());
                results
            }
            Err(ValidatorError::Config(error)) => {
                let reason = chain(&error);
                tracing::error!(%reason, "receipts: Apple validation is misconfigured; jobs go to the dead-letter queue until it is fixed");
                metrics::counter!(crate::metrics::CONFIG_ERRORS_TOTAL).increment(1);
                return self
                    .dead_letter(&delivery, DeadLetter::AppleConfig, reason)
                    .await;
            }
            Err(ValidatorError::Unavailable(error)) => {
                return self.retry(&delivery, "apple", &error).await;
            }
        };

        let started = Instant::now();
        // The results carry the job's trace context (`None` when off).
        let traceparent = platform::trace::traceparent();
        let posts = results.iter().map(|result| {
            let body = serde_json::to_vec(result).unwrap_or_default();
            self.sends.submit(
                &job.post_queue,
                Outgoing {
                    traceparent: traceparent.clone(),
                    body,
                    reason: None,
                },
            )
        });
        for posted in join_all(posts).await {
            if let Err(e) = posted {
                return self.retry(&delivery, "post", &e).await;
            }
        }
        metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => "post")
            .record(started.elapsed().as_secs_f64());
        for result in &results {
            let status = match result.status {
                crate::domain::Status::Ok => "OK",
                crate::domain::Status::Invalid => "INVALID",
            };
            metrics::counter!(crate::metrics::RESULTS_TOTAL, "status" => status).increment(1);
        }
        self.delete(&delivery).await;
        Outcome::Done
    }

    /// Sends the job to the dead-letter queue with `reason`, then deletes it.
    async fn dead_letter(&self, delivery: &Delivery, why: DeadLetter, reason: String) -> Outcome {
        tracing::warn!(message_id = %delivery.message_id, %reason, "receipts: job dead-lettered");
        let sent = self
            .sends
            .submit(
                &self.config.dead_letter,
                Outgoing {
                    traceparent: platform::trace::traceparent(),
                    body: delivery.body.clone(),
                    reason: Some(reason),
                },
            )
            .await;
        if let Err(e) = sent {
            return self.retry(delivery, "dead-letter", &e).await;
        }
        metrics::counter!(crate::metrics::DEAD_LETTERED_TOTAL, "reason" => why.label())
            .increment(1);
        self.delete(delivery).await;
        Outcome::DeadLettered
    }

    /// Leaves the job on the queue, visible again after a backoff that
    /// grows with its receive count.
    async fn retry(
        &self,
        delivery: &Delivery,
        stage: &'static str,
        error: &(dyn std::error::Error + Send + Sync + 'static),
    ) -> Outcome {
        let reason = chain(error);
        let pause = backoff(
            delivery.receive_count,
            Duration::from_secs(1),
            self.config.visibility,
        );
        tracing::warn!(message_id = %delivery.message_id, stage, %reason, retry_in_s = pause.as_secs(), "receipts: job will be retried");
        metrics::counter!(crate::metrics::RETRIES_TOTAL, "stage" => stage).increment(1);
        if let Err(e) = self
            .queue
            .change_visibility(&self.config.input, &delivery.handle, pause)
            .await
        {
            tracing::warn!(error = %chain(&e), "receipts: could not set the retry delay; the visibility timeout applies");
        }
        Outcome::Retry
    }

    async fn delete(&self, delivery: &Delivery) {
        let started = Instant::now();
        if let Err(e) = self
            .deletes
            .submit(&self.config.input, delivery.handle.clone())
            .await
        {
            // The results are posted: a redelivery posts identical ones.
            tracing::warn!(message_id = %delivery.message_id, error = %chain(&e), "receipts: job delete failed; it will be redelivered");
        }
        metrics::histogram!(crate::metrics::STAGE_SECONDS, "stage" => "delete")
            .record(started.elapsed().as_secs_f64());
    }
}

/// Exponential backoff from `base`, doubling per attempt, capped at `max`.
/// The span of one job, a child of the span that sent it (its
/// `traceparent` attribute); none when traces are not exported.
fn job_span(delivery: &Delivery) -> tracing::Span {
    if !platform::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "receipts job",
        otel.kind = "consumer",
        messaging.message.id = %delivery.message_id,
        messaging.receive_count = delivery.receive_count,
    );
    platform::trace::follow(&span, delivery.traceparent.as_deref());
    span
}

fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(max)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(backoff(1, base, max), Duration::from_secs(1));
        assert_eq!(backoff(2, base, max), Duration::from_secs(2));
        assert_eq!(backoff(5, base, max), Duration::from_secs(16));
        assert_eq!(backoff(6, base, max), max);
        assert_eq!(backoff(1000, base, max), max);
    }
}
