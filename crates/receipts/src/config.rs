//! The receipts service's options: the queues and ledger, the pipeline's
//! bounds, and the Apple options (the legacy `verifyReceipt` client's and the
//! `StoreKit` 2 verifier's). Checks here need no I/O.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::adapters::apple::jws::{EnvironmentRule, JwsVerifier, RootCertError};
use crate::adapters::apple::verify_receipt::{
    AppleConfig, ClientConfigError, PRODUCTION_URL, SANDBOX_URL, VerifyReceiptClient,
};
use clap::builder::{StringValueParser, TypedValueParser as _};
use secrecy::SecretString;

use crate::domain::{QueueName, QueueNameError};

/// receipts service options.
#[derive(Debug, Clone, clap::Args)]
pub struct ReceiptsConfig {
    /// The queue jobs arrive on.
    #[arg(long, env = "QUINTET_RECEIPTS_INPUT_QUEUE", default_value = "receipts", value_parser = parse_queue)]
    pub receipts_input_queue: QueueName,

    /// Where jobs that cannot be processed go, with the reason.
    #[arg(long, env = "QUINTET_RECEIPTS_DEAD_LETTER_QUEUE", default_value = "receipts-dlq", value_parser = parse_queue)]
    pub receipts_dead_letter_queue: QueueName,

    /// Jobs in flight at most.
    #[arg(long, env = "QUINTET_RECEIPTS_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub receipts_concurrency: u32,

    /// Concurrent receive loops on the input queue.
    #[arg(long, env = "QUINTET_RECEIPTS_RECEIVERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub receipts_receivers: u32,

    /// How long a received job stays hidden from other workers (extended while it runs).
    #[arg(long, env = "QUINTET_RECEIPTS_VISIBILITY", value_parser = platform::config::parse_duration, default_value = "30s")]
    pub receipts_visibility: Duration,

    /// Receives after which a job goes to the dead-letter queue.
    #[arg(long, env = "QUINTET_RECEIPTS_MAX_RECEIVES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub receipts_max_receives: u32,

    /// The queues: `redb` (embedded, `<data-dir>/receipts-queue.redb`), `redb:///some/dir`, or
    /// Amazon SQS, `sqs://[?region=…&endpoint=…&create=true]` (queues by name; `create=true`
    /// creates missing ones; credentials from the AWS SDK's standard chain).
    // A String, parsed by the binary into an adapter.
    #[arg(
        long,
        env = "QUINTET_RECEIPTS_QUEUE",
        default_value = "redb",
        hide_env_values = true
    )]
    pub receipts_queue: String,

    /// The ledger of claimed transactions, in place of --store: any --store value, or `DynamoDB`,
    /// `dynamodb://[table][?region=…&endpoint=…&create=true]` (table `TransactionIdTable` by
    /// default, partition key `TransactionId`).
    #[arg(long, env = "QUINTET_RECEIPTS_LEDGER", hide_env_values = true)]
    pub receipts_ledger: Option<String>,

    /// The legacy verifyReceipt client's options.
    #[command(flatten)]
    pub apple: AppleArgs,

    /// The signed-transaction (JWS) verifier's options.
    #[command(flatten)]
    pub jws: JwsArgs,
}

/// An Apple option that cannot work, named as the user typed it.
#[derive(Debug, thiserror::Error)]
pub enum AppleOptionError {
    /// A verifyReceipt URL or budget is refused.
    #[error("invalid value for {option}: {source}")]
    Client {
        /// The option to change.
        option: &'static str,
        /// What is wrong with it.
        source: ClientConfigError,
    },
    /// A root certificate file cannot be read or parsed.
    #[error("invalid value for {0}")]
    RootCert(#[source] RootCertError),
}

impl ReceiptsConfig {
    /// Checks the Apple options (the verifyReceipt URLs, the root
    /// certificate files) before anything is opened, so a typo is refused
    /// at start-up with the option's name rather than after the queue and
    /// ledger are open.
    pub fn check(&self) -> Result<(), AppleOptionError> {
        VerifyReceiptClient::new(self.apple.to_config()).map_err(|source| {
            let option = match &source {
                ClientConfigError::Url { field, .. } if *field == "sandbox_url" => {
                    "--apple-sandbox-url"
                }
                ClientConfigError::Url { .. } => "--apple-production-url",
                ClientConfigError::Budget(_) | ClientConfigError::Http(_) => "--apple-*",
            };
            AppleOptionError::Client { option, source }
        })?;
        self.jws.verifier().map_err(AppleOptionError::RootCert)?;
        Ok(())
    }
}

fn parse_queue(text: &str) -> Result<QueueName, QueueNameError> {
    QueueName::new(text)
}

/// The worker's `--apple-*` options (flattened into the receipts config).
/// `Debug` redacts the shared secret.
#[derive(Clone, clap::Args)]
pub struct AppleArgs {
    /// Apple's production verifyReceipt URL (point it at `quintet apple-sim` for tests).
    #[arg(long, env = "QUINTET_APPLE_PRODUCTION_URL", default_value = PRODUCTION_URL)]
    pub apple_production_url: String,

    /// Apple's sandbox verifyReceipt URL, asked when production answers 21007.
    #[arg(long, env = "QUINTET_APPLE_SANDBOX_URL", default_value = SANDBOX_URL)]
    pub apple_sandbox_url: String,

