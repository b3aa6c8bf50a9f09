//! Every metric the messages service emits, declared once: its name and,
//! in [`describe`], its unit and help text.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Stored records found corrupt when read (a get answered 500, or a page
/// skipped one).
pub const CORRUPT_RECORDS: &str = "quintet_messages_corrupt_records_total";
/// Time one store call took, labelled by `op` (`put`, `get`, `page`).
pub const STORE_DURATION: &str = "quintet_messages_store_duration_seconds";
/// Messages posted, labelled by `outcome` (`created`, `already_stored`).
pub const POSTED: &str = "quintet_messages_posted_total";

/// `GET`s of a message by digest, labelled by `result`: `hit` (answered
/// from memory) or `miss` (read from the store).
pub const CACHE_LOOKUPS: &str = "quintet_messages_cache_lookups_total";
/// Bytes the cache of recently read messages holds.
pub const CACHE_BYTES: &str = "quintet_messages_cache_bytes";

/// Describes every metric above to the installed recorder, and creates the
/// corrupt-records counter at 0, so alert rules and dashboards see it before
/// the first corrupt record.
pub fn describe() {
    ::metrics::counter!(CORRUPT_RECORDS).increment(0);
    describe_counter!(
        CORRUPT_RECORDS,
        Unit::Count,
        "Stored messages found corrupt when read (a get answered 500, or a page skipped one)"
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Time one messages store call took, by op"
    );
    describe_counter!(
        POSTED,
        Unit::Count,
        "Messages posted, by outcome (created or already_stored)"
    );
    describe_counter!(
        CACHE_LOOKUPS,
        Unit::Count,
        "GETs of a message by digest, by result: hit (answered from memory) or miss (read from the store)"
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes held by the cache of recently read messages (--message-cache-bytes)"
    );
}
