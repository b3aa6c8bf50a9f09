//! The receipts contract: jobs in, results out, and the names and ids they
//! carry. No I/O here.
//!
//! A job (an input queue message body) is
//! `{"receipt": "<base64 receipt or StoreKit 2 JWS>", "user_id": <integer or string>, "post_queue": "<queue name or URL>"}`;
//! each transaction the receipt holds gets one result on `post_queue`:
//! `{"user_id": <as given>, "transaction_id": "<string>", "status": "OK" | "INVALID"}`
//! plus `"reason"` when INVALID. A receipt that names no transaction gets no
//! result: its job is dead-lettered.

pub mod legacy;
mod queue;
mod user;

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

pub(crate) use queue::queue_name;
pub use queue::{
    MAX_QUEUE_URL_BYTES, QUEUE_REF_ACCEPTED, QueueName, QueueNameError, QueueRef, QueueRefError,
    QueueUrl, QueueUrlProblem,
};
pub use user::{MAX_USER_ID_CHARS, USER_ID_ACCEPTED, UserId, UserIdError, UserText};

/// Largest receipt accepted in a job (Apple's app receipts with long
/// histories reach a few hundred KB; SQS bodies stop at 256 KiB anyway).
pub const MAX_RECEIPT_BYTES: usize = 1 << 20;

/// One validation job, as the seed's producers write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Base64 of a legacy receipt, or a `StoreKit` 2 signed transaction (JWS).
    pub receipt: String,
    /// Who the results are for, integer or string, as given.
    pub user_id: UserId,
    /// Where the results go: a queue name or a queue URL.
    pub post_queue: QueueRef,
    /// The fields the job carried besides these three.
    pub ignored: IgnoredFields,
}

/// Ignored field names kept for the log at most.
pub const MAX_IGNORED_NAMES: usize = 16;
/// Characters of an ignored field's name kept for the log at most.
const MAX_IGNORED_NAME_CHARS: usize = 64;

/// Fields of a job the worker does not read. The original producers add
/// some (`"source": "ios"`) and the original worker never looked at them,
/// so they are skipped, never refused; their names are kept for the log
/// (the first [`MAX_IGNORED_NAMES`], each cut to 64 characters: a body of
/// 256 KiB can hold thousands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoredFields {
    count: usize,
    names: Vec<String>,
}

impl IgnoredFields {
    fn add(&mut self, name: &str) {
        self.count += 1;
        if self.names.len() < MAX_IGNORED_NAMES {
            self.names
                .push(name.chars().take(MAX_IGNORED_NAME_CHARS).collect());
        }
    }

    /// How many fields were ignored.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The first [`MAX_IGNORED_NAMES`] of their names, in the job's order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the job carried no other field.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A job is read field by field so that a missing field's error says what
/// the field accepts, as a wrong one's does, and other fields are skipped
/// without being decoded.
impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(JobVisitor)
    }
}

struct JobVisitor;

impl<'de> Visitor<'de> for JobVisitor {
    type Value = Job;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a job object {"receipt", "user_id", "post_queue"}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Job, A::Error> {
        let (mut receipt, mut user_id, mut post_queue) = (None, None, None);
        let mut ignored = IgnoredFields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "receipt" => set_once(&mut receipt, "receipt", map.next_value()?)?,
                "user_id" => set_once(&mut user_id, "user_id", map.next_value()?)?,
                "post_queue" => set_once(&mut post_queue, "post_queue", map.next_value()?)?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                    ignored.add(&key);
                }
            }
        }
        Ok(Job {
            receipt: receipt
                .ok_or_else(|| missing("receipt", "a base64 receipt or a StoreKit 2 JWS"))?,
            user_id: user_id.ok_or_else(|| missing("user_id", USER_ID_ACCEPTED))?,
            post_queue: post_queue.ok_or_else(|| missing("post_queue", QUEUE_REF_ACCEPTED))?,
            ignored,
        })
    }
}

fn set_once<T, E: de::Error>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

fn missing<E: de::Error>(field: &str, accepted: &str) -> E {
    E::custom(format_args!("missing field `{field}`; expected {accepted}"))
}

/// Why a job body was refused (it goes to the dead-letter queue with this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The body is not a job (the text says why).
    #[error("job body is not a valid job: {0}")]
    Malformed(String),
    /// The receipt is empty.
    #[error("receipt is empty")]
    EmptyReceipt,
    /// The receipt is over the size limit.
    #[error("receipt is {0} bytes; the limit is {MAX_RECEIPT_BYTES}")]
    ReceiptTooLarge(usize),
}

