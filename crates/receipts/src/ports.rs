//! What the receipts pipeline needs from the outside: queues, a ledger of
//! claimed transactions, and a receipt validator (Apple).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use platform::backend::BackendError;

use crate::domain::{QueueName, QueueRef, UserId, Validation};

/// Most messages one receive, send or delete call handles (SQS's limit).
pub const MAX_BATCH: usize = 10;
/// Largest message body (SQS's limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A queue call that failed. `Clone`: a batched call's failure answers
/// every caller in the batch (the backend's error is shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The queue does not exist.
    #[error("queue '{0}' does not exist")]
    NoSuchQueue(QueueName),
    /// The message is over [`MAX_BODY_BYTES`].
    #[error("message of {0} bytes is over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
    /// The handle matches no delivery in flight.
    #[error("receipt handle is not valid (expired or already deleted)")]
    InvalidHandle,
    /// More than [`MAX_BATCH`] entries (messages, handles) in one call.
    #[error("{0} entries in one call; the limit is {MAX_BATCH}")]
    TooManyEntries(usize),
    /// The engine failed, or refused this message (see the error's
    /// [`FailureKind`](platform::backend::FailureKind)).
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] Arc<BackendError>),
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
    /// The message's id.
    pub message_id: String,
    /// This delivery's handle.
    pub handle: String,
    /// The message body.
    pub body: Vec<u8>,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent, in ms since the Unix epoch.
    pub sent_at_ms: i64,
    /// The `reason` attribute it was sent with ([`Outgoing::reason`]).
    pub reason: Option<String>,
    /// The trace context it was sent in ([`Outgoing::traceparent`]).
    pub traceparent: Option<String>,
}

/// A message to send; `reason` travels as an attribute (dead letters carry why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The body.
    pub body: Vec<u8>,
    /// Why it is sent (dead letters carry it).
    pub reason: Option<String>,
    /// The W3C `traceparent` of the span that sent it, when traces are
    /// exported: the receiver's work joins the sender's trace. Travels as a
    /// message attribute, like `reason`.
    pub traceparent: Option<String>,
}

/// A message queue with at-least-once delivery and visibility timeouts.
/// Queues are named or given by URL ([`QueueRef`]); each engine says what a
/// URL means to it.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// The engine, for logs and readiness.
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

    /// Whether the queue engine answers.
    async fn ping(&self) -> Result<(), QueueError>;

    /// Releases the engine; calls after it fail as closed.
    async fn close(&self) {}
}

/// Two backend failures are equal when the same engine's same operation
/// failed the same way (the drivers' errors are not comparable).
fn same_failure(a: &BackendError, b: &BackendError) -> bool {
    (a.engine(), a.operation(), a.kind()) == (b.engine(), b.operation(), b.kind())
}

impl PartialEq for QueueError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::NoSuchQueue(a), Self::NoSuchQueue(b)) => a == b,
            (Self::TooLarge(a), Self::TooLarge(b))
            | (Self::TooManyEntries(a), Self::TooManyEntries(b)) => a == b,
            (Self::InvalidHandle, Self::InvalidHandle) => true,
            (Self::Unavailable(a), Self::Unavailable(b)) => same_failure(a, b),
            (Self::TooManyQueues(a), Self::TooManyQueues(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for LedgerError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unavailable(a), Self::Unavailable(b)) => same_failure(a, b),
            (
                Self::Inconsistent { transaction_id: a },
                Self::Inconsistent { transaction_id: b },
            ) => a == b,
            _ => false,
        }
    }
}

impl From<BackendError> for QueueError {
    fn from(error: BackendError) -> Self {
        Self::Unavailable(Arc::new(error))
    }
}

/// A ledger call that failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The engine failed.
    #[error("ledger unavailable: {0}")]
    Unavailable(#[from] BackendError),
    /// A claim that the ledger's own rules say cannot be: `transaction_id`
    /// failed its claim condition yet holds no claim.
    #[error("transaction {transaction_id} failed its claim condition but is not in the ledger")]
    Inconsistent {
        /// The transaction.
        transaction_id: String,
    },
}

/// The outcome of claiming a transaction for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First claim: this job validated the transaction.
    New,
    /// This same job claimed it before (a redelivery after a crash).
    SameJob,
    /// Another job claimed it first.
    /// Another job claimed it first.
    OtherJob {
        /// The job that claimed it.
        job_id: String,
    },
}

/// Transactions already validated, each with the job that claimed it.
#[async_trait]
pub trait TransactionLedger: Send + Sync {
    /// The engine, for logs and readiness.
    fn kind(&self) -> &'static str;

    /// Claims `transaction_id` for `job_id`, atomically; `user_id` is
    /// recorded with a new claim, as given (integer or string).
    async fn claim(
        &self,
        transaction_id: &str,
        job_id: &str,
        user_id: &UserId,
    ) -> Result<Claim, LedgerError>;

    /// Whether the ledger answers.
    async fn ping(&self) -> Result<(), LedgerError>;

    /// Releases the engine; calls after it fail as closed.
    async fn close(&self) {}
}

/// Why a receipt could not be validated (a refused receipt is not an
/// error: it is a [`Validation::Invalid`]). Both cases carry the
/// validator's own error as the [`BackendError`]'s source.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// The validator is misconfigured (Apple 21004: wrong shared secret):
    /// no receipt can be validated until an operator fixes it.
    #[error("validator misconfigured: {0}")]
    Config(#[source] BackendError),
    /// Not reachable or still failing after its retries: try the job later.
    #[error("validator unavailable: {0}")]
    Unavailable(#[source] BackendError),
}

/// Decides whether a receipt is genuine and which transactions it holds.
#[async_trait]
pub trait ReceiptValidator: Send + Sync {
    /// Validates one receipt: a verdict, or why there is none now.
    async fn validate(&self, receipt: &str) -> Result<Validation, ValidatorError>;
}

/// Readiness over the queue's and the ledger's `ping`.
pub struct Readiness {
    /// The queues.
    pub queue: std::sync::Arc<dyn JobQueue>,
    /// The ledger.
    pub ledger: std::sync::Arc<dyn TransactionLedger>,
}

#[async_trait]
impl platform::health::ReadinessCheck for Readiness {
    fn name(&self) -> &'static str {
        "receipts-queue-and-ledger"
    }

    async fn check(&self) -> Result<(), platform::health::ReadinessError> {
        use platform::health::ReadinessError;
        self.queue.ping().await.map_err(ReadinessError::new)?;
        self.ledger.ping().await.map_err(ReadinessError::new)
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
