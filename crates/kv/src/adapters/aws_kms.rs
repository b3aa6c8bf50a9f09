//! AWS KMS key provider: data keys come from `GenerateDataKey` (AES-256)
//! under one KMS key (a key id, key ARN or `alias/…`), are unwrapped with
//! `Decrypt` and rewrapped with `Encrypt`. The KMS key never leaves KMS;
//! KMS rotates its own key material, so `add_key` is a no-op here.
//!
//! Wrapped keys carry the KMS key ARN as their id. `Decrypt` names that key
//! when known; seed 000's items carry no id, and KMS finds the key from the
//! ciphertext blob itself. The current key's ARN is resolved with
//! `DescribeKey` and cached for [`KEY_ID_TTL`], so retargeting an alias takes
//! effect within that time.
//!
//! Throttling and transient failures are retried by the SDK (standard mode:
//! exponential backoff with jitter, [`AwsSettings::max_attempts`] attempts)
//! within the settings' timeouts; past that a call is `Unavailable`.
//!
//! Plaintext data keys are copied out of the SDK's response into a
//! [`DataKey`] and the SDK's copy is zeroized and dropped at once. Copies the
//! SDK makes while (de)serialising the HTTP body are out of our reach.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use platform::backend::{BackendError, FailureKind};

use super::aws::{AwsSettings, sdk_config};
use crate::domain::{DataKey, WrappedKey};
use crate::ports::{KeyProvider, ProviderError, Refusal};

/// The engine name in errors.
const ENGINE: &str = "aws-kms";

/// What KMS answered that a call cannot use.
#[derive(Debug, thiserror::Error)]
pub enum KmsAnswerError {
    /// The configured key id is empty or too long.
    #[error("KMS key id must be a key id, key ARN or alias/… (1..=2048 bytes)")]
    BadKeyId,
    /// A response lacked a part it must have.
    #[error("response without {0}")]
    Missing(&'static str),
    /// The configured key is disabled.
    #[error("kms key {0} is disabled")]
    Disabled(String),
    /// `GenerateDataKey` returned something that is not a data key.
    #[error("returned a bad key: {0}")]
    BadKey(crate::domain::EnvelopeError),
}

/// A KMS call of `operation` answered something unusable.
fn bad_answer(operation: &'static str, error: KmsAnswerError) -> ProviderError {
    BackendError::new(ENGINE, operation, FailureKind::Other, error).into()
}

/// How long the resolved ARN of the configured key is reused.
pub const KEY_ID_TTL: Duration = Duration::from_mins(1);

/// `Decrypt` error codes meaning "this blob will never unwrap here": altered,
/// wrapped under another key, or under a key that does not exist or that we
/// may not use (KMS answers `AccessDeniedException` for a ciphertext whose key
/// is in another account or gone).
const REFUSED_CODES: &[&str] = &[
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "NotFoundException",
    "InvalidKeyUsageException",
    "AccessDeniedException",
];

/// A [`KeyProvider`] backed by one AWS KMS key.
pub struct AwsKmsProvider {
    client: Client,
    /// The key as configured: key id, ARN or `alias/…`.
    key_id: String,
    resolved: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for AwsKmsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKmsProvider")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn unavailable<E, R>(operation: &'static str, error: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    BackendError::aws(ENGINE, operation, error).into()
}

impl AwsKmsProvider {
    /// A provider for `key_id` (key id, key ARN or `alias/…`). Checks the key
    /// exists and is usable (`DescribeKey`), so a wrong id fails at start.
    pub async fn connect(settings: &AwsSettings, key_id: &str) -> Result<Self, ProviderError> {
        if key_id.is_empty() || key_id.len() > 2048 {
            return Err(BackendError::new(
                ENGINE,
                "connect",
                FailureKind::Rejected,
                KmsAnswerError::BadKeyId,
            )
            .into());
        }
        let provider = Self::connect_unchecked(settings, key_id).await;
        provider.current_key_id().await?;
        Ok(provider)
    }