impl Job {
    /// Parses a queue message body, naming what is wrong (field and reason).
    pub fn parse(body: &[u8]) -> Result<Self, JobError> {
        // JSON is UTF-8 (RFC 8259 §8.1); serde_json checks only the strings
        // it keeps, so a skipped field could otherwise carry any bytes.
        let body = std::str::from_utf8(body)
            .map_err(|e| JobError::Malformed(format!("job body is not UTF-8: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(body);
        let job: Job = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            JobError::Malformed(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            })
        })?;
        de.end()
            .map_err(|e| JobError::Malformed(format!("trailing data: {e}")))?;
        job.check()?;
        Ok(job)
    }

    fn check(&self) -> Result<(), JobError> {
        // Receipts are ASCII (base64 or a JWS): only ASCII whitespace is
        // padding, as the document's pattern for `receipt` says.
        if self.receipt.trim_ascii().is_empty() {
            return Err(JobError::EmptyReceipt);
        }
        if self.receipt.len() > MAX_RECEIPT_BYTES {
            return Err(JobError::ReceiptTooLarge(self.receipt.len()));
        }
        Ok(())
    }

    /// Whether the receipt is a `StoreKit` 2 JWS rather than a legacy base64 receipt.
    pub fn is_jws(&self) -> bool {
        is_jws(&self.receipt)
    }
}

/// Whether a receipt is a JWS in compact serialization (three non-empty
/// dot-separated parts); legacy receipts are plain base64, which never holds a dot.
pub fn is_jws(receipt: &str) -> bool {
    let mut parts = receipt.trim_ascii().split('.');
    parts.clone().count() == 3 && parts.all(|part| !part.is_empty())
}

/// OK or INVALID, as the result message spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// The transaction is validated for this job.
    Ok,
    /// The receipt or the transaction is refused.
    Invalid,
}

/// One result, posted to the job's `post_queue`: always about one
/// transaction, so `transaction_id` is always a string, as the original
/// worker's consumers expect (a receipt naming none gets no result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The job's `user_id`, with the JSON type it came with.
    pub user_id: UserId,
    /// The transaction the result is about.
    pub transaction_id: String,
    /// OK or INVALID.
    pub status: Status,
    /// Why it is INVALID.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl ResultMessage {
    /// An OK result.
    pub fn ok(user_id: UserId, transaction_id: String) -> Self {
        Self {
            user_id,
            transaction_id,
            status: Status::Ok,
            reason: None,
        }
    }

    /// An INVALID result, with why.
    pub fn invalid(user_id: UserId, transaction_id: String, reason: impl Into<String>) -> Self {
        Self {
            user_id,
            transaction_id,
            status: Status::Invalid,
            reason: Some(reason.into()),
        }
    }
}

/// One purchase a valid receipt holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Apple's id of the transaction.
    pub transaction_id: String,
    /// The product bought, when the receipt names it.
    pub product_id: Option<String>,
}

/// What validation concluded about a receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Genuine: these transactions (at least one).
    Valid {
        /// The App Store environment the receipt is from.
        environment: String,
        /// Its transactions.
        transactions: Vec<Transaction>,
    },
    /// Not genuine or not acceptable; final. `transactions` are those the
    /// refusal still names, as Apple's answer for an expired subscription
    /// (21006) carries its receipt; usually none, and then there is nothing
    /// to report (no result can be posted without a transaction id).
    Invalid {
        /// Why.
        reason: String,
        /// The transactions the refusal names.
        transactions: Vec<Transaction>,
    },
}

impl Validation {
    /// Refused, naming no transaction.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid {
            reason: reason.into(),
            transactions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use super::*;
    use std::fmt::Write as _;

    /// The job a JSON value is, if it is a valid one.
    fn expected_job(value: &Value) -> Option<(String, UserId, QueueRef)> {
        let object = value.as_object()?;
        let receipt = object.get("receipt")?.as_str()?;
        if receipt.trim_ascii().is_empty() || receipt.len() > MAX_RECEIPT_BYTES {
            return None;
        }
        let user_id = match object.get("user_id")? {
            Value::Number(n) => UserId::Int(n.as_i64()?),
            Value::String(text) => UserId::text(text.clone()).ok()?,
            _ => return None,
        };
        let post_queue = QueueRef::parse(object.get("post_queue")?.as_str()?).ok()?;
        Some((receipt.to_owned(), user_id, post_queue))
    }

