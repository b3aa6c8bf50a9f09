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
use std::path::Path;
use std::sync::Arc;

use crate::KvConfig;
use crate::domain::{DataKey, KvKey, Namespace, SealedRecord, envelope};
use crate::ports::{KeyProvider, ProviderError};

/// Checks records one by one (synchronously: verify runs no server).
pub struct RecordChecker {
    runtime: tokio::runtime::Runtime,
    provider: Arc<dyn KeyProvider>,
    namespace: Namespace,
    /// Data keys already unwrapped, by wrapped bytes (one provider call per data key).
    keys: HashMap<Vec<u8>, DataKey>,
    authentic: u64,
    failure: Option<String>,
}

impl RecordChecker {
    /// The checker for the provider `config` names (as `quintet serve` reads it).
    pub fn new(config: &KvConfig, data_dir: &Path) -> Result<Self, String> {
        if config.kv_master_key.is_none() {
            let dir = config.local_key_dir(data_dir).map_err(|e| e.to_string())?;
            if let Some(dir) = dir {
                let has_key = std::fs::read_dir(&dir)
                    .map(|entries| {
                        entries.flatten().any(|e| {
                            let name = e.file_name();
                            let name = name.to_string_lossy();
                            name.starts_with("master-v") && name.ends_with(".key")
                        })
                    })
                    .unwrap_or(false);
                if !has_key {
                    return Err(format!(
                        "no master key in {}: verify needs the keys the server used (set \
                         --kv-key-provider or QUINTET_KV_MASTER_KEY as for quintet serve)",
                        dir.display()
                    ));
                }
            }
        }
        let namespace = Namespace::new(config.kv_namespace.clone())
            .map_err(|e| format!("--kv-namespace: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the key provider's runtime: {e}"))?;
        let provider = runtime
            .block_on(config.provider(data_dir))
            .map_err(|e| format!("{e:#}"))?;
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
    pub fn check(&mut self, key: &KvKey, record: &SealedRecord) -> Result<(), String> {
        if self.failure.is_some() {
            return Ok(());
        }
        let dek = match self.data_key(record) {
            Ok(Some(dek)) => dek,
            Ok(None) => {
                return Err(
                    "its data key opens under no master key of the provider (altered wrapped key)"
                        .into(),
                );
            }
            Err(failure) => {
                self.failure = Some(failure);
                return Ok(());
            }
        };
        envelope::open(&dek, record.clone(), &self.namespace, key).map_err(|_| {
            "its value fails authentication under this key (altered, or moved from another key)"
                .to_owned()
        })?;
        self.authentic += 1;
        Ok(())
    }

    fn data_key(&mut self, record: &SealedRecord) -> Result<Option<DataKey>, String> {
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
                Err(other) => return Err(format!("the key provider failed: {other}")),
            }
        }
        Ok(None)
    }

    /// Records found authentic so far.
    pub fn authentic(&self) -> u64 {
        self.authentic
    }

    /// Why the scan could not go on (the provider failed), if it could not.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}
