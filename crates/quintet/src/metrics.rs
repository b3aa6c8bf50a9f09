//! Every metric the binary itself emits (each service declares its own).

use metrics::Unit;

/// Gauge: seconds from process start to the listener accepting, the
/// twelve-factor "fast start", reported.
pub const STARTUP_SECONDS: &str = "quintet_startup_seconds";

/// Describes every metric of this module to the recorder.
pub fn describe() {
    metrics::describe_gauge!(
        STARTUP_SECONDS,
        Unit::Seconds,
        "Seconds from process start to the listener accepting connections."
    );
}
