//! Shared AWS SDK set-up for every adapter on an AWS API (kv's DynamoDB
//! store and KMS provider, receipts' SQS queue and DynamoDB ledger): region,
//! endpoint override (moto, LocalStack, VPC endpoints), credentials, retry
//! and timeouts, the HTTPS client, and one way to describe a failed call.
//!
//! The HTTPS client is built here on rustls with the *ring* provider, as the
//! rest of the workspace is: the SDK's `default-https-client` feature would
//! pull in aws-lc-rs (a C/CMake build) for nothing.
//!
//! Credentials come from the SDK's standard chain (environment, profile, web
//! identity, ECS, IMDS) unless [`AwsSettings::static_credentials`] is set,
//! which is for tests against moto (it accepts any key) so they need not
//! touch the process environment. Not here: any service SDK (this module
//! depends on the smithy runtime types only) or anything service-specific,
//! except the DynamoDB table set-up two adapters share ([`dynamodb`]).

pub mod dynamodb;

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::backend::{BackendError, BoxError, FailureKind};

/// The region used when none is configured anywhere (settings, environment, profile).
pub const DEFAULT_REGION: &str = "us-east-1";

/// How a service reaches AWS (or an AWS-compatible endpoint such as moto).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Endpoint override for every service, e.g. `http://127.0.0.1:5000` for moto.
    /// `None`: the SDK's own resolution (including `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region; `None`: the standard chain (`AWS_REGION`, profile, IMDS), then `us-east-1`.
    pub region: Option<String>,
    /// Attempts per call including the first (standard retry mode: exponential
    /// backoff with jitter, throttling and transient errors retried). At least 1.
    pub max_attempts: u32,
    /// Longest wait for a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Longest one call may take, retries included.
    pub operation_timeout: Duration,
    /// Fixed credentials instead of the standard chain (tests against moto).
    pub static_credentials: Option<StaticCredentials>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
            static_credentials: None,
        }
    }
}

impl AwsSettings {
    /// Defaults with every service at `endpoint` (moto, LocalStack).
    pub fn with_endpoint(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            ..Self::default()
        }
    }

    /// Settings for a moto server at `endpoint`: region `us-east-1` and
    /// dummy static credentials (moto accepts any).
    pub fn moto(endpoint: impl Into<String>) -> Self {
        Self {
            region: Some(DEFAULT_REGION.to_owned()),
            static_credentials: Some(StaticCredentials::new("testing", "testing")),
            ..Self::with_endpoint(endpoint)
        }
    }
}

/// One `key=value` of a URL query, percent-decoded.
pub type QueryPair = (String, String);

/// A URL query parameter [`AwsSettings::from_query`] cannot take; never
/// repeats a value (a mistyped parameter may hold a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsQueryError {
    /// `endpoint=` is not an `http://` or `https://` URL with a host.
    #[error("endpoint= must be an http:// or https:// URL")]
    Endpoint,
    /// `endpoint=` carries a user or password: credentials never come from a URL.
    #[error(
        "endpoint= must not carry a user or password: credentials come from the AWS SDK's \
         standard chain"
    )]
    EndpointCredentials,
    /// `region=` is empty or too long.
    #[error("region= must name a region, e.g. us-east-1")]
    Region,
    /// `max_attempts=` is not a number from 1 to 20.
    #[error("max_attempts= must be a number from 1 to 20")]
    MaxAttempts,
    /// A parameter nobody takes.
    #[error("unknown parameter '{name}' (known: {known})")]
    Unknown {
        /// The parameter's name (at most 40 characters of it).
        name: String,
        /// The parameters that are taken, comma separated.
        known: String,
    },
}

impl AwsSettings {
    /// Settings from the query of a `dynamodb://…`, `aws-kms://…` or `sqs://…` URL
    /// (`url::Url::query`, without the `?`): `endpoint=<url>`, `region=<name>`,
    /// `max_attempts=<n>`, percent-encoded as in any URL query. The pairs whose
    /// key is in `extra` are returned for the caller; any other key is an
    /// error naming it. Credentials are never taken from a URL: they come
    /// from the SDK's standard chain.
    pub fn from_query(
        query: &str,
        extra: &[&str],
    ) -> Result<(Self, Vec<QueryPair>), AwsQueryError> {
        let mut settings = Self::default();
        let mut rest = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "endpoint" => settings.endpoint = Some(endpoint(&value)?),
                "region" if !value.is_empty() && value.len() <= 64 => {
                    settings.region = Some(value.into_owned());
                }
                "region" => return Err(AwsQueryError::Region),
                "max_attempts" => {
                    settings.max_attempts = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=20).contains(n))
                        .ok_or(AwsQueryError::MaxAttempts)?;
                }
                key if extra.contains(&key) => rest.push((key.to_owned(), value.into_owned())),
                other => {
                    let mut known = vec!["endpoint", "region", "max_attempts"];
                    known.extend_from_slice(extra);
                    return Err(AwsQueryError::Unknown {
                        name: other.chars().take(40).collect(),
                        known: known.join(", "),
                    });
                }
            }
        }
        Ok((settings, rest))
    }
}

