//! The operational core every quintet service plugs into.
//!
//! A service hands the platform a [`service::Service`] (its REST router, its
//! OpenAPI document, its gRPC routes, its readiness checks and its shutdown
//! hooks); the platform serves all of them on one listener with the same
//! configuration, telemetry, TLS, limits, authentication and lifecycle.
//! Nothing in here knows about any particular service.
//!
//! The engines are features, so a service crate pulls in only the drivers it
//! uses: `aws` (the AWS SDK set-up in `aws`, DynamoDB tables), `postgres`
//! (sqlx: `postgres`), `embedded` (redb: `embedded`, `integrity`). Each
//! brings its [`backend::BackendError`] constructor.

#[cfg(feature = "aws")]
pub mod aws;
pub mod backend;
pub mod client;
pub mod config;
pub mod connections;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
pub mod extract;
pub mod group_commit;
pub mod grpc;
pub mod health;
#[cfg(feature = "embedded")]
pub mod integrity;
pub mod journal;
pub mod layers;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod ops;
pub mod paging;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod private;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod trace;
mod workers;

pub use config::{ResolvedConfig, ServerConfig};
pub use error::ErrorResponse;
pub use server::{Server, shutdown_signal};
pub use service::Service;
