//! Every metric the kv service emits: its name, once, and in [`describe()`]
//! its unit and help text. Call sites use the constants.

use ::metrics::{Unit, describe_counter, describe_gauge};

/// Stored records found corrupt when read: an answer of 500 / `DATA_LOSS`,
/// or a listing that skipped one.
pub const CORRUPT_RECORDS: &str = "quintet_kv_corrupt_records_total";
/// Key provider calls, by `provider`, `op` and `outcome` (ok, unavailable, refused).
pub const PROVIDER_CALLS: &str = "quintet_kv_provider_calls_total";
/// Calls held by the rate limit in front of a remote provider, by
/// `provider` and `outcome` (waited, refused).
pub const PROVIDER_THROTTLED: &str = "quintet_kv_provider_throttled_total";
/// Data-key cache lookups, by `cache` (encrypt, decrypt) and `result` (hit, miss).
pub const DEK_CACHE: &str = "quintet_kv_dek_cache_total";
/// Open raw-TCP connections.
pub const TCP_OPEN: &str = "quintet_kv_tcp_connections_open";
/// Raw-TCP connections accepted.
pub const TCP_ACCEPTED: &str = "quintet_kv_tcp_connections_total";
/// Raw-TCP connections closed at accept, by `reason`.
pub const TCP_REFUSED: &str = "quintet_kv_tcp_connections_refused_total";
/// Raw-TCP connections closed by a deadline, by `stage`.
pub const TCP_TIMED_OUT: &str = "quintet_kv_tcp_timeouts_total";
/// Raw-TCP requests, by `type` and `outcome`.
pub const TCP_REQUESTS: &str = "quintet_kv_tcp_requests_total";
/// Raw-TCP connections closed for bytes that are not a request.
pub const TCP_GARBAGE: &str = "quintet_kv_tcp_garbage_connections_total";
/// Bytes of the raw-TCP buffer budget held by partly received requests.
pub const TCP_BUFFERED: &str = "quintet_kv_tcp_buffered_bytes";

/// Describes every metric above to the installed recorder, and creates the
/// corrupt-records counter at 0, so alert rules and dashboards see it before
/// the first corrupt record.
pub fn describe() {
    ::metrics::counter!(CORRUPT_RECORDS).increment(0);
    describe_counter!(
        CORRUPT_RECORDS,
        Unit::Count,
        "Stored kv records found corrupt when read (answered 500 / DATA_LOSS, or skipped by a listing)."
    );
    describe_counter!(
        PROVIDER_CALLS,
        Unit::Count,
        "kv key provider calls by provider, op and outcome (ok, unavailable, refused)."
    );
    describe_counter!(
        PROVIDER_THROTTLED,
        Unit::Count,
        "kv key provider calls held by this instance's rate limit, by provider and outcome (waited, refused)."
    );
    describe_counter!(
        DEK_CACHE,
        Unit::Count,
        "kv data-key cache lookups by cache (encrypt, decrypt) and result (hit, miss)."
    );
    describe_gauge!(TCP_OPEN, Unit::Count, "Open kv raw-TCP connections.");
    describe_counter!(
        TCP_ACCEPTED,
        Unit::Count,
        "kv raw-TCP connections accepted."
    );
    describe_counter!(
        TCP_REFUSED,
        Unit::Count,
        "kv raw-TCP connections closed at accept, by reason: cap, allowlist, tls."
    );
    describe_counter!(
        TCP_TIMED_OUT,
        Unit::Count,
        "kv raw-TCP connections closed by a deadline: idle, frame, handshake, budget."
    );
    describe_counter!(
        TCP_REQUESTS,
        Unit::Count,
        "kv raw-TCP requests by type and outcome."
    );
    describe_counter!(
        TCP_GARBAGE,
        Unit::Count,
        "kv raw-TCP connections closed for bytes that are not a request."
    );
    describe_gauge!(
        TCP_BUFFERED,
        Unit::Bytes,
        "Bytes of the kv raw-TCP buffer budget held by partly received requests."
    );
}