/// An `endpoint=` value: an `http(s)://` URL with a host and no user or
/// password, without a trailing `/`.
fn endpoint(value: &str) -> Result<String, AwsQueryError> {
    let url = url::Url::parse(value).map_err(|_| AwsQueryError::Endpoint)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(AwsQueryError::Endpoint);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AwsQueryError::EndpointCredentials);
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("static_credentials", &self.static_credentials)
            .finish()
    }
}

/// An access key pair given directly. `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id (not secret: it names the key).
    pub access_key_id: String,
    /// The secret access key; never printed.
    pub secret_access_key: String,
}

impl StaticCredentials {
    /// The pair of `access_key_id` and `secret_access_key`.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// The SDK configuration every AWS adapter builds its client from.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .operation_timeout(settings.operation_timeout)
                .build(),
        );
    // Without an explicit region the loader runs the standard chain itself
    // (with the HTTP client above, which IMDS needs).
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some(creds) = &settings.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
            None,
            None,
            "quintet-static",
        ));
    }
    let config = loader.load().await;
    if config.region().is_some() {
        return config;
    }
    config
        .to_builder()
        .region(Region::from_static(DEFAULT_REGION))
        .build()
}

impl BackendError {
    /// A failed AWS SDK call, classified from the SDK's error: timeouts,
    /// connection failures, throttling and missing credentials each their
    /// own kind. The message ([`describe_error`]) never holds
    /// credentials.
    pub fn aws<E, R>(
        engine: &'static str,
        operation: &'static str,
        error: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + StdError
            + Send
            + Sync
            + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        let kind = match &error {
            SdkError::TimeoutError(_) => FailureKind::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => FailureKind::Timeout,
            SdkError::DispatchFailure(_) => {
                if is_credentials_problem(&error) {
                    FailureKind::Rejected
                } else {
                    FailureKind::Unreachable
                }
            }
            SdkError::ServiceError(service) => match service.err().code() {
                Some(code) if is_throttling_code(code) => FailureKind::Throttled,
                Some(
                    "InternalServerError"
                    | "InternalFailure"
                    | "ServiceUnavailable"
                    | "KMSInternalException"
                    | "DependencyTimeoutException",
                ) => FailureKind::Unreachable,
                _ => FailureKind::Rejected,
            },
            _ => FailureKind::Other,
        };
        let text = describe_error(operation, &error);
        Self::new(
            engine,
            operation,
            kind,
            Described {
                text,
                source: error.into(),
            },
        )
    }
}

/// An error with a better one-line description than its own `Display`
/// (the AWS SDK's says only "service error"), keeping the original as source.
#[derive(Debug)]
struct Described {
    text: String,
    source: BoxError,
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for Described {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        // The description already says what the source would; stopping here
        // keeps the chain free of the SDK's request dumps.
        let _ = &self.source;
        None
    }
}

/// Where the SDK's standard chain looks for credentials, in its order: what
/// a user is told when a call found none.
pub const CREDENTIALS_HELP: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
     or AWS_PROFILE with ~/.aws/credentials and ~/.aws/config, or a web identity token \
     (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), or run where ECS or EC2 instance \
     metadata provides a role";

/// A one-line description of a failed SDK call for logs and errors: the
/// operation, then the service's error code and message, or what failed on
/// the way (no credentials, connect, timeout). Never the request, so never
/// credentials.
///
/// Generic over the smithy runtime's error types, which every service SDK
/// re-exports as its own `error::SdkError` and `error::ProvideErrorMetadata`.
pub fn describe_error<E, R>(operation: &str, error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    // Credentials are resolved before the request is sent, so their failure
    // arrives as a dispatch failure whose causes end in an IMDS or profile
    // dump: say what is missing and where it is looked for instead.
    if let Some(problem) = credentials_problem(error) {
        return format!("{operation}: {problem}");
    }
    let text = match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let code = err.code().unwrap_or("unknown service error");
            match err.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.to_owned(),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        // The chain of causes, each by its Display ("dispatch failure: io
        // error: … Connection refused").
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.ends_with(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    };
    let mut text = format!("{operation}: {text}");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Whether a failed call failed because no usable credentials were found.
pub fn is_credentials_problem<E, R>(error: &SdkError<E, R>) -> bool
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    credentials_problem(error).is_some()
}

/// Whether an AWS error code asks the caller to slow down.
#[must_use]
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "SlowDown"
    )
}

