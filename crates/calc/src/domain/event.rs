//! The calculator's event: every calculation, answered or refused, becomes one
//! `CalculationPerformed` — what was asked, what was answered, when, and for
//! which request — appended to the event log (see `ports::EventLog`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CalcError;

/// Most events one history page holds.
pub const MAX_PAGE: usize = 1_000;
/// Events per history page when the caller names no limit.
pub const DEFAULT_PAGE: usize = 100;

/// One calculation, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalculationPerformed {
    /// When the answer was known (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The `x-request-id` of the call that asked ("" when it carried none).
    pub request_id: String,
    /// The method: `add`, `subtract`, `multiply`, `divide`, `max`, `min`, `nth_primes`, `primes`.
    pub method: String,
    /// The inputs, as named in the API (`{"a":1,"b":2}`, `{"n":[1,2]}`, …).
    pub input: serde_json::Value,
    /// The answer, or why there was none.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a calculation ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The answer (`3`, `[2, 3]`; for a streamed range, `{"count": …}`).
    Result(serde_json::Value),
    /// The refusal: [`CalcError::kind`] and its message.
    Error {
        /// The error's stable kind (`overflow`, `n_too_large`, …).
        kind: String,
        /// The error's message, as the caller got it.
        message: String,
    },
}

impl Outcome {
    /// The outcome of `answer`: its value as JSON, or its error's kind and message.
    pub fn of<T: Serialize>(answer: &Result<T, CalcError>) -> Self {
        match answer {
            Ok(value) => Outcome::Result(serde_json::to_value(value).unwrap_or_default()),
            Err(error) => Outcome::Error {
                kind: error.kind().to_owned(),
                message: error.to_string(),
            },
        }
    }
}

impl CalculationPerformed {
    /// An event stamped now, to the microsecond (what every log keeps alike).
    pub fn now(method: &str, request_id: &str, input: serde_json::Value, outcome: Outcome) -> Self {
        let now = OffsetDateTime::now_utc();
        let at = now
            .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now);
        Self {
            at,
            request_id: request_id.to_owned(),
            method: method.to_owned(),
            input,
            outcome,
        }
    }
}

/// An event with its position in the log (1, 2, 3, … in append order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Its position in the log.
    pub seq: u64,
    /// The event itself.
    #[serde(flatten)]
    pub event: CalculationPerformed,
}

/// Which events to read: those after position `after` (0: from the first),
/// at or after `since` if given, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuery {
    /// Read events after this position (0: from the first).
    pub after: u64,
    /// Read only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Read at most this many events (`1..=MAX_PAGE`).
    pub limit: usize,
}

impl EventQuery {
    /// A query with `limit` clamped to `1..=MAX_PAGE`.
    pub fn new(after: u64, since: Option<OffsetDateTime>, limit: usize) -> Self {
        Self {
            after,
            since,
            limit: limit.clamp(1, MAX_PAGE),
        }
    }

    /// Whether an event at `at` passes the `since` filter.
    pub fn admits(&self, at: OffsetDateTime) -> bool {
        self.since.is_none_or(|since| at >= since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_as_flat_json_and_back() {
        let event = CalculationPerformed::now(
            "divide",
            "req-1",
            serde_json::json!({"a": 1, "b": 0}),
            Outcome::of::<i64>(&Err(CalcError::DivisionByZero)),
        );
        let stored = StoredEvent { seq: 7, event };
        let json = serde_json::to_value(&stored).expect("serialize");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["method"], "divide");
        assert_eq!(json["error"]["kind"], "division_by_zero");
        assert!(json["at"].as_str().expect("at").ends_with('Z'));
        let back: StoredEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, stored);
        let ok = Outcome::of(&Ok(vec![2u64, 3]));
        assert_eq!(ok, Outcome::Result(serde_json::json!([2, 3])));
    }

    #[test]
    fn a_query_clamps_its_page_and_filters_by_time() {
        assert_eq!(EventQuery::new(0, None, 0).limit, 1);
        assert_eq!(EventQuery::new(0, None, 1_000_000).limit, MAX_PAGE);
        let now = OffsetDateTime::now_utc();
        let q = EventQuery::new(0, Some(now), 10);
        assert!(q.admits(now));
        assert!(!q.admits(now - time::Duration::seconds(1)));
        assert!(EventQuery::new(0, None, 10).admits(now - time::Duration::days(1)));
    }
}