    /// Like [`AwsKmsProvider::connect`] without calling KMS: problems show
    /// on the first call instead.
    pub async fn connect_unchecked(settings: &AwsSettings, key_id: &str) -> Self {
        let config = sdk_config(settings).await;
        Self {
            client: Client::new(&config),
            key_id: key_id.to_owned(),
            resolved: Mutex::new(None),
        }
    }

    /// The key as configured (id, ARN or alias).
    pub fn configured_key_id(&self) -> &str {
        &self.key_id
    }

    fn cached(&self) -> Option<String> {
        let guard = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*guard {
            Some((arn, at)) if at.elapsed() < KEY_ID_TTL => Some(arn.clone()),
            _ => None,
        }
    }

    fn remember(&self, arn: &str) {
        *self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((arn.to_owned(), Instant::now()));
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn kind(&self) -> &'static str {
        "aws-kms"
    }

    async fn current_key_id(&self) -> Result<String, ProviderError> {
        if let Some(arn) = self.cached() {
            return Ok(arn);
        }
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| unavailable("DescribeKey", e))?;
        let Some(meta) = out.key_metadata else {
            return Err(bad_answer(
                "DescribeKey",
                KmsAnswerError::Missing("key metadata"),
            ));
        };
        if !meta.enabled {
            return Err(BackendError::new(
                ENGINE,
                "DescribeKey",
                FailureKind::Rejected,
                KmsAnswerError::Disabled(self.key_id.clone()),
            )
            .into());
        }
        let arn = meta.arn.unwrap_or(meta.key_id);
        self.remember(&arn);
        Ok(arn)
    }

    async fn generate(&self) -> Result<(DataKey, WrappedKey), ProviderError> {
        let mut out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| unavailable("GenerateDataKey", e))?;
        let plaintext = out.plaintext.take().map(|b| Zeroizing::new(b.into_inner()));
        let (Some(plaintext), Some(blob)) = (plaintext, out.ciphertext_blob.take()) else {
            return Err(bad_answer(
                "GenerateDataKey",
                KmsAnswerError::Missing("plaintext or ciphertext"),
            ));
        };
        let dek = DataKey::from_slice(&plaintext)
            .map_err(|e| bad_answer("GenerateDataKey", KmsAnswerError::BadKey(e)))?;
        drop(plaintext);
        let key_id = match out.key_id.take() {
            Some(arn) => arn,
            None => self.current_key_id().await?,
        };
        Ok((
            dek,
            WrappedKey {
                key_id,
                bytes: blob.into_inner(),
            },
        ))
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, ProviderError> {
        let mut request = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped.bytes.clone()));
        if !wrapped.key_id.is_empty() {
            request = request.key_id(&wrapped.key_id);
        }
        let mut out = request.send().await.map_err(|e| {
            let code = e.code().unwrap_or_default();
            if matches!(e, SdkError::ServiceError(_)) && REFUSED_CODES.contains(&code) {
                Refusal::Kms(BackendError::aws(ENGINE, "Decrypt", e)).into()
            } else {
                unavailable("Decrypt", e)
            }
        })?;
        let Some(plaintext) = out.plaintext.take().map(|b| Zeroizing::new(b.into_inner())) else {
            return Err(bad_answer("Decrypt", KmsAnswerError::Missing("plaintext")));
        };
        Ok(DataKey::from_slice(&plaintext).map_err(Refusal::NotADataKey)?)
    }

    async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, ProviderError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.expose().to_vec()))
            .send()
            .await
            .map_err(|e| unavailable("Encrypt", e))?;
        let Some(blob) = out.ciphertext_blob else {
            return Err(bad_answer("Encrypt", KmsAnswerError::Missing("ciphertext")));
        };
        let key_id = match out.key_id {
            Some(arn) => arn,
            None => self.current_key_id().await?,
        };
        Ok(WrappedKey {
            key_id,
            bytes: blob.into_inner(),
        })
    }
}