    fn job_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "receipt",
                fuzz::plausible(
                    prop_oneof![
                        fuzz::bytes(60).prop_map(|b| fuzz::base64(&b)),
                        Just(" \t\n".to_owned()),
                        Just("\u{85}".to_owned()),
                        "[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,20}",
                        fuzz::text(20),
                    ]
                    .prop_map(Value::from)
                    .boxed(),
                ),
            ),
            (
                "user_id",
                fuzz::plausible(
                    prop_oneof![
                        fuzz::json_number(),
                        fuzz::text(10).prop_map(Value::from),
                        Just(Value::from("u".repeat(MAX_USER_ID_CHARS + 1))),
                    ]
                    .boxed(),
                ),
            ),
            (
                "post_queue",
                fuzz::plausible(
                    prop_oneof![
                        "[A-Za-z0-9_-]{0,82}(\\.fifo)?",
                        "https?://[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?/[0-9]{12}/[A-Za-z0-9_.-]{0,12}",
                        fuzz::text(20),
                    ]
                    .prop_map(Value::from)
                    .boxed(),
                ),
            ),
        ])
    }

    #[test]
    fn a_job_body_that_is_not_utf8_is_malformed_even_in_a_skipped_field() {
        let body = b"{\"receipt\":\"ewo=\",\"user_id\":1,\"post_queue\":\"q\",\"source\":\"\xff\"}";
        match Job::parse(body) {
            Err(JobError::Malformed(reason)) => assert!(reason.contains("UTF-8"), "{reason}"),
            other => panic!("expected a malformed job, got {other:?}"),
        }
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any queue message body: never a panic; bytes that are not one
        /// JSON text are malformed; a JSON text is a job exactly when it is
        /// an object with a non-blank receipt of at most 1 MiB, an integer
        /// or valid string user id and a queue name or URL, read as given.
        #[test]
        fn fuzz_job_parse(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(job_object()),
            ]),
        ) {
            let answer = Job::parse(&body);
            match fuzz::json(&body) {
                None if fuzz::is_json(&body) => {}
                None => prop_assert!(answer.is_err(), "{:?}", answer),
                Some(value) => match (expected_job(&value), answer) {
                    (Some((receipt, user_id, post_queue)), Ok(job)) => {
                        prop_assert_eq!(job.receipt, receipt);
                        prop_assert_eq!(job.user_id, user_id);
                        prop_assert_eq!(job.post_queue, post_queue);
                    }
                    (None, Err(_)) => {}
                    (expected, answer) => {
                        prop_assert!(false, "{} gave {:?}, expected {:?}", value, answer, expected);
                    }
                },
            }
        }
    }

    #[test]
    fn jobs_parse_and_errors_name_the_field() {
        let job = Job::parse(br#"{"receipt":"ewo=","user_id":42,"post_queue":"results"}"#)
            .expect("valid job");
        assert_eq!(job.user_id, UserId::Int(42));
        assert_eq!(job.post_queue.to_string(), "results");
        assert!(!job.is_jws());

        let cases: [(&[u8], &str); 7] = [
            (b"not json", "expected"),
            (b"[1, 2]", "expected a job object"),
            (
                br#"{"receipt":"x","user_id":1,"post_queue":"no spaces"}"#,
                "post_queue",
            ),
            (
                br#"{"receipt":"x","user_id":1,"user_id":2,"post_queue":"q"}"#,
                "duplicate field `user_id`",
            ),
            (
                br#"{"user_id":1,"post_queue":"q"}"#,
                "missing field `receipt`",
            ),
            (br#"{"receipt":" ","user_id":1,"post_queue":"q"}"#, "empty"),
            (
                b"{\"receipt\":\"\\t\\r\\n\\f \",\"user_id\":1,\"post_queue\":\"q\"}",
                "empty",
            ),
        ];
        // Only ASCII whitespace is padding, as the document's pattern for
        // `receipt` says: a receipt of U+0085 is queued (the worker then
        // finds it is no receipt), not refused as empty.
        assert!(
            Job::parse("{\"receipt\":\"\u{85}\",\"user_id\":1,\"post_queue\":\"q\"}".as_bytes())
                .is_ok()
        );
        for (body, expected) in cases {
            let err = Job::parse(body).expect_err("refused").to_string();
            assert!(
                err.contains(expected),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn fields_the_worker_does_not_read_are_ignored_and_named() {
        let job = Job::parse(
            br#"{"receipt":"ewo=","source":"ios","user_id":1,"meta":{"a":[1,{"b":null}]},"post_queue":"q","source":2}"#,
        )
        .expect("extra fields are no reason to refuse a job");
        assert_eq!(job.user_id, UserId::Int(1));
        assert_eq!(job.ignored.count(), 3);
        assert_eq!(job.ignored.names(), ["source", "meta", "source"]);
        let plain = Job::parse(br#"{"receipt":"ewo=","user_id":1,"post_queue":"q"}"#).expect("job");
        assert!(plain.ignored.is_empty());

        // Bounded: thousands of fields count, the first 16 names (cut) are kept.
        let many = (0..1000).fold(String::new(), |mut many, i| {
            let _ = write!(many, r#""{}{i}":{i},"#, "x".repeat(100));
            many
        });
        let body = format!(r#"{{{many}"receipt":"ewo=","user_id":1,"post_queue":"q"}}"#);
        let job = Job::parse(body.as_bytes()).expect("job");
        assert_eq!(job.ignored.count(), 1000);
        assert_eq!(job.ignored.names().len(), MAX_IGNORED_NAMES);
        assert!(job.ignored.names().iter().all(|n| n.chars().count() == 64));
    }

    #[test]
    fn post_queue_is_a_queue_name_or_url() {
        let job = Job::parse(
            br#"{"receipt":"ewo=","user_id":1,"post_queue":"https://sqs.us-east-1.amazonaws.com/123456789012/results"}"#,
        )
        .expect("valid job");
        assert_eq!(job.post_queue.name().as_str(), "results");
        assert!(job.post_queue.url().is_some());
        for post_queue in [r#""""#, r#""https://h/123/""#, r#""a b""#, "7", "null"] {
            let body = format!(r#"{{"receipt":"ewo=","user_id":1,"post_queue":{post_queue}}}"#);
            let err = Job::parse(body.as_bytes())
                .expect_err("refused")
                .to_string();
            assert!(
                err.starts_with("job body is not a valid job: post_queue: ")
                    && err.contains(QUEUE_REF_ACCEPTED),
                "{post_queue}: {err}"
            );
        }
    }

    #[test]
    fn a_user_id_is_an_integer_or_a_string() {
        let parse = |user_id: &str| {
            Job::parse(
                format!(r#"{{"receipt":"ewo=","user_id":{user_id},"post_queue":"q"}}"#).as_bytes(),
            )
            .map(|job| job.user_id)
        };
        assert_eq!(parse("42"), Ok(UserId::Int(42)));
        assert_eq!(
            parse(r#""user-8""#),
            Ok(UserId::text("user-8").expect("valid"))
        );
        assert_eq!(parse(r#""42""#), Ok(UserId::text("42").expect("valid")));
    }

    #[test]
    fn other_user_ids_are_refused_naming_the_field_and_what_it_accepts() {
        for user_id in [
            r#"{"id":1}"#,
            "[1]",
            "4.2",
            "true",
            "null",
            "18446744073709551615",
            r#""""#,
        ] {
            let body = format!(r#"{{"receipt":"ewo=","user_id":{user_id},"post_queue":"q"}}"#);
            let err = Job::parse(body.as_bytes())
                .expect_err("refused")
                .to_string();
            assert!(
                err.starts_with("job body is not a valid job: user_id: ")
                    && err.contains(USER_ID_ACCEPTED),
                "{user_id}: {err}"
            );
        }
        let err = Job::parse(br#"{"receipt":"ewo=","post_queue":"q"}"#)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("missing field `user_id`") && err.contains(USER_ID_ACCEPTED),
            "{err}"
        );
    }

    #[test]
    fn results_serialise_as_the_seed_does() {
        let ok =
            serde_json::to_value(ResultMessage::ok(UserId::Int(7), "1000".into())).expect("json");
        assert_eq!(
            ok,
            serde_json::json!({"user_id": 7, "transaction_id": "1000", "status": "OK"})
        );
        let text = UserId::text("user-8").expect("valid");
        let ok = serde_json::to_value(ResultMessage::ok(text, "1000".into())).expect("json");
        assert_eq!(
            ok,
            serde_json::json!({"user_id": "user-8", "transaction_id": "1000", "status": "OK"})
        );
        let invalid = serde_json::to_value(ResultMessage::invalid(
            UserId::Int(7),
            "1000".into(),
            "21006",
        ))
        .expect("json");
        assert_eq!(
            invalid,
            serde_json::json!({"user_id": 7, "transaction_id": "1000", "status": "INVALID", "reason": "21006"})
        );
        // A result without a transaction id is no result.
        let null = serde_json::json!({"user_id": 7, "transaction_id": null, "status": "INVALID"});
        assert!(serde_json::from_value::<ResultMessage>(null).is_err());
    }

    #[test]
    fn jws_is_told_from_legacy_base64() {
        let job = |receipt: &str| Job {
            receipt: receipt.into(),
            user_id: UserId::Int(1),
            post_queue: QueueRef::parse("q").expect("name"),
            ignored: IgnoredFields::default(),
        };
        assert!(job("eyJh.eyJi.c2ln").is_jws());
        assert!(!job("ewoJInNpZ25hdHVyZSIgPSAiQW==").is_jws());
    }
}
