//! counters: write-behind increments (seed 002). `POST /increment` adds to a
//! key's total and answers the new total at once; increments are summed in
//! memory, journaled, and written to the store in batches.
//!
//! Rooms: [`config`] (the service's options), [`domain`] (keys, checked
//! arithmetic), [`ports`] (what the service needs from storage, and
//! [`ports::Backends`]), [`adapters`] (redb, `PostgreSQL`), [`engine`] (the
//! write-behind core: sharded pending sums, journal, flusher), [`api`] (HTTP
//! routes and the CLI client) and [`metrics`] (every metric it emits).

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod ports;

pub use config::CountersConfig;
use engine::{Engine, EngineConfig};

/// Builds the service the platform mounts: routes, readiness, the flusher.
/// The journal lives in the context's data directory.
pub async fn service(
    config: CountersConfig,
    backends: ports::Backends,
    ctx: &platform::service::Context,
) -> anyhow::Result<platform::Service> {
    metrics::describe();
    let store = backends.store;
    let engine = Engine::open(
        store.clone(),
        &ctx.data_dir,
        EngineConfig {
            durability: config.durability,
            flush_interval: config.flush_interval,
            flush_max_keys: config.flush_max_keys.max(1),
            max_pending_keys: config.max_pending_keys.max(1),
            max_cached_keys: config.max_cached_keys,
        },
    )
    .await?;
    let flusher = engine.clone();
    let closing = store.clone();
    Ok(platform::Service::new("counters")
        .routes(api::http::router(engine, config.counter_max_key_bytes))
        .openapi(api::http::openapi(config.counter_max_key_bytes))
        .readiness(platform::health::Ping::new("counters-store", move || {
            let store = store.clone();
            async move { store.ping().await }
        }))
        .background("counters-flusher", move |stop| {
            Box::pin(flusher.run_flusher(stop))
        })
        .on_shutdown(Box::pin(async move { closing.close().await })))
}