    /// The app's shared secret, sent as `password` (needed for auto-renewable subscriptions).
    #[arg(long, env = "QUINTET_APPLE_SHARED_SECRET", hide_env_values = true, value_parser = StringValueParser::new().map(SecretString::from))]
    pub apple_shared_secret: Option<SecretString>,

    /// Attempts per receipt on transient answers (21005, 21009, 5xx, timeouts, 21002).
    #[arg(long, env = "QUINTET_APPLE_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub apple_max_attempts: u32,

    /// Backoff ceiling before the first retry (doubles per retry, full jitter).
    #[arg(long, env = "QUINTET_APPLE_INITIAL_BACKOFF", default_value = "100ms", value_parser = platform::config::parse_duration)]
    pub apple_initial_backoff: Duration,

    /// Largest backoff ceiling.
    #[arg(long, env = "QUINTET_APPLE_MAX_BACKOFF", default_value = "5s", value_parser = platform::config::parse_duration)]
    pub apple_max_backoff: Duration,

    /// Budget of one request to Apple.
    #[arg(long, env = "QUINTET_APPLE_REQUEST_TIMEOUT", default_value = "10s", value_parser = platform::config::parse_duration)]
    pub apple_request_timeout: Duration,
}

impl fmt::Debug for AppleArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_config().fmt(f)
    }
}

impl AppleArgs {
    /// The client configuration these options describe.
    pub fn to_config(&self) -> AppleConfig {
        AppleConfig {
            production_url: self.apple_production_url.clone(),
            sandbox_url: self.apple_sandbox_url.clone(),
            shared_secret: self.apple_shared_secret.clone(),
            max_attempts: self.apple_max_attempts,
            initial_backoff: self.apple_initial_backoff,
            max_backoff: self.apple_max_backoff,
            request_timeout: self.apple_request_timeout,
        }
    }
}

/// The worker's options for `StoreKit` 2 signed transactions (flattened into
/// the receipts config).
#[derive(Debug, Clone, clap::Args)]
pub struct JwsArgs {
    /// Apple root certificate a signed transaction's chain must end at, PEM
    /// or DER (Apple's AppleRootCA-G3.cer); repeat the option, or separate
    /// paths with commas in the environment variable. None: every signed
    /// transaction is INVALID.
    #[arg(
        long = "apple-root-cert",
        env = "QUINTET_APPLE_ROOT_CERTS",
        value_delimiter = ','
    )]
    pub apple_root_cert: Vec<PathBuf>,

    /// The app's bundle id; a signed transaction for another app is INVALID.
    #[arg(long, env = "QUINTET_APPLE_BUNDLE_ID")]
    pub apple_bundle_id: Option<String>,

    /// Environments signed transactions may come from: production, sandbox,
    /// or any (Xcode and `LocalTesting` included; for development only).
    #[arg(long, env = "QUINTET_APPLE_ENVIRONMENT", value_enum, default_value_t = EnvironmentRule::Production)]
    pub apple_environment: EnvironmentRule,
}

impl JwsArgs {
    /// The verifier these options describe; an unreadable root certificate
    /// file is an error.
    pub fn verifier(&self) -> Result<JwsVerifier, RootCertError> {
        JwsVerifier::from_pem_files(
            &self.apple_root_cert,
            self.apple_bundle_id.clone(),
            self.apple_environment,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        apple: AppleArgs,
    }

    #[test]
    fn options_default_to_apple_and_debug_hides_the_secret() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "quintet",
            "--apple-shared-secret",
            "s3cret",
            "--apple-initial-backoff",
            "5ms",
        ])
        .expect("parses");
        let config = cli.apple.to_config();
        assert_eq!(config.production_url, PRODUCTION_URL);
        assert_eq!(config.sandbox_url, SANDBOX_URL);
        assert_eq!(config.initial_backoff, Duration::from_millis(5));
        assert_eq!(config.max_attempts, AppleConfig::default().max_attempts);
        assert_eq!(
            config
                .shared_secret
                .as_ref()
                .map(secrecy::ExposeSecret::expose_secret),
            Some("s3cret")
        );
        assert!(!format!("{:?}", cli.apple).contains("s3cret"));
        assert!(Cli::try_parse_from(["quintet", "--apple-max-attempts", "0"]).is_err());
    }

    #[derive(clap::Parser)]
    struct JwsCli {
        #[command(flatten)]
        jws: JwsArgs,
    }

    #[test]
    fn options_default_to_production_and_take_several_roots() {
        use clap::Parser as _;
        let cli = JwsCli::try_parse_from(["quintet"]).expect("parses");
        assert!(cli.jws.apple_root_cert.is_empty());
        assert_eq!(cli.jws.apple_bundle_id, None);
        assert_eq!(cli.jws.apple_environment, EnvironmentRule::Production);

        let cli = JwsCli::try_parse_from([
            "quintet",
            "--apple-root-cert",
            "a.pem",
            "--apple-root-cert",
            "b.cer,c.pem",
            "--apple-bundle-id",
            "com.example.app",
            "--apple-environment",
            "sandbox",
        ])
        .expect("parses");
        assert_eq!(
            cli.jws.apple_root_cert,
            ["a.pem", "b.cer", "c.pem"].map(PathBuf::from)
        );
        assert_eq!(cli.jws.apple_bundle_id.as_deref(), Some("com.example.app"));
        assert_eq!(cli.jws.apple_environment, EnvironmentRule::Sandbox);
        assert!(JwsCli::try_parse_from(["quintet", "--apple-environment", "xcode"]).is_err());
    }
}