/// What the credentials chain reported, when that is why a call failed.
fn credentials_problem<E, R>(error: &SdkError<E, R>) -> Option<String>
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(credentials) = cause.downcast_ref::<CredentialsError>() {
            return Some(match credentials {
                // Every provider of the chain said "not configured here".
                CredentialsError::CredentialsNotLoaded(_) => {
                    format!("no AWS credentials found: {CREDENTIALS_HELP}")
                }
                // A provider was configured (or reachable, like IMDS) and failed.
                other => format!(
                    "AWS credentials could not be loaded ({}): {CREDENTIALS_HELP}",
                    causes(other, 200)
                ),
            });
        }
        source = cause.source();
    }
    None
}

/// An error and its causes as one line, each cause once, at most `limit` bytes.
fn causes(error: &(dyn std::error::Error + 'static), limit: usize) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let text = text.replace('\n', " ");
    if text.len() <= limit {
        return text;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_queries_give_settings_and_name_what_is_wrong() {
        let (settings, rest) = AwsSettings::from_query(
            "endpoint=http://127.0.0.1:5000/&region=eu-west-1&create=true",
            &["create"],
        )
        .expect("valid");
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(rest, vec![("create".to_owned(), "true".to_owned())]);
        let (settings, rest) = AwsSettings::from_query("", &[]).expect("empty is fine");
        assert_eq!(settings, AwsSettings::default());
        assert!(rest.is_empty());

        let err = AwsSettings::from_query("secret_key=hunter2", &[])
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("unknown parameter 'secret_key'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(
            AwsSettings::from_query("endpoint=ftp://x", &[]).err(),
            Some(AwsQueryError::Endpoint)
        );
        assert_eq!(
            AwsSettings::from_query("endpoint=http://", &[]).err(),
            Some(AwsQueryError::Endpoint)
        );
        let err =
            AwsSettings::from_query("endpoint=http://ak:hunter2@h:1", &[]).expect_err("creds");
        assert_eq!(err, AwsQueryError::EndpointCredentials);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // Percent-encoded values are decoded, as in any URL query.
        let (settings, _) =
            AwsSettings::from_query("endpoint=http%3A%2F%2Flocalhost%3A4566", &[]).expect("valid");
        assert_eq!(settings.endpoint.as_deref(), Some("http://localhost:4566"));
        assert!(AwsSettings::from_query("region=", &[]).is_err());
        assert!(AwsSettings::from_query("max_attempts=0", &[]).is_err());
    }

    #[derive(Debug)]
    struct Refused(aws_smithy_types::error::metadata::ErrorMetadata);

    impl Refused {
        fn new() -> Self {
            Self(
                aws_smithy_types::error::metadata::ErrorMetadata::builder()
                    .code("QueueDoesNotExist")
                    .message("The specified queue does not exist.")
                    .build(),
            )
        }
    }

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("refused")
        }
    }

    impl std::error::Error for Refused {}

    impl ProvideErrorMetadata for Refused {
        fn meta(&self) -> &aws_smithy_types::error::metadata::ErrorMetadata {
            &self.0
        }
    }

    #[test]
    fn errors_are_described_by_operation_code_and_message_within_a_bound() {
        let service: SdkError<Refused, ()> = SdkError::service_error(Refused::new(), ());
        assert_eq!(
            describe_error("GetQueueUrl", &service),
            "GetQueueUrl: QueueDoesNotExist: The specified queue does not exist."
        );
        let timeout: SdkError<Refused, ()> = SdkError::timeout_error("slow");
        assert_eq!(describe_error("Receive", &timeout), "Receive: timed out");
        let long = "x".repeat(1000);
        let failed: SdkError<Refused, ()> = SdkError::construction_failure(long);
        let text = describe_error("Op", &failed);
        assert!(text.chars().count() <= 401 && text.ends_with('…'), "{text}");
    }

    fn dispatch_failure(cause: CredentialsError) -> SdkError<Refused, ()> {
        SdkError::dispatch_failure(
            aws_smithy_runtime_api::client::result::ConnectorError::other(Box::new(cause), None),
        )
    }

    #[test]
    fn missing_credentials_say_where_they_are_looked_for() {
        let text = describe_error(
            "DescribeKey",
            &dispatch_failure(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )),
        );
        assert!(
            text.starts_with("DescribeKey: no AWS credentials found: set AWS_ACCESS_KEY_ID"),
            "{text}"
        );
        for place in ["AWS_PROFILE", "~/.aws/credentials", "web identity", "EC2"] {
            assert!(text.contains(place), "{text}");
        }
        assert!(!text.contains('\n'), "{text}");

        let text = describe_error(
            "DescribeTable",
            &dispatch_failure(CredentialsError::provider_error(
                "failed to load IMDS session token: 403",
            )),
        );
        assert!(
            text.starts_with(
                "DescribeTable: AWS credentials could not be loaded (an error occurred while \
                 loading credentials: failed to load IMDS session token: 403): set"
            ),
            "{text}"
        );
    }
}
