//! messages: a content-addressed message store (seed 004). `POST /messages`
//! stores a text and answers its SHA-256 digest; `GET /messages/{digest}`
//! returns it; `GET /messages` pages through them. The seed's paths
//! `GET /message/{sha}` and `GET /all-messages` keep working.
//!
//! Rooms: [`config`] (the service's options), [`domain`] (valid-by-construction
//! types, no I/O), [`ports`] (what the service needs from storage, and
//! [`ports::Backends`]), [`adapters`] (redb, `PostgreSQL`), [`api`] (HTTP routes
//! and the CLI client) and [`metrics`] (every metric it emits). It has no
//! engine: the routes call the store directly, through a bounded cache of
//! the answers of recently read messages ([`api::hot`]).

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod ports;

pub use config::MessagesConfig;

/// Builds the service the platform mounts, on the given backends.
// Every service's `service()` has the same async shape (docs/architecture.md);
// this one has nothing to wait for.
#[allow(clippy::unused_async)]
pub async fn service(
    config: MessagesConfig,
    backends: ports::Backends,
    _ctx: &platform::service::Context,
) -> anyhow::Result<platform::Service> {
    metrics::describe();
    let store = backends.store;
    let closing = store.clone();
    Ok(platform::Service::new("messages")
        .routes(api::http::router(store.clone(), &config))
        .openapi(api::http::openapi())
        .readiness(platform::health::Ping::new("messages-store", move || {
            let store = store.clone();
            async move { store.ping().await }
        }))
        .on_shutdown(Box::pin(async move { closing.close().await })))
}
