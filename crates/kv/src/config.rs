//! kv's options and the key provider they name: the one place where
//! `--kv-key-provider` becomes a provider. [`KvConfig::check`] validates
//! every option that needs no I/O, so `quintet serve` can refuse a mistake
//! before any store opens.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::AwsSettings;
use crate::adapters::aws_kms::AwsKmsProvider;
use crate::adapters::local_keys::LocalKeyProvider;
use crate::adapters::rate_limited::RateLimitedProvider;
use crate::domain;
use crate::ports::KeyProvider;
use platform::config::ConfigError;

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
    /// or from QUINTET_KV_MASTER_KEY), `local:///some/dir`, or AWS KMS:
    /// `aws-kms://<key id, key ARN or alias/name>[?region=…&endpoint=…&max_attempts=…]`
    /// (credentials from the AWS SDK's standard chain).
    #[arg(long, env = "QUINTET_KV_KEY_PROVIDER", default_value = "local")]
    pub kv_key_provider: String,

    /// The layout new records are written in: `quintet` (namespace and key bound into each
    /// record as associated data) or `seed`, the original services' DynamoDB layout (value S =
    /// base64(iv ‖ tag ‖ ciphertext), data_key B = base64 of the KMS blob), which they can read
    /// during a rolling migration but which binds no associated data. `seed` needs a DynamoDB
    /// store (--kv-store dynamodb://…).
    #[arg(long, env = "QUINTET_KV_WRITE_FORMAT", value_enum, default_value_t = WriteFormat::Quintet)]
    pub kv_write_format: WriteFormat,

    /// Most AWS KMS calls per second (GenerateDataKey, Decrypt, Encrypt) from this instance;
    /// past it a call waits up to 1 s, then fails as unavailable (503). KMS's own quota is
    /// shared by every client of the account and region.
    #[arg(long, env = "QUINTET_KV_KMS_RATE_LIMIT", default_value_t = NonZeroU32::new(1000).expect("nonzero"))]
    pub kv_kms_rate_limit: NonZeroU32,

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

/// The layout `--kv-write-format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteFormat {
    /// quintet's own layout, with associated data.
    Quintet,
    /// The original services' DynamoDB layout (PHP twin), without associated data.
    Seed,
}

impl WriteFormat {
    pub fn record_format(self) -> domain::RecordFormat {
        match self {
            WriteFormat::Quintet => domain::RecordFormat::V1,
            WriteFormat::Seed => domain::RecordFormat::SeedLegacy,
        }
    }
}

/// What `--kv-key-provider` names.
#[derive(Debug, Clone, PartialEq)]
enum ProviderSpec {
    /// Master key files in this directory.
    LocalDir(PathBuf),
    /// Master keys from the data dir's `kv-keys` directory.
    LocalDefault,
    AwsKms {
        key_id: String,
        settings: AwsSettings,
    },
}

impl ProviderSpec {
    fn parse(text: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "unknown provider '{}'; use local, local:///dir or aws-kms://<key id or alias/name>",
                text.chars().take(40).collect::<String>()
            )
        };
        if text == "local" {
            return Ok(Self::LocalDefault);
        }
        if let Some(dir) = text.strip_prefix("local://") {
            return match dir {
                "" => Err("local:// needs a directory: local:///var/lib/quintet/keys".into()),
                dir => Ok(Self::LocalDir(dir.into())),
            };
        }
        let Some(rest) = text.strip_prefix("aws-kms://") else {
            return Err(unknown());
        };
        let (key_id, query) = rest.split_once('?').unwrap_or((rest, ""));
        if key_id.is_empty() {
            return Err(
                "aws-kms:// needs a key: aws-kms://alias/name or aws-kms://<key id or ARN>".into(),
            );
        }
        let (settings, _) = AwsSettings::from_query(query, &[])?;
        Ok(Self::AwsKms {
            key_id: key_id.to_owned(),
            settings,
        })
    }
}

