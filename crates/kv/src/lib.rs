//! kv: an envelope-encrypted key-value store (seed 000). Every value is
//! sealed with AES-256-GCM under a data key that a key provider (a local
//! master key or AWS KMS) generates and wraps; only the wrapped key is
//! stored beside the value. Served over gRPC, REST (with the seed's REST
//! twin) and the seed's raw-TCP protobuf protocol.
//!
//! Rooms (as in every service crate, `docs/architecture.md`): `config`
//! (options and their checks, no I/O), [`domain`] (keys, records, the
//! envelope crypto; no I/O), [`ports`] (stores and key providers, their
//! error enums, [`ports::Backends`]), [`adapters`] (redb, PostgreSQL and
//! DynamoDB stores; the local master-key and AWS KMS providers, the rate
//! limit in front of KMS, and building the provider the options name),
//! [`engine`] (the vault: sealing and opening with a bounded data-key cache,
//! rotation; and the record check `quintet verify` runs), [`api`] (gRPC,
//! REST with the seed's REST twin, the seed's raw-TCP protocol, the CLI) and
//! [`metrics`]. The store is chosen by the binary (`--kv-store`).

pub mod adapters;
pub mod api;
mod config;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod ports;

/// Generated protobuf types: quintet's gRPC API and the seed's TCP envelope.
pub mod proto {
    /// The encoded descriptor set of kv's protos, for gRPC server reflection.
    pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("quintet.kv.v1");
    }
    pub mod seed {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("kv.proto");
    }
}

use std::sync::Arc;

pub use config::{KvConfig, WriteFormat};
use domain::Namespace;
use engine::vault::{CacheLimits, Vault};

/// Builds the service the platform mounts: REST routes, the seed's TCP
/// listener (bound here, so a taken port fails the start), readiness.
pub async fn service(
    config: KvConfig,
    backends: ports::Backends,
    ctx: &platform::service::Context,
) -> anyhow::Result<platform::Service> {
    metrics::describe();
    let store = backends.store;
    let namespace = Namespace::new(config.kv_namespace.clone())
        .map_err(|e| anyhow::anyhow!("--kv-namespace: {e}"))?;
    let provider = adapters::key_provider::build(&config, &ctx.data_dir).await?;
    let vault = Arc::new(
        Vault::new(
            store.clone(),
            provider,
            namespace,
            config.kv_max_value_bytes,
            CacheLimits {
                max_age: config.kv_dek_max_age,
                max_uses: config.kv_dek_max_uses,
                max_bytes: config.kv_dek_max_bytes,
                max_entries: config.kv_dek_cache_entries,
            },
        )
        .with_write_format(config.kv_write_format.record_format())
        .map_err(|e| anyhow::anyhow!("--kv-write-format: {e}"))?,
    );
    if config.kv_write_format == WriteFormat::Seed {
        tracing::warn!(
            "kv writes new records in the original services' layout (--kv-write-format seed): \
             it binds no associated data, so a record copied to another key still decrypts; \
             switch back to quintet once the migration is over (kv rotate --convert quintet)"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.kv_tcp_addr)
        .await
        .map_err(|e| {
            platform::server::BindError::new(
                config.kv_tcp_addr,
                "--kv-tcp-addr or QUINTET_KV_TCP_ADDR",
                e,
            )
        })?;
    let tcp_addr = listener.local_addr()?;
    let limits = config.tcp_limits()?;
    let tls = config.tcp_tls()?;
    let mutual = tls.as_ref().is_some_and(|tls| tls.mutual);
    tracing::info!(
        addr = %tcp_addr,
        tls = tls.is_some(),
        client_certificates = mutual,
        allow = %config.kv_tcp_allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "kv tcp listening"
    );
    if !mutual {
        tracing::warn!(
            addr = %tcp_addr,
            "kv's raw-TCP port requires no credential (the seed protocol has none): any client \
             that reaches it reads and overwrites every key, whatever --tokens says. Require \
             client certificates (--kv-tcp-client-ca with --kv-tcp-tls-cert/--kv-tcp-tls-key), \
             keep it on loopback behind a TLS tunnel, or limit it with --kv-tcp-allow"
        );
    }
    let tcp_vault = vault.clone();
    let closing = store.clone();
    Ok(platform::Service::new("kv")
        .routes(api::http::router(vault.clone()))
        .grpc(api::grpc::server(vault))
        .grpc_descriptors(proto::DESCRIPTORS)
        .openapi(api::http::openapi())
        .readiness(Arc::new(ports::StoreReadiness(store)))
        .background("kv-tcp", move |stop| {
            Box::pin(api::seed_tcp::serve(listener, tcp_vault, limits, tls, stop))
        })
        .on_shutdown(Box::pin(async move { closing.close().await })))
}
