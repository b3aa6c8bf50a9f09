//! receipts: the in-app purchase validation worker (seed 001). Jobs arrive
//! on a queue; each receipt is validated with Apple (legacy `verifyReceipt`
//! or, offline, a StoreKit 2 signed transaction: ES256, Apple's certificate
//! chain to a configured root, bundle id and environment); each transaction is claimed
//! once in a ledger; one result per transaction goes to the queue the job
//! names; the job is deleted only after its results are posted.
//!
//! Rooms: [`domain`] (jobs, results, user ids, queues by name or URL,
//! legacy receipts; no I/O), [`ports`] (queues, the ledger, the validator),
//! [`adapters`] (embedded redb queue and ledger, Amazon SQS, PostgreSQL and
//! DynamoDB ledgers),
//! [`apple`] (the verifyReceipt client, the StoreKit 2 JWS verifier and the
//! `apple-sim` simulator), [`pipeline`] (receivers, workers,
//! batched posts and deletes) and [`api`] (REST, CLI).

pub mod adapters;
pub mod api;
pub mod apple;
pub mod domain;
pub mod pipeline;
pub mod ports;

use std::sync::Arc;
use std::time::Duration;

use domain::{QueueName, QueueRef};
use pipeline::{Pipeline, PipelineConfig};
use ports::{JobQueue, ReceiptValidator, TransactionLedger};

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

    /// The ledger of claimed transactions, in place of --store: any --store value, or DynamoDB,
    /// `dynamodb://[table][?region=…&endpoint=…&create=true]` (table `TransactionIdTable` by
    /// default, partition key `TransactionId`).
    #[arg(long, env = "QUINTET_RECEIPTS_LEDGER", hide_env_values = true)]
    pub receipts_ledger: Option<String>,

    #[command(flatten)]
    pub apple: apple::verify_receipt::AppleArgs,

    #[command(flatten)]
    pub jws: apple::jws::JwsArgs,
}

fn parse_queue(text: &str) -> Result<QueueName, String> {
    QueueName::new(text)
}

/// Builds the service the platform mounts: REST routes, readiness, and the
/// pipeline as a background task.
pub async fn service(
    queue: Arc<dyn JobQueue>,
    ledger: Arc<dyn TransactionLedger>,
    config: ReceiptsConfig,
) -> anyhow::Result<platform::Service> {
    // The input and dead-letter queues exist before the first job can be submitted.
    let input = QueueRef::from(config.receipts_input_queue.clone());
    let dead_letter = QueueRef::from(config.receipts_dead_letter_queue.clone());
    for name in [&input, &dead_letter] {
        queue
            .ensure(name)
            .await
            .map_err(|e| anyhow::anyhow!("receipts queue '{name}': {e}"))?;
    }
    let legacy: Arc<dyn ReceiptValidator> = Arc::new(
        apple::verify_receipt::VerifyReceiptClient::new(config.apple.to_config())?,
    );
    let jws = Arc::new(config.jws.verifier().map_err(anyhow::Error::msg)?);
    let validator: Arc<dyn ReceiptValidator> = Arc::new(apple::AnyValidator::new(legacy, jws));
    let pipeline = Arc::new(Pipeline::new(
        queue.clone(),
        ledger.clone(),
        validator,
        PipelineConfig {
            input: input.clone(),
            dead_letter,
            receivers: config.receipts_receivers as usize,
            concurrency: config.receipts_concurrency as usize,
            visibility: config.receipts_visibility,
            max_receives: config.receipts_max_receives,
            ..PipelineConfig::default()
        },
    ));
    let (closing_queue, closing_ledger) = (queue.clone(), ledger.clone());
    Ok(platform::Service::new("receipts")
        .routes(api::http::router(queue.clone(), input))
        .openapi(api::http::openapi())
        .readiness(Arc::new(ports::Readiness { queue, ledger }))
        .background("receipts-pipeline", move |stop| {
            Box::pin(pipeline.run(stop))
        })
        .on_shutdown(Box::pin(async move {
            closing_queue.close().await;
            closing_ledger.close().await;
        })))
}
