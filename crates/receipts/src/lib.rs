//! receipts: the in-app purchase validation worker (seed 001). Jobs arrive
//! on a queue; each receipt is validated with Apple (legacy `verifyReceipt`
//! or, offline, a `StoreKit` 2 signed transaction: ES256, Apple's certificate
//! chain to a configured root, bundle id and environment); each transaction is claimed
//! once in a ledger; one result per transaction goes to the queue the job
//! names; the job is deleted only after its results are posted.
//!
//! Rooms: [`config`] (the options), [`domain`] (jobs, results, user ids,
//! queues by name or URL, legacy receipts; no I/O), [`ports`] (queues, the
//! ledger, the validator, and [`ports::Backends`]), [`adapters`] (embedded
//! redb queue and ledger, Amazon SQS, `PostgreSQL` and `DynamoDB` ledgers, and
//! Apple: the verifyReceipt client and the `StoreKit` 2 JWS verifier),
//! [`engine`] (the pipeline: receivers, workers, batched posts and deletes),
//! [`api`] (REST, CLI) and [`metrics`]. With the `apple-sim` feature,
//! `apple_sim`: a verifyReceipt simulator for tests, demos and load runs.

pub mod adapters;
pub mod api;
#[cfg(feature = "apple-sim")]
pub mod apple_sim;
pub mod config;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod ports;

use std::sync::Arc;

pub use config::ReceiptsConfig;
use domain::QueueRef;
use engine::{Pipeline, PipelineConfig};
use ports::ReceiptValidator;

/// Builds the service the platform mounts: REST routes, readiness, and the
/// pipeline as a background task.
pub async fn service(
    config: ReceiptsConfig,
    backends: ports::Backends,
    _ctx: &platform::service::Context,
) -> anyhow::Result<platform::Service> {
    let ports::Backends { queue, ledger } = backends;
    // The input and dead-letter queues exist before the first job can be submitted.
    let input = QueueRef::from(config.receipts_input_queue.clone());
    let dead_letter = QueueRef::from(config.receipts_dead_letter_queue.clone());
    for name in [&input, &dead_letter] {
        queue.ensure(name).await.map_err(|e| {
            anyhow::anyhow!("receipts queue '{name}': {}", platform::backend::chain(&e))
        })?;
    }
    let legacy: Arc<dyn ReceiptValidator> = Arc::new(
        adapters::apple::verify_receipt::VerifyReceiptClient::new(config.apple.to_config())?,
    );
    let jws = Arc::new(config.jws.verifier()?);
    let validator: Arc<dyn ReceiptValidator> =
        Arc::new(adapters::apple::AnyValidator::new(legacy, jws));
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
            // Described when the server starts: the process installs its
            // metrics recorder after the services are built.
            metrics::describe();
            Box::pin(pipeline.run(stop))
        })
        .on_shutdown(Box::pin(async move {
            closing_queue.close().await;
            closing_ledger.close().await;
        })))
}
