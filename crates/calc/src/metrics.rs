//! Every metric calc emits, declared once: its name and, in [`describe`],
//! its unit and help text.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Calculations answered, labelled by `method` and `outcome`.
pub const CALCULATIONS: &str = "quintet_calc_calculations_total";
/// Events the recorder's buffer holds at most.
pub const EVENT_BUFFER_CAPACITY: &str = "quintet_calc_event_buffer_capacity";
/// Events waiting in the recorder's buffer.
pub const EVENT_BUFFER_EVENTS: &str = "quintet_calc_event_buffer_events";
/// Events never written, labelled by `reason` (`buffer_full`, `stopped`, `shutdown`).
pub const EVENTS_DROPPED: &str = "quintet_calc_events_dropped_total";
/// 1 while the last append to the event log succeeded, 0 while it fails.
pub const EVENT_LOG_UP: &str = "quintet_calc_event_log_up";
/// Time one append to the event log took, labelled by `engine`.
pub const EVENT_APPEND_DURATION: &str = "quintet_calc_event_append_seconds";
/// Events written to the event log, labelled by `engine`.
pub const EVENTS_APPENDED: &str = "quintet_calc_events_appended_total";
/// Appends to the event log that failed (each is retried), labelled by `engine`.
pub const EVENT_APPEND_FAILURES: &str = "quintet_calc_event_append_failures_total";

/// A count as a metric value (exact up to 2^53, far beyond any count here).
#[allow(clippy::cast_precision_loss)] // The one place counts become f64.
pub(crate) fn count(n: usize) -> f64 {
    n as f64
}

/// Describes every metric above to the installed recorder.
pub fn describe() {
    describe_counter!(
        CALCULATIONS,
        Unit::Count,
        "Calculations answered, by method and outcome"
    );
    describe_gauge!(
        EVENT_BUFFER_CAPACITY,
        Unit::Count,
        "Events the calc event buffer holds at most"
    );
    describe_gauge!(
        EVENT_BUFFER_EVENTS,
        Unit::Count,
        "Events waiting in the calc event buffer"
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Calc events never written, by reason (buffer_full, stopped, shutdown)"
    );
    describe_gauge!(
        EVENT_LOG_UP,
        Unit::Count,
        "1 while the last append to the calc event log succeeded, 0 while it fails"
    );
    describe_histogram!(
        EVENT_APPEND_DURATION,
        Unit::Seconds,
        "Time one append to the calc event log took, by engine"
    );
    describe_counter!(
        EVENTS_APPENDED,
        Unit::Count,
        "Events written to the calc event log, by engine"
    );
    describe_counter!(
        EVENT_APPEND_FAILURES,
        Unit::Count,
        "Appends to the calc event log that failed (each is retried), by engine"
    );
}
