//! Builds the key provider `--kv-key-provider` names (with I/O: key files
//! are read or made, AWS KMS is asked to describe the key).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use platform::config::ConfigError;

use super::aws_kms::AwsKmsProvider;
use super::local_keys::{LocalKeyError, LocalKeyProvider};
use super::rate_limited::RateLimitedProvider;
use crate::config::{KvConfig, ProviderSpec};
use crate::ports::{KeyProvider, ProviderError};

/// How long a KMS call waits for the rate limit before failing.
const KMS_MAX_WAIT: Duration = Duration::from_secs(1);

/// Why the key provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    /// An option is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local master keys could not be read or made.
    #[error("--kv-key-provider: {0}")]
    Local(#[source] LocalKeyError),
    /// AWS KMS refused or could not be reached.
    #[error("--kv-key-provider: {0}")]
    Kms(#[source] ProviderError),
}

/// The key provider the options name; AWS KMS is checked (`DescribeKey`)
/// so a wrong key or unreachable endpoint fails the start.
pub(crate) async fn build(
    config: &KvConfig,
    data_dir: &Path,
) -> Result<Arc<dyn KeyProvider>, ProviderSetupError> {
    let spec = config.spec()?;
    if let Some(provider) = config.master_keys()? {
        tracing::info!(
            source = "QUINTET_KV_MASTER_KEY",
            "kv key provider: local, master keys from the environment"
        );
        return Ok(Arc::new(provider));
    }
    let dir = match spec {
        ProviderSpec::LocalDefault => data_dir.join("kv-keys"),
        ProviderSpec::LocalDir(dir) => dir,
        ProviderSpec::AwsKms { key_id, settings } => {
            let kms = AwsKmsProvider::connect(&settings, &key_id)
                .await
                .map_err(ProviderSetupError::Kms)?;
            tracing::info!(key = %key_id, "kv key provider: aws kms");
            return Ok(Arc::new(RateLimitedProvider::new(
                Arc::new(kms),
                config.kv_kms_rate_limit,
                KMS_MAX_WAIT,
            )));
        }
    };
    let provider = LocalKeyProvider::open_dir(&dir).map_err(ProviderSetupError::Local)?;
    tracing::info!(
        source = %dir.display(),
        "kv key provider: local, master keys from files (they protect data at rest only \
         where this directory is not copied with it: keep it off the data volume's backups, \
         or use QUINTET_KV_MASTER_KEY or aws-kms)"
    );
    Ok(Arc::new(provider))
}
