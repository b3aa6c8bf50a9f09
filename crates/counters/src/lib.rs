//! counters: write-behind increments (seed 002). `POST /increment` adds to a
//! key's total and answers the new total at once; increments are summed in
//! memory, journaled, and written to the store in batches.
//!
//! Rooms: [`domain`] (keys, checked arithmetic), [`ports`] (what the service
//! needs from storage), [`adapters`] (redb, PostgreSQL), [`engine`] (the
//! write-behind core: sharded pending sums, journal, flusher) and [`api`]
//! (HTTP routes and the CLI client).

pub mod adapters;
pub mod api;
pub mod domain;
pub mod engine;
pub mod ports;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::{Durability, Engine, EngineConfig};

/// Counters service options.
#[derive(Debug, Clone, clap::Args)]
pub struct CountersConfig {
    /// When an increment is acknowledged: `journal` (after an fsynced local journal; a crash
    /// loses nothing) or `memory` (at once; a crash loses what was not flushed yet).
    #[arg(long, env = "QUINTET_DURABILITY", value_enum, default_value_t = Durability::Journal)]
    pub durability: Durability,

    /// How often pending increments are written to the store.
    #[arg(long, env = "QUINTET_FLUSH_INTERVAL", value_parser = platform::config::parse_duration, default_value = "10s")]
    pub flush_interval: Duration,

    /// Flush early once this many keys have pending increments.
    #[arg(long, env = "QUINTET_FLUSH_MAX_KEYS", default_value_t = 100_000)]
    pub flush_max_keys: usize,

    /// Keys with pending increments at most; beyond, increments to new keys get 503
    /// (e.g. while the store is unreachable).
    #[arg(long, env = "QUINTET_MAX_PENDING_KEYS", default_value_t = 2_000_000)]
    pub max_pending_keys: usize,

    /// Flushed totals kept in memory to answer without a store read.
    #[arg(long, env = "QUINTET_MAX_CACHED_KEYS", default_value_t = 1_000_000)]
    pub max_cached_keys: usize,

    /// Longest counter key, in bytes of UTF-8.
    #[arg(long, env = "QUINTET_COUNTER_MAX_KEY_BYTES", default_value_t = domain::DEFAULT_MAX_KEY_BYTES)]
    pub counter_max_key_bytes: usize,
}

/// Builds the service the platform mounts: routes, readiness, the flusher.
pub async fn service(
    store: Arc<dyn ports::CounterStore>,
    data_dir: &Path,
    config: CountersConfig,
) -> anyhow::Result<platform::Service> {
    let engine = Engine::open(
        store.clone(),
        data_dir,
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
        .readiness(Arc::new(ports::StoreReadiness(store)))
        .background("counters-flusher", move |stop| {
            Box::pin(flusher.run_flusher(stop))
        })
        .on_shutdown(Box::pin(async move { closing.close().await })))
}
