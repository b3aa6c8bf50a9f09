//! What verifyReceipt answers: one request's outcome ([`Answer`]), Apple's
//! JSON read leniently into the parts the worker uses ([`AppleResponse`]),
//! and why an answer is not one ([`BadAnswer`], [`TransportError`]).

use std::collections::HashSet;

use platform::backend::BoxError;
use serde_json::Value;

use crate::domain::Transaction;

/// Largest response body read from Apple: app receipts with long purchase
/// histories answer with a few MiB at most; anything bigger is not Apple.
pub(super) const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// What kind of transport failure a request met: what the retry policy and
/// the metrics look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No answer within the request budget.
    Timeout,
    /// No connection: refused, reset, name not resolved, TLS failed.
    Connect,
    /// The request was sent but the answer could not be read.
    Other,
}

/// A request to verifyReceipt that got no HTTP answer; the HTTP client's
/// error is the source.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .kind {
    TransportKind::Timeout => "verifyReceipt did not answer in time",
    TransportKind::Connect => "verifyReceipt could not be reached",
    TransportKind::Other => "verifyReceipt's answer could not be read",
})]
pub struct TransportError {
    /// What kind of failure it was.
    pub kind: TransportKind,
    #[source]
    source: BoxError,
}

impl TransportError {
    /// A failure of `kind` caused by `source`.
    pub fn new(kind: TransportKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// The HTTP client's error, classified.
    pub(super) fn from_reqwest(error: reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            TransportKind::Timeout
        } else if error.is_connect() {
            TransportKind::Connect
        } else {
            TransportKind::Other
        };
        Self::new(kind, error)
    }
}

/// An HTTP 2xx answer that is not a verifyReceipt answer.
#[derive(Debug, thiserror::Error)]
pub enum BadAnswer {
    /// The body is not JSON.
    #[error("response is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("response is not a JSON object")]
    NotAnObject,
    /// The object has no integer `status`.
    #[error("response has no integer status")]
    NoStatus,
    /// The body is over [`MAX_RESPONSE_BYTES`].
    #[error("response is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// What one HTTP request to verifyReceipt came back with.
#[derive(Debug)]
pub(super) enum Answer {
    /// HTTP 2xx with a JSON body that has a `status`.
    Apple(AppleResponse),
    /// Any other HTTP status.
    Http(u16),
    /// No answer: the request failed on the way (timeout, connection, reading).
    Transport(TransportError),
    /// HTTP 2xx whose body is not a verifyReceipt answer.
    BadBody(BadAnswer),
}

impl Answer {
    /// The `status` label: Apple's status, or what failed. Unknown Apple
    /// statuses share one label so a misbehaving server cannot grow the series.
    pub(super) fn metric_label(&self) -> String {
        match self {
            Self::Apple(r) if is_known_status(r.status) => r.status.to_string(),
            Self::Apple(_) => "other".into(),
            Self::Http(429) => "http_429".into(),
            Self::Http(code) if *code >= 500 => "http_5xx".into(),
            Self::Http(code) if *code >= 400 => "http_4xx".into(),
            Self::Http(_) => "http_other".into(),
            Self::Transport(e) if e.kind == TransportKind::Timeout => "timeout".into(),
            Self::Transport(_) => "transport".into(),
            Self::BadBody(_) => "bad_response".into(),
        }
    }
}

fn is_known_status(status: i64) -> bool {
    matches!(status, 0 | 21000..=21010 | 21100..=21199)
}

/// The parts of a verifyReceipt answer the worker uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AppleResponse {
    pub(super) status: i64,
    pub(super) environment: Option<String>,
    pub(super) is_retryable: bool,
    /// From `receipt.in_app[]` and `receipt.transaction_id`, deduplicated,
    /// in the order Apple gave them.
    pub(super) transactions: Vec<Transaction>,
}

/// Parses a verifyReceipt body. Only `status` is required; the receipt is
/// read leniently (Apple's field types have varied: ids as strings or numbers).
pub(super) fn parse_response(body: &[u8]) -> Result<AppleResponse, BadAnswer> {
    let value: Value = serde_json::from_slice(body).map_err(BadAnswer::NotJson)?;
    let object = value.as_object().ok_or(BadAnswer::NotAnObject)?;
    let status = object
        .get("status")
        .and_then(Value::as_i64)
        .ok_or(BadAnswer::NoStatus)?;
    let environment = object
        .get("environment")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is_retryable = match object.get("is-retryable") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    };
    let mut transactions = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |item: &Value| {
        if let Some(transaction_id) = id_of(item.get("transaction_id"))
            && seen.insert(transaction_id.clone())
        {
            transactions.push(Transaction {
                transaction_id,
                product_id: id_of(item.get("product_id")),
            });
        }
    };
    if let Some(receipt) = object.get("receipt") {
        if let Some(in_app) = receipt.get("in_app").and_then(Value::as_array) {
            in_app.iter().for_each(&mut add);
        }
        add(receipt);
    }
    Ok(AppleResponse {
        status,
        environment,
        is_retryable,
        transactions,
    })
}

