//! What the receipts pipeline needs from the outside: queues, a ledger of
//! claimed transactions, and a receipt validator (Apple).

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{QueueName, QueueRef, UserId, Validation};

/// Most messages one receive, send or delete call handles (SQS's limit).
pub const MAX_BATCH: usize = 10;
/// Largest message body (SQS's limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue '{0}' does not exist")]
    NoSuchQueue(QueueName),
    #[error("message of {0} bytes is over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("receipt handle is not valid (expired or already deleted)")]
    InvalidHandle,
    /// More than [`MAX_BATCH`] entries (messages, handles) in one call.
    #[error("{0} entries in one call; the limit is {MAX_BATCH}")]
    TooManyEntries(usize),
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The embedded queue's bound on queues ([`MAX_QUEUES`](crate::adapters::redb_queue::MAX_QUEUES)).
    #[error(
        "the embedded queue already holds {0} queues, its limit: send results to an existing \
         queue, or use SQS (--receipts-queue sqs://…) for more"
    )]
    TooManyQueues(u64),
}

/// One message as received: `message_id` stays the same across
/// redeliveries, `handle` names this delivery (for delete and visibility).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub handle: String,
    pub body: Vec<u8>,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent, in ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// The `reason` attribute it was sent with ([`Outgoing::reason`]).
    pub reason: Option<String>,
}

/// A message to send; `reason` travels as an attribute (dead letters carry why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub reason: Option<String>,
}

/// A message queue with at-least-once delivery and visibility timeouts.
/// Queues are named or given by URL ([`QueueRef`]); each engine says what a
/// URL means to it.
#[async_trait]
pub trait JobQueue: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Creates the queue if this engine creates queues on demand (embedded),
    /// else checks that it exists.
    async fn ensure(&self, queue: &QueueRef) -> Result<(), QueueError>;

    /// Whether the queue exists.
    async fn exists(&self, queue: &QueueRef) -> Result<bool, QueueError>;

    /// Sends up to [`MAX_BATCH`] messages; one outcome per message (its id).
    async fn send_batch(
        &self,
        queue: &QueueRef,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError>;

    /// Receives up to `max` (≤ [`MAX_BATCH`]) messages, waiting up to `wait`
    /// for the first; each is hidden from other receivers for `visibility`.
    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes up to [`MAX_BATCH`] deliveries by handle; one outcome each.
    async fn delete_batch(
        &self,
        queue: &QueueRef,
        handles: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError>;

    /// Hides a delivery for `visibility` from now (0: visible again at once).
    async fn change_visibility(
        &self,
        queue: &QueueRef,
        handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError>;

    async fn ping(&self) -> Result<(), QueueError>;

    async fn close(&self) {}
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

/// The outcome of claiming a transaction for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First claim: this job validated the transaction.
    New,
    /// This same job claimed it before (a redelivery after a crash).
    SameJob,
    /// Another job claimed it first.
    OtherJob { job_id: String },
}

/// Transactions already validated, each with the job that claimed it.
#[async_trait]
pub trait TransactionLedger: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Claims `transaction_id` for `job_id`, atomically; `user_id` is
    /// recorded with a new claim, as given (integer or string).
    async fn claim(
        &self,
        transaction_id: &str,
        job_id: &str,
        user_id: &UserId,
    ) -> Result<Claim, LedgerError>;

    async fn ping(&self) -> Result<(), LedgerError>;

    async fn close(&self) {}
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorError {
    /// The validator is misconfigured (Apple 21004: wrong shared secret):
    /// no receipt can be validated until an operator fixes it.
    #[error("validator misconfigured: {0}")]
    Config(String),
    /// Not reachable or still failing after its retries: try the job later.
    #[error("validator unavailable: {0}")]
    Unavailable(String),
}

/// Decides whether a receipt is genuine and which transactions it holds.
#[async_trait]
pub trait ReceiptValidator: Send + Sync {
    async fn validate(&self, receipt: &str) -> Result<Validation, ValidatorError>;
}

/// Readiness over the queue's and the ledger's `ping`.
pub struct Readiness {
    pub queue: std::sync::Arc<dyn JobQueue>,
    pub ledger: std::sync::Arc<dyn TransactionLedger>,
}

#[async_trait]
impl platform::health::ReadinessCheck for Readiness {
    fn name(&self) -> &str {
        "receipts-queue-and-ledger"
    }

    async fn check(&self) -> Result<(), String> {
        self.queue.ping().await.map_err(|e| e.to_string())?;
        self.ledger.ping().await.map_err(|e| e.to_string())
    }
}

/// The ports [`crate::service`] runs on; the binary decides which engine
/// backs each.
pub struct Backends {
    /// The job, result and dead-letter queues.
    pub queue: std::sync::Arc<dyn JobQueue>,
    /// The ledger of claimed transactions.
    pub ledger: std::sync::Arc<dyn TransactionLedger>,
}
