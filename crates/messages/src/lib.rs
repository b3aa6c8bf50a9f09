//! messages: a content-addressed message store (seed 004). `POST /messages`
//! stores a text and answers its SHA-256 digest; `GET /messages/{digest}`
//! returns it; `GET /messages` pages through them. The seed's paths
//! `GET /message/{sha}` and `GET /all-messages` keep working.
//!
//! Rooms: [`domain`] (valid-by-construction types, no I/O), [`ports`] (what
//! the service needs from storage), [`adapters`] (redb, PostgreSQL) and
//! [`api`] (HTTP routes and the CLI client).

pub mod adapters;
pub mod api;
pub mod domain;
pub mod ports;

use std::sync::Arc;

pub use api::http::MessagesConfig;

/// Builds the service the platform mounts, on the given store.
pub fn service(store: Arc<dyn ports::MessageStore>, config: MessagesConfig) -> platform::Service {
    let closing = store.clone();
    platform::Service::new("messages")
        .routes(api::http::router(store.clone(), config))
        .openapi(api::http::openapi())
        .readiness(Arc::new(ports::StoreReadiness(store)))
        .on_shutdown(Box::pin(async move { closing.close().await }))
}
