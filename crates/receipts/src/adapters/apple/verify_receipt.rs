//! The legacy App Store `verifyReceipt` client: a [`ReceiptValidator`] that
//! posts a base64 receipt to Apple (production first, sandbox on 21007, back
//! to production on 21008), retries Apple's transient answers with
//! exponential backoff and full jitter, and turns the final answer into a
//! [`Validation`] or a [`ValidatorError`].
//!
//! Not here: StoreKit 2 signed transactions (verified offline), claiming
//! transactions (the ledger) and posting results (the pipeline).
//!
//! Status codes: <https://developer.apple.com/documentation/appstorereceipts/status>.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::domain::{Transaction, Validation};
use crate::ports::{ReceiptValidator, ValidatorError};

/// Apple's production verifyReceipt endpoint.
pub const PRODUCTION_URL: &str = "https://buy.itunes.apple.com/verifyReceipt";
/// Apple's sandbox verifyReceipt endpoint.
pub const SANDBOX_URL: &str = "https://sandbox.itunes.apple.com/verifyReceipt";

/// Largest response body read from Apple: app receipts with long purchase
/// histories answer with a few MiB at most; anything bigger is not Apple.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest a TCP + TLS handshake may take (bounded by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to ask Apple. `Debug` redacts the shared secret.
#[derive(Clone)]
pub struct AppleConfig {
    pub production_url: String,
    pub sandbox_url: String,
    /// The app's shared secret (`password`), needed for auto-renewable
    /// subscriptions; an empty string counts as none.
    pub shared_secret: Option<String>,
    /// Attempts per receipt, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; it doubles per retry.
    pub initial_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
    /// Budget of one HTTP request (connect, send, read the answer).
    pub request_timeout: Duration,
}

