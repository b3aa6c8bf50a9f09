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

/// One `key=value` of a URL query.
pub type QueryPair<'q> = (&'q str, &'q str);

impl AwsSettings {
    /// Settings from the query of a `dynamodb://…`, `aws-kms://…` or `sqs://…` URL:
    /// `endpoint=<url>`, `region=<name>`, `max_attempts=<n>`. The pairs whose
    /// key is in `extra` are returned for the caller; any other key is an
    /// error naming it. Credentials are never taken from a URL: they come
    /// from the SDK's standard chain.
    pub fn from_query<'q>(
        query: &'q str,
        extra: &[&str],
    ) -> Result<(Self, Vec<QueryPair<'q>>), String> {
        let mut settings = Self::default();
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                    settings.endpoint = Some(value.trim_end_matches('/').to_owned());
                }
                "endpoint" => return Err("endpoint= must be an http:// or https:// URL".into()),
                "region" if !value.is_empty() && value.len() <= 64 => {
                    settings.region = Some(value.to_owned());
                }
                "region" => return Err("region= must name a region, e.g. us-east-1".into()),
                "max_attempts" => {
                    settings.max_attempts = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=20).contains(n))
                        .ok_or("max_attempts= must be a number from 1 to 20")?;
                }
                key if extra.contains(&key) => rest.push((key, value)),
                other => {
                    let mut known = vec!["endpoint", "region", "max_attempts"];
                    known.extend_from_slice(extra);
                    return Err(format!(
                        "unknown parameter '{}' (known: {})",
                        other.chars().take(40).collect::<String>(),
                        known.join(", ")
                    ));
                }
            }
        }
        Ok((settings, rest))
    }
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
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl StaticCredentials {
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
        assert_eq!(rest, vec![("create", "true")]);
        let (settings, rest) = AwsSettings::from_query("", &[]).expect("empty is fine");
        assert_eq!(settings, AwsSettings::default());
        assert!(rest.is_empty());

        let err = AwsSettings::from_query("secret_key=hunter2", &[]).expect_err("unknown");
        assert!(err.contains("unknown parameter 'secret_key'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(AwsSettings::from_query("endpoint=ftp://x", &[]).is_err());
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
