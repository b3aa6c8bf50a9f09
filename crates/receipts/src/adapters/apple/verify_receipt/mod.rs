//! The legacy App Store `verifyReceipt` client: a [`ReceiptValidator`] that
//! posts a base64 receipt to Apple (production first, sandbox on 21007, back
//! to production on 21008), retries Apple's transient answers with
//! exponential backoff and full jitter, and turns the final answer into a
//! [`Validation`] or a [`ValidatorError`].
//!
//! Here: the HTTP client and its retry loop. [`answer`] reads what Apple
//! answers; [`policy`] decides what each answer means (Apple's status table)
//! and how long to wait before a retry.
//!
//! Not here: `StoreKit` 2 signed transactions (verified offline), claiming
//! transactions (the ledger) and posting results (the pipeline).

pub mod answer;
mod policy;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::Retryable as _;
use platform::backend::{BackendError, FailureKind, chain};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tracing::Instrument;

use crate::domain::Validation;
use crate::ports::{ReceiptValidator, ValidatorError};
use answer::{
    Answer, BadAnswer, MAX_RESPONSE_BYTES, TransportError, TransportKind, parse_response,
};
use policy::{Endpoint, Step, ping_pong, step};

/// Apple's production verifyReceipt endpoint.
pub const PRODUCTION_URL: &str = "https://buy.itunes.apple.com/verifyReceipt";
/// Apple's sandbox verifyReceipt endpoint.
pub const SANDBOX_URL: &str = "https://sandbox.itunes.apple.com/verifyReceipt";

