//! Every metric the counters service emits, declared once: its name and, in
//! [`describe`], its unit and help text.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Stored totals found corrupt when read (a get answered 500, or a page
/// skipped one).
pub const CORRUPT_RECORDS: &str = "quintet_counters_corrupt_records_total";
/// Increments accepted.
pub const INCREMENTS: &str = "quintet_counters_increments_total";
/// Keys with increments not yet written to the store.
pub const PENDING_KEYS: &str = "quintet_counters_pending_keys";
/// `--max-pending-keys`: at it, increments to new keys are refused.
pub const MAX_PENDING_KEYS: &str = "quintet_counters_max_pending_keys";
/// Time one flush to the store took.
pub const FLUSH_DURATION: &str = "quintet_counters_flush_seconds";
/// Keys one flush wrote.
pub const FLUSH_KEYS: &str = "quintet_counters_flush_keys";
/// Flushes the store refused or failed (each is retried).
pub const FLUSH_FAILURES: &str = "quintet_counters_flush_failures_total";
/// Time one journal group append (write and fsync) took.
pub const JOURNAL_SYNC_DURATION: &str = "quintet_counters_journal_sync_seconds";
/// Increments made durable by one journal fsync.
pub const JOURNAL_GROUP_SIZE: &str = "quintet_counters_journal_group_size";

/// A count as a metric value (exact up to 2^53, far beyond any count here).
#[allow(clippy::cast_precision_loss)] // The one place counts become f64.
pub(crate) fn count(n: usize) -> f64 {
    n as f64
}

/// Describes every metric above to the installed recorder, and creates the
/// counters that only count failures at 0, so alert rules and dashboards see
/// them before the first failure.
pub fn describe() {
    ::metrics::counter!(CORRUPT_RECORDS).increment(0);
    ::metrics::counter!(FLUSH_FAILURES).increment(0);
    describe_counter!(
        CORRUPT_RECORDS,
        Unit::Count,
        "Stored counter totals found corrupt when read (a get answered 500, or a page skipped one)"
    );
    describe_counter!(INCREMENTS, Unit::Count, "Increments accepted");
    describe_gauge!(
        PENDING_KEYS,
        Unit::Count,
        "Keys with increments not yet written to the store"
    );
    describe_gauge!(
        MAX_PENDING_KEYS,
        Unit::Count,
        "--max-pending-keys: at it, increments to new keys are answered 503"
    );
    describe_histogram!(
        FLUSH_DURATION,
        Unit::Seconds,
        "Time one flush of pending increments to the store took"
    );
    describe_histogram!(FLUSH_KEYS, Unit::Count, "Keys one flush wrote");
    describe_counter!(
        FLUSH_FAILURES,
        Unit::Count,
        "Flushes that failed (each is retried)"
    );
    describe_histogram!(
        JOURNAL_SYNC_DURATION,
        Unit::Seconds,
        "Time one journal group append (write and fsync) took"
    );
    describe_histogram!(
        JOURNAL_GROUP_SIZE,
        Unit::Count,
        "Increments made durable by one journal fsync"
    );
}