/// A non-empty string, or a number written as one.
fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::apple::verify_receipt::policy::{Endpoint, Step, step};
    use crate::domain::Validation;
    use proptest::prelude::*;
    use serde_json::json;
    use testkit::fuzz;

    fn id() -> BoxedStrategy<Value> {
        fuzz::plausible(
            prop_oneof![
                "[0-9]{0,16}".prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                Just(Value::from("")),
            ]
            .boxed(),
        )
    }

    fn purchase() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![("transaction_id", id()), ("product_id", id())])
    }

    /// A verifyReceipt answer with every field of any type.
    fn answer() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "status",
                fuzz::plausible(
                    prop_oneof![Just(0i64), 21000i64..=21010, 21100i64..=21199, any::<i64>()]
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
            (
                "environment",
                fuzz::plausible(
                    prop_oneof![Just("Sandbox"), Just("Production")]
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
            ("is-retryable", fuzz::json_scalar().boxed()),
            (
                "receipt",
                fuzz::plausible(
                    (
                        purchase(),
                        proptest::collection::vec(purchase(), 0..4),
                        any::<bool>(),
                    )
                        .prop_map(|(mut receipt, in_app, with_in_app)| {
                            if with_in_app && let Some(object) = receipt.as_object_mut() {
                                object.insert("in_app".into(), Value::from(in_app));
                            }
                            receipt
                        })
                        .boxed(),
                ),
            ),
        ])
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any verifyReceipt body: never a panic; read exactly when it is a
        /// JSON object with an integer status; its transactions have ids
        /// and are named once each; and a verdict is VALID only for status
        /// 0 with a transaction.
        #[test]
        fn fuzz_verify_receipt_response(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(answer()),
            ]),
            sandbox in any::<bool>(),
        ) {
            let parsed = parse_response(&body);
            let status = fuzz::json(&body)
                .as_ref()
                .and_then(Value::as_object)
                .and_then(|object| object.get("status"))
                .and_then(Value::as_i64);
            let response = match (status, parsed) {
                (Some(status), Ok(response)) => {
                    prop_assert_eq!(response.status, status);
                    response
                }
                (None, Err(_)) => return Ok(()),
                (status, parsed) => {
                    return Err(TestCaseError::fail(format!("status {status:?} but {parsed:?}")));
                }
            };
            let mut ids = HashSet::new();
            for transaction in &response.transactions {
                prop_assert!(!transaction.transaction_id.is_empty());
                prop_assert!(ids.insert(transaction.transaction_id.clone()), "named twice");
            }
            let endpoint = if sandbox { Endpoint::Sandbox } else { Endpoint::Production };
            let transactions = response.transactions.clone();
            let _ = Answer::Apple(response.clone()).metric_label();
            if let Step::Done(Validation::Valid { transactions: valid, .. }) =
                step(endpoint, Answer::Apple(response.clone()))
            {
                prop_assert_eq!(response.status, 0);
                prop_assert!(!valid.is_empty());
                prop_assert_eq!(valid, transactions);
            }
        }
    }

    fn apple(body: &Value) -> Answer {
        Answer::Apple(parse_response(body.to_string().as_bytes()).expect("parses"))
    }

    fn txn(id: &str, product: Option<&str>) -> Transaction {
        Transaction {
            transaction_id: id.into(),
            product_id: product.map(str::to_owned),
        }
    }

    #[test]
    fn ios6_and_ios7_receipts_give_their_transactions_once_each() {
        let ios6 = parse_response(
            br#"{"status":0,"receipt":{"transaction_id":"1000000042928567","product_id":"p1","quantity":"1"}}"#,
        )
        .expect("ios6");
        assert_eq!(ios6.transactions, vec![txn("1000000042928567", Some("p1"))]);
        assert_eq!(ios6.environment, None);

        let ios7 = parse_response(
            br#"{"status":0,"environment":"Sandbox","receipt":{"bundle_id":"b","in_app":[
                {"transaction_id":"1","product_id":"a"},
                {"transaction_id":2,"product_id":"b"},
                {"transaction_id":"1","product_id":"a"},
                {"product_id":"no id"},
                {"transaction_id":"","product_id":"empty id"}
            ]}}"#,
        )
        .expect("ios7");
        assert_eq!(ios7.environment.as_deref(), Some("Sandbox"));
        assert_eq!(
            ios7.transactions,
            vec![txn("1", Some("a")), txn("2", Some("b"))]
        );

        let both = parse_response(
            br#"{"status":0,"receipt":{"transaction_id":"2","in_app":[{"transaction_id":"1"},{"transaction_id":"2"}]}}"#,
        )
        .expect("both");
        assert_eq!(both.transactions, vec![txn("1", None), txn("2", None)]);
    }

    #[test]
    fn bodies_without_an_integer_status_are_refused() {
        for body in [
            &b"<html>busy</html>"[..],
            b"[]",
            b"{}",
            br#"{"status":"0"}"#,
        ] {
            assert!(
                parse_response(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let odd =
            parse_response(br#"{"status":0,"receipt":{"in_app":"not a list"}}"#).expect("lenient");
        assert!(odd.transactions.is_empty());
    }

    #[test]
    fn metric_labels_stay_bounded() {
        assert_eq!(apple(&json!({"status": 21007})).metric_label(), "21007");
        assert_eq!(apple(&json!({"status": 123_456})).metric_label(), "other");
        assert_eq!(Answer::Http(502).metric_label(), "http_5xx");
        assert_eq!(Answer::Http(429).metric_label(), "http_429");
        assert_eq!(Answer::Http(404).metric_label(), "http_4xx");
        let transport = |kind| Answer::Transport(TransportError::new(kind, "refused"));
        assert_eq!(transport(TransportKind::Timeout).metric_label(), "timeout");
        assert_eq!(
            transport(TransportKind::Connect).metric_label(),
            "transport"
        );
    }
}
