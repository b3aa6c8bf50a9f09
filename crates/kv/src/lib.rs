//! kv: an envelope-encrypted key-value store (seed 000). Every value is
//! sealed with AES-256-GCM under a data key that a key provider (a local
//! master key or AWS KMS) generates and wraps; only the wrapped key is
//! stored beside the value. Served over gRPC, REST (with the seed's REST
//! twin) and the seed's raw-TCP protobuf protocol.
//!
//! Rooms: [`domain`] (keys, records, the envelope crypto; no I/O), [`ports`]
//! (stores and key providers), [`adapters`] (redb, PostgreSQL and DynamoDB
//! stores; the local master-key and AWS KMS providers), [`vault`] (sealing
//! and opening with a bounded data-key cache, rotation) and [`api`] (gRPC,
//! REST with the seed's REST twin, the seed's raw-TCP protocol, the CLI).
//! The DynamoDB store and the AWS KMS provider are tested against moto;
//! `quintet serve` cannot select them yet.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod ports;
pub mod vault;

/// Generated protobuf types: quintet's gRPC API and the seed's TCP envelope.
pub mod proto {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("quintet.kv.v1");
    }
    pub mod seed {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("kv.proto");
    }
}

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use adapters::local_keys::LocalKeyProvider;
use domain::Namespace;
use ports::KeyProvider;
use vault::{CacheLimits, Vault};

/// kv service options.
#[derive(Debug, Clone, clap::Args)]
pub struct KvConfig {
    /// Where the seed's raw-TCP protocol is served (the port the seed's client dials).
    #[arg(long, env = "QUINTET_KV_TCP_ADDR", default_value = "127.0.0.1:50051")]
    pub kv_tcp_addr: SocketAddr,

    /// Largest value, in bytes (0-byte values are allowed).
    #[arg(long, env = "QUINTET_KV_MAX_VALUE_BYTES", default_value_t = domain::DEFAULT_MAX_VALUE_BYTES)]
    pub kv_max_value_bytes: usize,

    /// Bound into every record's associated data: records copied between
    /// namespaces do not decrypt.
    #[arg(long, env = "QUINTET_KV_NAMESPACE", default_value = "default")]
    pub kv_namespace: String,

    /// The key provider: `local` (master keys in <data-dir>/kv-keys, created on first start,
    /// or from QUINTET_KV_MASTER_KEY) or `local:///some/dir`.
    #[arg(long, env = "QUINTET_KV_KEY_PROVIDER", default_value = "local")]
    pub kv_key_provider: String,

    /// Master keys for the local provider as comma-separated base64 (32 bytes each; the last
    /// is current). When set, no key files are read or written.
    #[arg(
        long = "kv-master-key",
        env = "QUINTET_KV_MASTER_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub kv_master_key: Option<String>,

    /// Longest a data key is used to encrypt (and kept to decrypt); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_AGE", value_parser = platform::config::parse_duration, default_value = "5m")]
    pub kv_dek_max_age: Duration,

    /// Most values one data key encrypts (and decrypts from cache); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_USES", default_value_t = 100_000)]
    pub kv_dek_max_uses: u64,

    /// Most plaintext bytes one data key encrypts (and decrypts from cache); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_BYTES", default_value_t = 1 << 30)]
    pub kv_dek_max_bytes: u64,

    /// Most unwrapped data keys kept for decryption.
    #[arg(long, env = "QUINTET_KV_DEK_CACHE_ENTRIES", default_value_t = 10_000)]
    pub kv_dek_cache_entries: usize,
}

impl KvConfig {
    fn provider(&self, data_dir: &Path) -> anyhow::Result<Arc<dyn KeyProvider>> {
        if let Some(keys) = &self.kv_master_key {
            return LocalKeyProvider::from_env_value(keys)
                .map(|p| Arc::new(p) as Arc<dyn KeyProvider>)
                .map_err(|e| anyhow::anyhow!("QUINTET_KV_MASTER_KEY: {e}"));
        }
        let dir = match self.kv_key_provider.as_str() {
            "local" => data_dir.join("kv-keys"),
            other => match other.strip_prefix("local://") {
                Some(dir) if !dir.is_empty() => dir.into(),
                _ => anyhow::bail!(
                    "--kv-key-provider: unknown provider '{}'; use local or local:///dir",
                    other.chars().take(40).collect::<String>()
                ),
            },
        };
        let provider = LocalKeyProvider::open_dir(&dir)
            .map_err(|e| anyhow::anyhow!("--kv-key-provider: {e}"))?;
        Ok(Arc::new(provider))
    }
}

/// Builds the service the platform mounts: REST routes, the seed's TCP
/// listener (bound here, so a taken port fails the start), readiness.
pub async fn service(
    store: Arc<dyn ports::KvStore>,
    data_dir: &Path,
    config: KvConfig,
) -> anyhow::Result<platform::Service> {
    let namespace = Namespace::new(config.kv_namespace.clone())
        .map_err(|e| anyhow::anyhow!("--kv-namespace: {e}"))?;
    let provider = config.provider(data_dir)?;
    let vault = Arc::new(Vault::new(
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
    ));
    let listener = tokio::net::TcpListener::bind(config.kv_tcp_addr)
        .await
        .with_context(|| format!("binding --kv-tcp-addr {}", config.kv_tcp_addr))?;
    let tcp_addr = listener.local_addr()?;
    tracing::info!(addr = %tcp_addr, "kv tcp listening");
    let tcp_vault = vault.clone();
    let closing = store.clone();
    Ok(platform::Service::new("kv")
        .routes(api::http::router(vault.clone()))
        .grpc(api::grpc::server(vault))
        .openapi(api::http::openapi())
        .readiness(Arc::new(ports::StoreReadiness(store)))
        .background("kv-tcp", move |stop| {
            Box::pin(api::seed_tcp::serve(listener, tcp_vault, stop))
        })
        .on_shutdown(Box::pin(async move { closing.close().await })))
}