impl KvConfig {
    /// Checks the options that need no I/O — the key provider's spec,
    /// `QUINTET_KV_MASTER_KEY` and the namespace — naming the option at fault.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.spec()?;
        self.master_keys()?;
        domain::Namespace::new(self.kv_namespace.clone())
            .map_err(|e| ConfigError::new("--kv-namespace", e))?;
        Ok(())
    }

    fn spec(&self) -> Result<ProviderSpec, ConfigError> {
        ProviderSpec::parse(&self.kv_key_provider)
            .map_err(|e| ConfigError::new("--kv-key-provider", e))
    }

    /// The local provider from `QUINTET_KV_MASTER_KEY`, when it is set.
    fn master_keys(&self) -> Result<Option<LocalKeyProvider>, ConfigError> {
        let Some(keys) = &self.kv_master_key else {
            return Ok(None);
        };
        if !matches!(self.spec()?, ProviderSpec::LocalDefault) {
            return Err(ConfigError::new(
                "QUINTET_KV_MASTER_KEY",
                "it is for the local provider only; unset it or use --kv-key-provider local",
            ));
        }
        LocalKeyProvider::from_env_value(keys)
            .map(Some)
            .map_err(|e| ConfigError::new("QUINTET_KV_MASTER_KEY", e))
    }

    /// The key provider the options name; AWS KMS is checked (`DescribeKey`)
    /// so a wrong key or unreachable endpoint fails the start.
    pub(crate) async fn provider(&self, data_dir: &Path) -> anyhow::Result<Arc<dyn KeyProvider>> {
        let spec = self.spec()?;
        if let Some(provider) = self.master_keys()? {
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
                    .map_err(|e| anyhow::anyhow!("--kv-key-provider: {e}"))?;
                tracing::info!(key = %key_id, "kv key provider: aws kms");
                return Ok(Arc::new(RateLimitedProvider::new(
                    Arc::new(kms),
                    self.kv_kms_rate_limit,
                    KMS_MAX_WAIT,
                )));
            }
        };
        let provider = LocalKeyProvider::open_dir(&dir)
            .map_err(|e| anyhow::anyhow!("--kv-key-provider: {e}"))?;
        tracing::info!(
            source = %dir.display(),
            "kv key provider: local, master keys from files (they protect data at rest only \
             where this directory is not copied with it: keep it off the data volume's backups, \
             or use QUINTET_KV_MASTER_KEY or aws-kms)"
        );
        Ok(Arc::new(provider))
    }
}

/// How long a KMS call waits for the rate limit before failing.
const KMS_MAX_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_specs_parse_and_name_what_is_wrong() {
        assert_eq!(ProviderSpec::parse("local"), Ok(ProviderSpec::LocalDefault));
        assert_eq!(
            ProviderSpec::parse("local:///k"),
            Ok(ProviderSpec::LocalDir("/k".into()))
        );
        let Ok(ProviderSpec::AwsKms { key_id, settings }) = ProviderSpec::parse(
            "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc?region=eu-west-1",
        ) else {
            panic!("an ARN parses");
        };
        assert_eq!(key_id, "arn:aws:kms:eu-west-1:111122223333:key/abc");
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert!(ProviderSpec::parse("aws-kms://").is_err());
        assert!(ProviderSpec::parse("local://").is_err());
        let err = ProviderSpec::parse("vault://x").expect_err("unknown");
        assert!(err.contains("unknown provider 'vault://x'"), "{err}");
        let err = ProviderSpec::parse("aws-kms://alias/x?token=1").expect_err("unknown param");
        assert!(err.contains("unknown parameter 'token'"), "{err}");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kv: KvConfig,
    }

    fn config(args: &[&str]) -> KvConfig {
        use clap::Parser;
        let mut all = vec!["quintet"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("test arguments parse").kv
    }

    #[test]
    fn check_names_the_option_at_fault_without_io() {
        assert!(config(&[]).check().is_ok());
        let err = config(&["--kv-key-provider", "aws-kmz://x"])
            .check()
            .expect_err("typo");
        assert_eq!(err.option, "--kv-key-provider");
        assert!(err.to_string().contains("aws-kms://"), "{err}");
        let err = config(&["--kv-key-provider", "local:///k", "--kv-master-key", "AAAA"])
            .check()
            .expect_err("master key with a key dir");
        assert_eq!(err.option, "QUINTET_KV_MASTER_KEY");
        let err = config(&["--kv-master-key", "not base64!"])
            .check()
            .expect_err("bad key");
        assert_eq!(err.option, "QUINTET_KV_MASTER_KEY");
        assert!(!err.to_string().contains("not base64!"), "{err}");
    }
}
