//! The authenticity check `quintet verify` runs on each kv record of an
//! embedded store: the record's data key is unwrapped by the key provider
//! the server uses (same flags, same `QUINTET_KV_*` variables) and its value
//! opened with the namespace and the key it is stored under as associated
//! data, so an altered value, nonce or wrapped key, and a record moved under
//! another key, are found without a get.
//!
//! It never makes a master key: verify with no keys to read would call every
//! record corrupt. A provider that cannot be reached stops the scan
//! ([`RecordChecker::failure`]) rather than condemning records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::KvConfig;
use crate::adapters::key_provider::{self, ProviderSetupError};
use crate::domain::{
    DataKey, KvKey, Namespace, NamespaceError, RecordProblem, SealedRecord, envelope,
};
use crate::ports::{BackendError, KeyProvider, ProviderError};
use platform::config::ConfigError;

/// Why the checker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    /// An option is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key directory holds no master key: every record would look corrupt.
    #[error(
        "no master key in {}: verify needs the keys the server used (set \
         --kv-key-provider or QUINTET_KV_MASTER_KEY as for quintet serve)",
        dir.display()
    )]
    NoMasterKey {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// `--kv-namespace` is not a namespace.
    #[error("--kv-namespace: {0}")]
    Namespace(#[source] NamespaceError),
    /// The runtime the provider's calls run on could not start.
    #[error("cannot start the key provider's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The key provider could not be set up.
    #[error(transparent)]
    Provider(#[from] ProviderSetupError),
}

/// The key provider failed while checking: the scan cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("the key provider failed: {0}")]
pub struct ProviderFailed(#[source] pub BackendError);

/// Checks records one by one (synchronously: verify runs no server).
pub struct RecordChecker {
    runtime: tokio::runtime::Runtime,
    provider: Arc<dyn KeyProvider>,
    namespace: Namespace,
    /// Data keys already unwrapped, by wrapped bytes (one provider call per data key).
    keys: HashMap<Vec<u8>, DataKey>,
    authentic: u64,
    failure: Option<ProviderFailed>,
}

impl RecordChecker {
    /// The checker for the provider `config` names (as `quintet serve` reads it).
    pub fn new(config: &KvConfig, data_dir: &Path) -> Result<Self, CheckerError> {
        if config.kv_master_key.is_none() {
            let dir = config.local_key_dir(data_dir)?;
            if let Some(dir) = dir {
                let has_key = std::fs::read_dir(&dir).is_ok_and(|entries| {
                    entries.flatten().any(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name.starts_with("master-v") && name.ends_with(".key")
                    })
                });
                if !has_key {
                    return Err(CheckerError::NoMasterKey { dir });
                }
            }
        }
        let namespace =
            Namespace::new(config.kv_namespace.clone()).map_err(CheckerError::Namespace)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CheckerError::Runtime)?;
        let provider = runtime.block_on(key_provider::build(config, data_dir))?;
        Ok(Self {
            runtime,
            provider,
            namespace,
            keys: HashMap::new(),
            authentic: 0,
            failure: None,
        })
    }

    /// `Err` (why) when the record is not authentic under `key`.
    pub fn check(&mut self, key: &KvKey, record: &SealedRecord) -> Result<(), RecordProblem> {
        if self.failure.is_some() {
            return Ok(());
        }
        let dek = match self.data_key(record) {
            Ok(Some(dek)) => dek,
            Ok(None) => return Err(RecordProblem::WrappedKey),
            Err(failure) => {
                self.failure = Some(failure);
                return Ok(());
            }
        };
        envelope::open(&dek, record.clone(), &self.namespace, key)
            .map_err(|_| RecordProblem::Value)?;
        self.authentic += 1;
        Ok(())
    }

    fn data_key(&mut self, record: &SealedRecord) -> Result<Option<DataKey>, ProviderFailed> {
        if let Some(dek) = self.keys.get(&record.wrapped.bytes) {
            return Ok(Some(dek.clone()));
        }
        for candidate in record.wrapped_readings() {
            match self.runtime.block_on(self.provider.unwrap(&candidate)) {
                Ok(dek) => {
                    self.keys.insert(record.wrapped.bytes.clone(), dek.clone());
                    return Ok(Some(dek));
                }
                Err(ProviderError::Refused(_)) => {}
                Err(ProviderError::Unavailable(error)) => return Err(ProviderFailed(error)),
            }
        }
        Ok(None)
    }

    /// Records found authentic so far.
    pub fn authentic(&self) -> u64 {
        self.authentic
    }

    /// Why the scan could not go on (the provider failed), if it could not.
    pub fn failure(&self) -> Option<&ProviderFailed> {
        self.failure.as_ref()
    }
}