/// Longest a TCP + TLS handshake may take (bounded by the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to ask Apple. `Debug` redacts the shared secret.
#[derive(Clone)]
pub struct AppleConfig {
    /// Apple's production endpoint (or a simulator's).
    pub production_url: String,
    /// The sandbox endpoint, asked when production answers 21007.
    pub sandbox_url: String,
    /// The app's shared secret (`password`), needed for auto-renewable
    /// subscriptions; an empty string counts as none.
    pub shared_secret: Option<SecretString>,
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

/// A verifyReceipt client that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    /// A verifyReceipt URL that cannot be used.
    #[error("{field} '{text}': {problem}")]
    Url {
        /// The option (`production_url`, `sandbox_url`).
        field: &'static str,
        /// Its value.
        text: String,
        /// What is wrong with it.
        #[source]
        problem: UrlProblem,
    },
    /// A budget that cannot work.
    #[error("{0}")]
    Budget(&'static str),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// What is wrong with a configured URL.
#[derive(Debug, thiserror::Error)]
pub enum UrlProblem {
    /// It does not parse.
    #[error("{0}")]
    Parse(#[source] url::ParseError),
    /// Its scheme is not http or https.
    #[error("only http and https are supported")]
    Scheme,
}

/// Why verifyReceipt gave no verdict: the source of the
/// [`ValidatorError`]'s [`BackendError`].
#[derive(Debug, thiserror::Error)]
pub enum AppleError {
    /// An HTTP status that is not an answer (429 and 5xx are retried).
    #[error("verifyReceipt answered HTTP {0}")]
    Status(u16),
    /// No HTTP answer (timeout, connection, reading): retried.
    #[error(transparent)]
    Transport(TransportError),
    /// An answer that is not verifyReceipt's: retried.
    #[error("verifyReceipt: {0}")]
    BadAnswer(#[source] BadAnswer),
    /// Apple says to try later: retried.
    #[error("{status}: {meaning}")]
    Apple {
        /// Apple's status.
        status: i64,
        /// What Apple's table says it means.
        meaning: &'static str,
    },
    /// Production and sandbox keep sending the receipt to each other.
    #[error("verifyReceipt keeps sending the receipt between production and sandbox")]
    PingPong,
    /// Apple 21004: the shared secret is not the account's (a configuration error).
    #[error("21004: the shared secret does not match the one on the account")]
    SharedSecret,
    /// The request body could not be encoded.
    #[error("encoding the request: {0}")]
    Encoding(#[source] serde_json::Error),
}

impl AppleError {
    /// The kind of failure, as the platform names them.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Status(429) => FailureKind::Throttled,
            Self::Status(code) if *code >= 500 => FailureKind::Unreachable,
            Self::Status(_) | Self::SharedSecret => FailureKind::Rejected,
            Self::Transport(e) => match e.kind {
                TransportKind::Timeout => FailureKind::Timeout,
                TransportKind::Connect => FailureKind::Unreachable,
                TransportKind::Other => FailureKind::Other,
            },
            Self::Apple { .. } => FailureKind::Unreachable,
            Self::BadAnswer(_) | Self::PingPong | Self::Encoding(_) => FailureKind::Other,
        }
    }

    fn into_backend(self) -> BackendError {
        BackendError::new("apple", "verifyReceipt", self.kind(), self)
    }
}

/// The verifyReceipt client. One pooled HTTP client serves every call.
pub struct VerifyReceiptClient {
    http: reqwest::Client,
    production_url: reqwest::Url,
    sandbox_url: reqwest::Url,
    shared_secret: Option<SecretString>,
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
    /// Builds the client; a URL or budget that cannot work is refused.
    pub fn new(config: AppleConfig) -> Result<Self, ClientConfigError> {
        let production_url = parse_url("production_url", &config.production_url)?;
        let sandbox_url = parse_url("sandbox_url", &config.sandbox_url)?;
        if config.max_attempts == 0 {
            return Err(ClientConfigError::Budget("max_attempts must be at least 1"));
        }
        if config.request_timeout.is_zero() {
            return Err(ClientConfigError::Budget(
                "request_timeout must be more than 0",
            ));
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_mins(1))
            // Apple never redirects verifyReceipt; a redirect means a wrong URL,
            // and following it would turn the POST into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("quintet-receipts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientConfigError::Http)?;
        Ok(Self {
            http,
            production_url,
            sandbox_url,
            shared_secret: config
                .shared_secret
                .filter(|s| !s.expose_secret().is_empty()),
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
        // A client span, its context sent along as `traceparent` (only when
        // traces are exported).
        let span = if platform::trace::enabled() {
            tracing::info_span!(
                "apple verifyReceipt",
                otel.kind = "client",
                apple.environment = endpoint.label(),
                http.request.method = "POST",
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let mut headers = reqwest::header::HeaderMap::new();
        span.in_scope(|| platform::trace::inject(&mut headers));
        let sent = self
            .http
            .post(url.clone())
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .instrument(span.clone())
            .await;
        if let Ok(response) = &sent {
            span.record("http.response.status_code", response.status().as_u16());
        }
        let answer = match sent {
            Ok(response) if response.status().is_success() => match read_bounded(response).await {
                Ok(bytes) => parse_response(&bytes).map_or_else(Answer::BadBody, Answer::Apple),
                Err(answer) => answer,
            },
            Ok(response) => Answer::Http(response.status().as_u16()),
            Err(e) => Answer::Transport(TransportError::from_reqwest(e)),
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
        let body = request_body(
            receipt,
            self.shared_secret.as_ref().map(ExposeSecret::expose_secret),
        )
        .map_err(|e| unavailable(AppleError::Encoding(e)))?;
        // Retries start where the last attempt ended: a sandbox receipt that
        // met a transient error at sandbox needs no second trip via production.
        let start = Mutex::new(Endpoint::Production);
        let attempts = AtomicU32::new(0);
        let attempt = || async {
            let from = *start.lock().unwrap_or_else(PoisonError::into_inner);
            attempts.fetch_add(1, Ordering::Relaxed);
            let (step, endpoint) = self.attempt(&body, from).await;
            *start.lock().unwrap_or_else(PoisonError::into_inner) = endpoint;
            match step {
                Step::Done(validation) => Ok((validation, endpoint)),
                Step::Fail(error) => Err(Attempt::Final(error, endpoint)),
                Step::Retry(exhausted) => Err(Attempt::Transient(exhausted, endpoint)),
                // attempt() resolves redirects; one left is a ping-pong.
                Step::Redirect(_) => Err(Attempt::Transient(Err(AppleError::PingPong), endpoint)),
            }
        };
        let outcome = attempt
            .retry(policy::backoff(
                self.max_attempts,
                self.initial_backoff,
                self.max_backoff,
            ))
            .sleep(tokio::time::sleep)
            .when(|failed| matches!(failed, Attempt::Transient(..)))
            .notify(|failed, pause| {
                if let Attempt::Transient(exhausted, endpoint) = failed {
                    tracing::debug!(
                        environment = endpoint.label(),
                        attempt = attempts.load(Ordering::Relaxed),
                        pause_ms = pause.as_millis(),
                        reason = %transient_reason(exhausted),
                        "verifyReceipt retry"
                    );
                }
                ::metrics::counter!(crate::metrics::APPLE_RETRIES_TOTAL).increment(1);
            })
            .await;
        match outcome {
            Ok((validation, endpoint)) => {
                if let Validation::Invalid { reason, .. } = &validation {
                    tracing::debug!(environment = endpoint.label(), %reason, "receipt refused");
                }
                Ok(validation)
            }
            Err(Attempt::Final(error, endpoint)) => {
                if matches!(error, AppleError::SharedSecret) {
                    tracing::error!(
                        environment = endpoint.label(),
                        reason = %error,
                        "verifyReceipt refuses our configuration; no receipt can be validated until an operator fixes it"
                    );
                    Err(ValidatorError::Config(error.into_backend()))
                } else {
                    tracing::error!(
                        environment = endpoint.label(),
                        reason = %error,
                        "verifyReceipt refused the request; is the URL right?"
                    );
                    Err(unavailable(error))
                }
            }
            Err(Attempt::Transient(exhausted, endpoint)) => {
                tracing::warn!(
                    environment = endpoint.label(),
                    attempts = attempts.load(Ordering::Relaxed),
                    reason = %transient_reason(&exhausted),
                    "verifyReceipt retries exhausted"
                );
                exhausted.map_err(unavailable)
            }
        }
    }
}

/// How one attempt failed, for the retry loop.
enum Attempt {
    /// Worth another try; the outcome if none is left.
    Transient(Result<Validation, AppleError>, Endpoint),
    /// No retry helps.
    Final(AppleError, Endpoint),
}

/// What a transient outcome says, for the log.
fn transient_reason(exhausted: &Result<Validation, AppleError>) -> String {
    match exhausted {
        Ok(Validation::Invalid { reason, .. }) => reason.clone(),
        Ok(Validation::Valid { .. }) => "valid".into(),
        Err(error) => chain(error),
    }
}

fn unavailable(error: AppleError) -> ValidatorError {
    ValidatorError::Unavailable(error.into_backend())
}

fn parse_url(field: &'static str, text: &str) -> Result<reqwest::Url, ClientConfigError> {
    let refused = |problem| ClientConfigError::Url {
        field,
        text: text.to_owned(),
        problem,
    };
    let url = reqwest::Url::parse(text).map_err(|e| refused(UrlProblem::Parse(e)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused(UrlProblem::Scheme));
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
fn request_body(receipt: &str, password: Option<&str>) -> Result<bytes::Bytes, serde_json::Error> {
    let request = VerifyRequest {
        receipt_data: receipt,
        password,
        exclude_old_transactions: false,
    };
    serde_json::to_vec(&request).map(bytes::Bytes::from)
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, Answer> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(Answer::BadBody(BadAnswer::TooLarge));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Answer::Transport(TransportError::from_reqwest(e)))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Answer::BadBody(BadAnswer::TooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
                Err(ClientConfigError::Url { .. } | ClientConfigError::Budget(_))
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