impl Default for AppleConfig {
    fn default() -> Self {
        Self {
            production_url: PRODUCTION_URL.to_owned(),
            sandbox_url: SANDBOX_URL.to_owned(),
            shared_secret: None,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for AppleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppleConfig")
            .field("production_url", &self.production_url)
            .field("sandbox_url", &self.sandbox_url)
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Which verifyReceipt endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Production,
    Sandbox,
}

impl Endpoint {
    /// The metric label.
    fn label(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }

    /// How Apple spells the environment in `environment`.
    fn environment(self) -> &'static str {
        match self {
            Self::Production => "Production",
            Self::Sandbox => "Sandbox",
        }
    }
}

/// The verifyReceipt client. One pooled HTTP client serves every call.
pub struct VerifyReceiptClient {
    http: reqwest::Client,
    production_url: reqwest::Url,
    sandbox_url: reqwest::Url,
    shared_secret: Option<Zeroizing<String>>,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl fmt::Debug for VerifyReceiptClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyReceiptClient")
            .field("production_url", &self.production_url.as_str())
            .field("sandbox_url", &self.sandbox_url.as_str())
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl VerifyReceiptClient {
    /// Builds the client; a refused URL or budget is a `Config` error.
    pub fn new(config: AppleConfig) -> Result<Self, ValidatorError> {
        let production_url = parse_url("production_url", &config.production_url)?;
        let sandbox_url = parse_url("sandbox_url", &config.sandbox_url)?;
        if config.max_attempts == 0 {
            return Err(ValidatorError::Config(
                "max_attempts must be at least 1".into(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(ValidatorError::Config(
                "request_timeout must be more than 0".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // Apple never redirects verifyReceipt; a redirect means a wrong URL,
            // and following it would turn the POST into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("quintet-receipts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ValidatorError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            production_url,
            sandbox_url,
            shared_secret: config
                .shared_secret
                .filter(|s| !s.is_empty())
                .map(Zeroizing::new),
            max_attempts: config.max_attempts,
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff,
        })
    }

    /// One attempt: asks `start`, hopping at most once each way between
    /// production and sandbox. Returns the step and the endpoint that gave it.
    async fn attempt(&self, body: &bytes::Bytes, start: Endpoint) -> (Step, Endpoint) {
        let mut endpoint = start;
        let mut hopped_to_sandbox = false;
        let mut hopped_to_production = false;
        loop {
            let answer = self.ask(endpoint, body.clone()).await;
            match step(endpoint, answer) {
                Step::Redirect(to) if to != endpoint => {
                    let hopped = match to {
                        Endpoint::Sandbox => &mut hopped_to_sandbox,
                        Endpoint::Production => &mut hopped_to_production,
                    };
                    if *hopped {
                        return (ping_pong(), endpoint);
                    }
                    *hopped = true;
                    endpoint = to;
                }
                // Sandbox saying "ask sandbox" (or production "ask production").
                Step::Redirect(_) => return (ping_pong(), endpoint),
                other => return (other, endpoint),
            }
        }
    }

    /// One HTTP request, measured and counted.
    async fn ask(&self, endpoint: Endpoint, body: bytes::Bytes) -> Answer {
        let url = match endpoint {
            Endpoint::Production => &self.production_url,
            Endpoint::Sandbox => &self.sandbox_url,
        };
        let started = Instant::now();
        let sent = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let answer = match sent {
            Ok(response) if response.status().is_success() => match read_bounded(response).await {
                Ok(bytes) => parse_response(&bytes).map_or_else(Answer::BadBody, Answer::Apple),
                Err(answer) => answer,
            },
            Ok(response) => Answer::Http(response.status().as_u16()),
            Err(e) => transport_answer(&e),
        };
        metrics::histogram!(crate::metrics::APPLE_REQUEST_SECONDS, "environment" => endpoint.label())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(
            crate::metrics::APPLE_REQUESTS_TOTAL,
            "environment" => endpoint.label(),
            "status" => answer.metric_label(),
        )
        .increment(1);
        answer
    }
}

#[async_trait]
impl ReceiptValidator for VerifyReceiptClient {
    async fn validate(&self, receipt: &str) -> Result<Validation, ValidatorError> {
        let body = request_body(receipt, self.shared_secret.as_ref().map(|s| s.as_str()))?;
        // Retries start where the last attempt ended: a sandbox receipt that
        // met a transient error at sandbox needs no second trip via production.
        let mut start = Endpoint::Production;
        let mut attempt = 1;
        loop {
            let (step, endpoint) = self.attempt(&body, start).await;
            start = endpoint;
            match step {
                Step::Done(validation) => {
                    if let Validation::Invalid { reason, .. } = &validation {
                        tracing::debug!(environment = endpoint.label(), %reason, "receipt refused");
                    }
                    return Ok(validation);
                }
                Step::Fail(error) => {
                    match &error {
                        ValidatorError::Config(reason) => tracing::error!(
                            environment = endpoint.label(),
                            %reason,
                            "verifyReceipt refuses our configuration; no receipt can be validated until an operator fixes it"
                        ),
                        ValidatorError::Unavailable(reason) => tracing::error!(
                            environment = endpoint.label(),
                            %reason,
                            "verifyReceipt refused the request; is the URL right?"
                        ),
                    }
                    return Err(error);
                }
                Step::Retry { reason, exhausted } => {
                    if attempt >= self.max_attempts {
                        tracing::warn!(
                            environment = endpoint.label(),
                            attempts = attempt,
                            %reason,
                            "verifyReceipt retries exhausted"
                        );
                        return exhausted;
                    }
                    let ceiling = backoff_ceiling(attempt, self.initial_backoff, self.max_backoff);
                    let pause = full_jitter(ceiling, &mut rand::rng());
                    tracing::debug!(
                        environment = endpoint.label(),
                        attempt,
                        pause_ms = pause.as_millis(),
                        %reason,
                        "verifyReceipt retry"
                    );
                    metrics::counter!(crate::metrics::APPLE_RETRIES_TOTAL).increment(1);
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Step::Redirect(_) => unreachable!("attempt() resolves redirects"),
            }
        }
    }
}

fn parse_url(field: &str, text: &str) -> Result<reqwest::Url, ValidatorError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| ValidatorError::Config(format!("{field} '{text}': {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ValidatorError::Config(format!(
            "{field} '{text}': only http and https are supported"
        )));
    }
    Ok(url)
}

#[derive(Serialize)]
struct VerifyRequest<'a> {
    #[serde(rename = "receipt-data")]
    receipt_data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(rename = "exclude-old-transactions")]
    exclude_old_transactions: bool,
}

/// The JSON body, serialised once per receipt and shared by every request.
fn request_body(receipt: &str, password: Option<&str>) -> Result<bytes::Bytes, ValidatorError> {
    let request = VerifyRequest {
        receipt_data: receipt,
        password,
        exclude_old_transactions: false,
    };
    serde_json::to_vec(&request)
        .map(bytes::Bytes::from)
        .map_err(|e| ValidatorError::Unavailable(format!("encoding the request: {e}")))
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, Answer> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(Answer::BadBody(format!(
            "response is over {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_answer(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Answer::BadBody(format!(
                "response is over {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_answer(error: &reqwest::Error) -> Answer {
    if error.is_timeout() {
        return Answer::Timeout;
    }
    // The top-level message is terse ("error sending request"); the cause says why.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Answer::Transport(text)
}

/// What one HTTP request to verifyReceipt came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// HTTP 2xx with a JSON body that has a `status`.
    Apple(AppleResponse),
    /// Any other HTTP status.
    Http(u16),
    Timeout,
    Transport(String),
    /// HTTP 2xx whose body is not a verifyReceipt answer.
    BadBody(String),
}

impl Answer {
    /// The `status` label: Apple's status, or what failed. Unknown Apple
    /// statuses share one label so a misbehaving server cannot grow the series.
    fn metric_label(&self) -> String {
        match self {
            Self::Apple(r) if is_known_status(r.status) => r.status.to_string(),
            Self::Apple(_) => "other".into(),
            Self::Http(429) => "http_429".into(),
            Self::Http(code) if *code >= 500 => "http_5xx".into(),
            Self::Http(code) if *code >= 400 => "http_4xx".into(),
            Self::Http(_) => "http_other".into(),
            Self::Timeout => "timeout".into(),
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
struct AppleResponse {
    status: i64,
    environment: Option<String>,
    is_retryable: bool,
    /// From `receipt.in_app[]` and `receipt.transaction_id`, deduplicated,
    /// in the order Apple gave them.
    transactions: Vec<Transaction>,
}

/// Parses a verifyReceipt body. Only `status` is required; the receipt is
/// read leniently (Apple's field types have varied: ids as strings or numbers).
fn parse_response(body: &[u8]) -> Result<AppleResponse, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "response is not a JSON object".to_owned())?;
    let status = object
        .get("status")
        .and_then(Value::as_i64)
        .ok_or_else(|| "response has no integer status".to_owned())?;
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

/// What to do after one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Final: the receipt's verdict.
    Done(Validation),
    /// Final: give up on this receipt for now (or for good: misconfigured).
    Fail(ValidatorError),
    /// Ask the other environment (21007, 21008).
    Redirect(Endpoint),
    /// Transient: try again after a backoff; `exhausted` once out of attempts.
    Retry {
        reason: String,
        exhausted: Result<Validation, ValidatorError>,
    },
}

/// Refused; `transactions` are those Apple's answer still named.
fn invalid(reason: impl Into<String>, transactions: Vec<Transaction>) -> Validation {
    Validation::Invalid {
        reason: reason.into(),
        transactions,
    }
}

fn retry_then_unavailable(reason: String) -> Step {
    Step::Retry {
        exhausted: Err(ValidatorError::Unavailable(reason.clone())),
        reason,
    }
}

fn ping_pong() -> Step {
    retry_then_unavailable(
        "verifyReceipt keeps sending the receipt between production and sandbox".into(),
    )
}

/// Classifies one answer from `endpoint` (Apple's status table, plus HTTP
/// and transport failures).
fn step(endpoint: Endpoint, answer: Answer) -> Step {
    let response = match answer {
        Answer::Apple(response) => response,
        Answer::Http(code) if code == 429 || code >= 500 => {
            return retry_then_unavailable(format!("verifyReceipt answered HTTP {code}"));
        }
        Answer::Http(code) => {
            return Step::Fail(ValidatorError::Unavailable(format!(
                "verifyReceipt answered HTTP {code}"
            )));
        }
        Answer::Timeout => {
            return retry_then_unavailable("verifyReceipt did not answer in time".into());
        }
        Answer::Transport(e) => return retry_then_unavailable(format!("verifyReceipt: {e}")),
        Answer::BadBody(e) => return retry_then_unavailable(format!("verifyReceipt: {e}")),
    };
    // A refusal keeps the transactions Apple's answer names: 21006 (valid,
    // but the subscription expired) comes with the receipt, and the original
    // worker posted INVALID with its transaction_id.
    let named = response.transactions;
    match response.status {
        0 if named.is_empty() => Step::Done(Validation::invalid("receipt holds no transaction")),
        0 => Step::Done(Validation::Valid {
            environment: response
                .environment
                .unwrap_or_else(|| endpoint.environment().to_owned()),
            transactions: named,
        }),
        21007 => Step::Redirect(Endpoint::Sandbox),
        21008 => Step::Redirect(Endpoint::Production),
        // Apple answers 21002 for truncated uploads and during incidents as
        // well as for garbage, so it gets the same budget before it is final.
        21002 => Step::Retry {
            reason: "21002: the receipt data is malformed".into(),
            exhausted: Ok(invalid("21002: the receipt data is malformed", named)),
        },
        21005 => {
            retry_then_unavailable("21005: the receipt server is temporarily unavailable".into())
        }
        21009 => retry_then_unavailable("21009: internal data access error".into()),
        status @ 21100..=21199 if response.is_retryable => {
            retry_then_unavailable(format!("{status}: internal data access error (retryable)"))
        }
        status @ 21100..=21199 => Step::Done(invalid(
            format!("{status}: internal data access error"),
            named,
        )),
        21003 => Step::Done(invalid(
            "21003: the receipt could not be authenticated",
            named,
        )),
        21006 => Step::Done(invalid(
            "21006: the receipt is valid but the subscription has expired",
            named,
        )),
        21010 => Step::Done(invalid(
            "21010: the user account cannot be found or has been deleted",
            named,
        )),
        21004 => Step::Fail(ValidatorError::Config(
            "21004: the shared secret does not match the one on the account".into(),
        )),
        status => Step::Done(invalid(format!("apple status {status}"), named)),
    }
}

/// The backoff ceiling before retry number `retry` (1-based):
/// `initial · 2^(retry-1)`, capped at `max`, without overflow.
fn backoff_ceiling(retry: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.checked_mul(factor).unwrap_or(max).min(max)
}

/// "Full jitter": a uniform pause in `0..=ceiling`, so clients that failed
/// together do not retry together.
fn full_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn apple(body: Value) -> Answer {
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
    fn status_0_is_valid_and_environment_defaults_to_the_endpoint() {
        let body = json!({"status": 0, "receipt": {"transaction_id": "7", "product_id": "p"}});
        assert_eq!(
            step(Endpoint::Production, apple(body.clone())),
            Step::Done(Validation::Valid {
                environment: "Production".into(),
                transactions: vec![txn("7", Some("p"))]
            })
        );
        assert!(matches!(
            step(Endpoint::Sandbox, apple(body)),
            Step::Done(Validation::Valid { environment, .. }) if environment == "Sandbox"
        ));
        assert_eq!(
            step(
                Endpoint::Production,
                apple(json!({"status": 0, "receipt": {"in_app": []}}))
            ),
            Step::Done(Validation::invalid("receipt holds no transaction"))
        );
    }

    #[test]
    fn apple_statuses_map_to_the_contract() {
        let at = |body: Value| step(Endpoint::Production, apple(body));
        assert_eq!(
            at(json!({"status": 21007})),
            Step::Redirect(Endpoint::Sandbox)
        );
        assert_eq!(
            at(json!({"status": 21008})),
            Step::Redirect(Endpoint::Production)
        );

        let unavailable_after_retries = |s: Step| {
            matches!(
                s,
                Step::Retry {
                    exhausted: Err(ValidatorError::Unavailable(_)),
                    ..
                }
            )
        };
        assert!(unavailable_after_retries(at(json!({"status": 21005}))));
        assert!(unavailable_after_retries(at(json!({"status": 21009}))));
        assert!(unavailable_after_retries(at(
            json!({"status": 21100, "is-retryable": true})
        )));
        assert!(unavailable_after_retries(at(
            json!({"status": 21199, "is-retryable": 1})
        )));
        assert!(matches!(
            at(json!({"status": 21002})),
            Step::Retry { exhausted: Ok(Validation::Invalid { reason, .. }), .. } if reason.starts_with("21002")
        ));

        for (status, retryable) in [
            (21003, false),
            (21010, false),
            (21150, false),
            (21000, false),
            (21006, false),
        ] {
            match at(json!({"status": status, "is-retryable": retryable})) {
                Step::Done(Validation::Invalid { reason, .. }) => {
                    assert!(reason.contains(&status.to_string()), "{status}: {reason}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        assert_eq!(
            at(json!({"status": 42})),
            Step::Done(Validation::invalid("apple status 42"))
        );
        // A refusal that comes with a receipt (21006: valid, but expired)
        // keeps its transactions; one without names none.
        assert_eq!(
            at(json!({"status": 21006, "receipt": {"transaction_id": "7", "product_id": "p"}})),
            Step::Done(invalid(
                "21006: the receipt is valid but the subscription has expired",
                vec![txn("7", Some("p"))]
            ))
        );
        assert!(matches!(
            at(json!({"status": 21003})),
            Step::Done(Validation::Invalid { transactions, .. }) if transactions.is_empty()
        ));
        assert!(
            matches!(at(json!({"status": 21004})), Step::Fail(ValidatorError::Config(r)) if r.starts_with("21004"))
        );
    }

    #[test]
    fn http_and_transport_failures_retry_except_plain_4xx() {
        let s = |a: Answer| step(Endpoint::Sandbox, a);
        for answer in [
            Answer::Http(500),
            Answer::Http(503),
            Answer::Http(429),
            Answer::Timeout,
            Answer::Transport("connection refused".into()),
            Answer::BadBody("not JSON".into()),
        ] {
            assert!(
                matches!(
                    s(answer.clone()),
                    Step::Retry {
                        exhausted: Err(ValidatorError::Unavailable(_)),
                        ..
                    }
                ),
                "{answer:?}"
            );
        }
        for code in [301, 400, 404] {
            assert!(
                matches!(s(Answer::Http(code)), Step::Fail(ValidatorError::Unavailable(r)) if r.contains(&code.to_string()))
            );
        }
    }

    #[test]
    fn metric_labels_stay_bounded() {
        assert_eq!(apple(json!({"status": 21007})).metric_label(), "21007");
        assert_eq!(apple(json!({"status": 123456})).metric_label(), "other");
        assert_eq!(Answer::Http(502).metric_label(), "http_5xx");
        assert_eq!(Answer::Http(429).metric_label(), "http_429");
        assert_eq!(Answer::Http(404).metric_label(), "http_4xx");
        assert_eq!(Answer::Timeout.metric_label(), "timeout");
        assert_eq!(Answer::Transport(String::new()).metric_label(), "transport");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_without_overflow() {
        let ms = Duration::from_millis;
        let ceilings: Vec<_> = (1..=6)
            .map(|r| backoff_ceiling(r, ms(100), ms(1000)))
            .collect();
        assert_eq!(
            ceilings,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff_ceiling(u32::MAX, ms(100), ms(5000)), ms(5000));
        assert_eq!(
            backoff_ceiling(40, Duration::MAX, Duration::MAX),
            Duration::MAX
        );
        assert_eq!(backoff_ceiling(1, Duration::ZERO, ms(5)), Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let mut rng = rand::rng();
        let ceiling = Duration::from_millis(10);
        let pauses: Vec<_> = (0..200).map(|_| full_jitter(ceiling, &mut rng)).collect();
        assert!(pauses.iter().all(|p| *p <= ceiling));
        assert!(pauses.iter().any(|p| *p < ceiling / 2));
        assert!(pauses.iter().any(|p| *p > ceiling / 2));
        assert_eq!(full_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
        assert!(full_jitter(Duration::MAX, &mut rng) <= Duration::MAX);
    }

    #[test]
    fn the_request_body_has_apples_field_names_and_debug_hides_the_secret() {
        let body = request_body("ewo=", Some("s3cret")).expect("body");
        let value: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            value,
            json!({"receipt-data": "ewo=", "password": "s3cret", "exclude-old-transactions": false})
        );
        let without: Value =
            serde_json::from_slice(&request_body("ewo=", None).expect("body")).expect("json");
        assert_eq!(without.get("password"), None);

        let config = AppleConfig {
            shared_secret: Some("s3cret".into()),
            ..AppleConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cret"));
        let client = VerifyReceiptClient::new(config).expect("client");
        let debug = format!("{client:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("[redacted]"),
            "{debug}"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        let refused = |config: AppleConfig| {
            matches!(
                VerifyReceiptClient::new(config),
                Err(ValidatorError::Config(_))
            )
        };
        assert!(refused(AppleConfig {
            production_url: "not a url".into(),
            ..AppleConfig::default()
        }));
        assert!(refused(AppleConfig {
            sandbox_url: "ftp://x/verifyReceipt".into(),
            ..AppleConfig::default()
        }));
        assert!(refused(AppleConfig {
            max_attempts: 0,
            ..AppleConfig::default()
        }));
        assert!(refused(AppleConfig {
            request_timeout: Duration::ZERO,
            ..AppleConfig::default()
        }));
        let defaults = AppleConfig::default();
        assert_eq!(
            defaults.production_url,
            "https://buy.itunes.apple.com/verifyReceipt"
        );
        assert_eq!(
            defaults.sandbox_url,
            "https://sandbox.itunes.apple.com/verifyReceipt"
        );
        assert_eq!(
            (defaults.max_attempts, defaults.request_timeout),
            (5, Duration::from_secs(10))
        );
    }
}
