//! Every metric the receipts service emits: its name, once, and in
//! [`describe()`] its unit and help text. Call sites use the constants.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Jobs received from the input queue.
pub const RECEIVED_TOTAL: &str = "quintet_receipts_received_total";
/// Jobs being processed now.
pub const IN_FLIGHT: &str = "quintet_receipts_in_flight";
/// Jobs finished, by `outcome` (done, `dead_lettered`, retry, returned).
pub const JOBS_TOTAL: &str = "quintet_receipts_jobs_total";
/// Time from receiving a job to finishing it.
pub const PROCESSING_SECONDS: &str = "quintet_receipts_processing_seconds";
/// Age of a job when finished: from its first send to its end.
pub const JOB_SECONDS: &str = "quintet_receipts_job_seconds";
/// Time spent per pipeline `stage` (receive, apple, ledger, post, delete).
pub const STAGE_SECONDS: &str = "quintet_receipts_stage_seconds";
/// Results posted, by `status` (OK, INVALID).
pub const RESULTS_TOTAL: &str = "quintet_receipts_results_total";
/// Jobs put back for a later try, by the `stage` that failed.
pub const RETRIES_TOTAL: &str = "quintet_receipts_retries_total";
/// Jobs dead-lettered because Apple refused our configuration (21004).
pub const CONFIG_ERRORS_TOTAL: &str = "quintet_receipts_config_errors_total";
/// Fields of received jobs that were ignored: no labels (field names come
/// from producers and are unbounded).
pub const JOB_UNKNOWN_FIELDS_TOTAL: &str = "quintet_receipts_job_unknown_fields_total";
/// Jobs sent to the dead-letter queue, by `reason`.
pub const DEAD_LETTERED_TOTAL: &str = "quintet_receipts_dead_lettered_total";
/// Entries per batched queue call, by `call` (send, delete).
pub const BATCH_SIZE: &str = "quintet_receipts_batch_size";
/// Requests to verifyReceipt, by `environment` and `status`.
pub const APPLE_REQUESTS_TOTAL: &str = "quintet_receipts_apple_requests_total";
/// Duration of one verifyReceipt request, by `environment`.
pub const APPLE_REQUEST_SECONDS: &str = "quintet_receipts_apple_request_seconds";
/// verifyReceipt retries after a transient answer.
pub const APPLE_RETRIES_TOTAL: &str = "quintet_receipts_apple_retries_total";
/// `StoreKit` 2 signed transactions verified, by `outcome` (valid, invalid).
pub const JWS_TOTAL: &str = "quintet_receipts_jws_total";
/// Messages on an embedded queue, by `queue`.
pub const QUEUE_MESSAGES: &str = "quintet_receipts_queue_messages";
/// Messages sent to a queue, by `queue`.
pub const QUEUE_SENT_TOTAL: &str = "quintet_receipts_queue_sent_total";
/// Messages received from a queue, by `queue`.
pub const QUEUE_RECEIVED_TOTAL: &str = "quintet_receipts_queue_received_total";
/// Messages deleted from a queue, by `queue`.
pub const QUEUE_DELETED_TOTAL: &str = "quintet_receipts_queue_deleted_total";

/// A count as a metric value (exact up to 2^53, far beyond any count here).
#[allow(clippy::cast_precision_loss)] // The one place counts become f64.
pub(crate) fn count(n: u64) -> f64 {
    n as f64
}

/// Declares every metric above with its unit and help text. Called from
/// [`crate::service`], after the process has installed its recorder.
pub fn describe() {
    describe_counter!(
        RECEIVED_TOTAL,
        Unit::Count,
        "Jobs received from the input queue"
    );
    describe_gauge!(IN_FLIGHT, Unit::Count, "Jobs being processed now");
    describe_counter!(
        JOBS_TOTAL,
        Unit::Count,
        "Jobs finished, by outcome: done, dead_lettered, retry, returned (given back on shutdown)"
    );
    describe_histogram!(
        PROCESSING_SECONDS,
        Unit::Seconds,
        "Time from receiving a job to finishing it (retried jobs not counted)"
    );
    describe_histogram!(
        JOB_SECONDS,
        Unit::Seconds,
        "Age of a finished job, from its first send to the end of its processing"
    );
    describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Time spent per pipeline stage: receive, apple, ledger, post, delete"
    );
    describe_counter!(
        RESULTS_TOTAL,
        Unit::Count,
        "Results posted, by status: OK, INVALID"
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Jobs left on the queue for a later try, by the stage that failed: apple, ledger, post, dead-letter"
    );
    describe_counter!(
        CONFIG_ERRORS_TOTAL,
        Unit::Count,
        "Jobs dead-lettered because Apple refused the configuration (21004: wrong shared secret)"
    );
    describe_counter!(
        JOB_UNKNOWN_FIELDS_TOTAL,
        Unit::Count,
        "Fields of received jobs other than receipt, user_id and post_queue, ignored (names logged at debug)"
    );
    describe_counter!(
        DEAD_LETTERED_TOTAL,
        Unit::Count,
        "Jobs sent to the dead-letter queue, by reason: not_a_job, max_receives, no_post_queue, \
         apple_config, no_transaction (Apple refused the receipt and named no transaction)"
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Entries per batched queue call, by call: send, delete"
    );
    describe_counter!(
        APPLE_REQUESTS_TOTAL,
        Unit::Count,
        "Requests to verifyReceipt, by environment and status (Apple's status, or http_4xx, http_429, http_5xx, timeout, transport, bad_response)"
    );
    describe_histogram!(
        APPLE_REQUEST_SECONDS,
        Unit::Seconds,
        "Duration of one request to verifyReceipt, by environment"
    );
    describe_counter!(
        APPLE_RETRIES_TOTAL,
        Unit::Count,
        "Retries of verifyReceipt after a transient answer"
    );
    describe_counter!(
        JWS_TOTAL,
        Unit::Count,
        "StoreKit 2 signed transactions verified, by outcome: valid, invalid"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        Unit::Count,
        "Messages on an embedded queue (visible and hidden), by queue"
    );
    describe_counter!(
        QUEUE_SENT_TOTAL,
        Unit::Count,
        "Messages sent to a queue, by queue"
    );
    describe_counter!(
        QUEUE_RECEIVED_TOTAL,
        Unit::Count,
        "Messages received from a queue, by queue"
    );
    describe_counter!(
        QUEUE_DELETED_TOTAL,
        Unit::Count,
        "Messages deleted from a queue, by queue"
    );
}
