//! The local key provider: 256-bit master keys that wrap data keys with
//! AES-256-GCM (ring). Master keys come from files in `<data-dir>/kv-keys/`
//! (`master-v1.key`, `master-v2.key`, …; base64, mode 0600, the first created
//! on first start; the highest version is current) or from an environment
//! value (comma-separated base64 keys, the last current). Older versions stay
//! to unwrap what they wrapped.
//!
//! A key id is `local:v<version>:<fingerprint>`, the fingerprint being the
//! first 8 hex digits of SHA-256 over the key: it tells which key wrapped a
//! data key without revealing anything about it. Wrapped form: nonce(12) ‖
//! ciphertext(32) ‖ tag(16), with the key id as associated data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use platform::backend::{BackendError, FailureKind};
use secrecy::{ExposeSecret as _, SecretString};

use crate::domain::{DataKey, WrappedKey};
use crate::ports::{KeyProvider, ProviderError, Refusal};

/// The engine name in errors.
const ENGINE: &str = "local-keys";
/// A wrapped key: nonce(12) ‖ ciphertext(32) ‖ tag(16).
const WRAPPED_LEN: usize = 12 + 32 + 16;

/// Why the local master keys could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum LocalKeyError {
    /// The key directory or a key file is not owner-only.
    #[error(transparent)]
    NotPrivate(#[from] platform::private::PrivateError),
    /// A key directory or file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file could not be created or written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// What could not be written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file does not hold base64.
    #[error("{} is not base64", path.display())]
    FileNotBase64 {
        /// The key file.
        path: PathBuf,
    },
    /// A key of the environment value is not base64 (the value is never repeated).
    #[error("master key {index} is not base64")]
    NotBase64 {
        /// Its position, from 1.
        index: usize,
    },
    /// A key is not 32 bytes.
    #[error("master key v{version} is {len} bytes; it must be 32 (base64 of 32 random bytes)")]
    Length {
        /// The key's version.
        version: u32,
        /// Its length in bytes.
        len: usize,
    },
    /// ring refused the key.
    #[error("master key v{version} is not a valid AES-256 key")]
    Invalid {
        /// The key's version.
        version: u32,
    },
    /// The environment value holds no key.
    #[error("no master key given")]
    Empty,
    /// Keys from the environment cannot be added to (they change by restart).
    #[error("master keys given by environment cannot be added to")]
    FromEnvironment,
    /// More keys than a version number counts.
    #[error("too many master keys")]
    TooMany,
    /// The system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

struct MasterKey {
    id: String,
    key: LessSafeKey,
}

fn master_key(version: u32, bytes: &[u8]) -> Result<MasterKey, LocalKeyError> {
    if bytes.len() != 32 {
        return Err(LocalKeyError::Length {
            version,
            len: bytes.len(),
        });
    }
    let fingerprint = hex::encode(&Sha256::digest(bytes)[..4]);
    let key =
        UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| LocalKeyError::Invalid { version })?;
    Ok(MasterKey {
        id: format!("local:v{version}:{fingerprint}"),
        key: LessSafeKey::new(key),
    })
}

/// Where the master keys live.
enum Source {
    Dir(PathBuf),
    Env,
}

/// Master keys held in memory, the last one current.
pub struct LocalKeyProvider {
    keys: RwLock<Vec<MasterKey>>,
    source: Source,
}

impl LocalKeyProvider {
    /// Keys from `dir` (`master-v<N>.key`), creating `master-v1.key` if there is none.
    /// The directory and every key file must be owner-only (refused, with
    /// the `chmod` that fixes it, otherwise).
    pub fn open_dir(dir: &Path) -> Result<Self, LocalKeyError> {
        platform::private::dir(dir, "--kv-key-provider directory")?;
        let mut versions = Vec::new();
        let unreadable = |source| LocalKeyError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let entries = std::fs::read_dir(dir).map_err(unreadable)?;
        for entry in entries {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_prefix("master-v")
                .and_then(|rest| rest.strip_suffix(".key"))
                .and_then(|v| v.parse::<u32>().ok())
            {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        let mut keys = Vec::with_capacity(versions.len());
        for version in versions {
            let path = dir.join(format!("master-v{version}.key"));
            platform::private::file(&path, "master key file")?;
            let text = SecretString::from(std::fs::read_to_string(&path).map_err(|source| {
                LocalKeyError::Read {
                    path: path.clone(),
                    source,
                }
            })?);
            let bytes = Zeroizing::new(
                BASE64
                    .decode(text.expose_secret().trim())
                    .map_err(|_| LocalKeyError::FileNotBase64 { path: path.clone() })?,
            );
            keys.push(master_key(version, &bytes)?);
        }
        let provider = Self {
            keys: RwLock::new(keys),
            source: Source::Dir(dir.to_path_buf()),
        };
        if provider.read().is_empty() {
            provider.create_next()?;
        }
        Ok(provider)
    }

    /// Keys from an environment value: comma-separated base64, the last current.
    pub fn from_env_value(value: &SecretString) -> Result<Self, LocalKeyError> {
        let mut keys = Vec::new();
        for (i, part) in value.expose_secret().split(',').map(str::trim).enumerate() {
            let bytes = Zeroizing::new(
                BASE64
                    .decode(part)
                    .map_err(|_| LocalKeyError::NotBase64 { index: i + 1 })?,
            );
            let version = u32::try_from(i + 1).map_err(|_| LocalKeyError::TooMany)?;
            keys.push(master_key(version, &bytes)?);
        }
        if keys.is_empty() {
            return Err(LocalKeyError::Empty);
        }
        Ok(Self {
            keys: RwLock::new(keys),
            source: Source::Env,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<MasterKey>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `master-v<next>.key` (0600, fsynced) and makes it current.
    fn create_next(&self) -> Result<String, LocalKeyError> {
        let Source::Dir(dir) = &self.source else {
            return Err(LocalKeyError::FromEnvironment);
        };
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let version = u32::try_from(keys.len() + 1).map_err(|_| LocalKeyError::TooMany)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| LocalKeyError::Random)?;
        let key = master_key(version, bytes.as_ref())?;
        let path = dir.join(format!("master-v{version}.key"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let unwritable = |source| LocalKeyError::Write {
            path: path.clone(),
            source,
        };
        let mut file = options.open(&path).map_err(unwritable)?;
        let text = Zeroizing::new(BASE64.encode(bytes.as_ref()));
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(unwritable)?;
        let id = key.id.clone();
        keys.push(key);
        Ok(id)
    }

    fn wrap_under_current(&self, dek: &DataKey) -> Result<WrappedKey, ProviderError> {
        let keys = self.read();
        let current = keys.last().ok_or_else(no_master_key)?;
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| failure("wrap", LocalKeyError::Random))?;
        let mut buffer = Vec::with_capacity(WRAPPED_LEN);
        buffer.extend_from_slice(&nonce);
        buffer.extend_from_slice(dek.expose());
        let (head, body) = buffer.split_at_mut(12);
        let tag = current
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(current.id.as_bytes()),
                body,
            )
            .map_err(|_| BackendError::bare(ENGINE, "wrap", FailureKind::Other))?;
        let _ = head;
        buffer.extend_from_slice(tag.as_ref());
        Ok(WrappedKey {
            key_id: current.id.clone(),
            bytes: buffer,
        })
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn current_key_id(&self) -> Result<String, ProviderError> {
        self.read()
            .last()
            .map(|k| k.id.clone())
            .ok_or_else(no_master_key)
    }

    async fn generate(&self) -> Result<(DataKey, WrappedKey), ProviderError> {
        let dek = DataKey::generate()
            .map_err(|e| BackendError::new(ENGINE, "generate", FailureKind::Other, e))?;
        let wrapped = self.wrap_under_current(&dek)?;
        Ok((dek, wrapped))
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, ProviderError> {
        let keys = self.read();
        let master = keys
            .iter()
            .find(|k| k.id == wrapped.key_id)
            .ok_or_else(|| {
                Refusal::UnknownKeyId(wrapped.key_id.chars().take(64).collect::<String>())
            })?;
        if wrapped.bytes.len() != WRAPPED_LEN {
            return Err(Refusal::Length {
                expected: WRAPPED_LEN,
                actual: wrapped.bytes.len(),
            }
            .into());
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&wrapped.bytes[..12]);
        let mut body = Zeroizing::new(wrapped.bytes[12..].to_vec());
        let plain = master
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(master.id.as_bytes()),
                body.as_mut_slice(),
            )
            .map_err(|_| Refusal::Authentication)?;
        Ok(DataKey::from_slice(plain).map_err(Refusal::NotADataKey)?)
    }

    async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, ProviderError> {
        self.wrap_under_current(key)
    }

    async fn add_key(&self) -> Result<bool, ProviderError> {
        match self.source {
            Source::Env => Ok(false),
            Source::Dir(_) => self
                .create_next()
                .map(|_| true)
                .map_err(|e| failure("add key", e)),
        }
    }
}

/// A provider call failed on something local (I/O, the random number generator).
fn failure(operation: &'static str, error: LocalKeyError) -> ProviderError {
    BackendError::new(ENGINE, operation, FailureKind::Other, error).into()
}

/// The provider holds no key (never true once opened).
fn no_master_key() -> ProviderError {
    BackendError::bare(ENGINE, "current key", FailureKind::Other).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_start_creates_a_private_key_file_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("kv-keys");
        let provider = LocalKeyProvider::open_dir(&keys).expect("open");
        let (dek, wrapped) = provider.generate().await.expect("generate");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join("master-v1.key"))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&keys).expect("dir").permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o700,
                "the key directory is created owner-only"
            );
            // A key directory group or others can reach is refused, with the fix.
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o750)).expect("chmod");
            let err = LocalKeyProvider::open_dir(&keys).err().expect("refused");
            assert!(err.to_string().contains("chmod 700"), "{err}");
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        assert!(!wrapped.bytes.windows(32).any(|w| w == dek.expose()));
        let reopened = LocalKeyProvider::open_dir(&keys).expect("reopen");
        let unwrapped = reopened.unwrap(&wrapped).await.expect("unwrap");
        assert_eq!(unwrapped.expose(), dek.expose());
    }

    #[tokio::test]
    async fn a_new_key_becomes_current_and_old_wraps_still_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let provider = LocalKeyProvider::open_dir(&dir.path().join("kv-keys")).expect("open");
        let (dek, old) = provider.generate().await.expect("generate");
        assert!(provider.add_key().await.expect("add"));
        let current = provider.current_key_id().await.expect("current");
        assert!(current.starts_with("local:v2:"), "{current}");
        assert_ne!(current, old.key_id);
        let rewrapped = provider.wrap(&dek).await.expect("wrap");
        assert_eq!(rewrapped.key_id, current);
        for w in [&old, &rewrapped] {
            assert_eq!(
                provider.unwrap(w).await.expect("unwrap").expose(),
                dek.expose()
            );
        }
    }

    #[tokio::test]
    async fn tampered_or_foreign_wrapped_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let provider = LocalKeyProvider::open_dir(&dir.path().join("kv-keys")).expect("open");
        let (_, wrapped) = provider.generate().await.expect("generate");
        for i in 0..wrapped.bytes.len() {
            let mut bad = wrapped.clone();
            bad.bytes[i] ^= 1;
            assert!(matches!(
                provider.unwrap(&bad).await,
                Err(ProviderError::Refused(_))
            ));
        }
        let mut foreign = wrapped.clone();
        foreign.key_id = "local:v1:00000000".into();
        assert!(matches!(
            provider.unwrap(&foreign).await,
            Err(ProviderError::Refused(_))
        ));
        let other =
            LocalKeyProvider::from_env_value(&BASE64.encode([7u8; 32]).into()).expect("env");
        assert!(matches!(
            other.unwrap(&wrapped).await,
            Err(ProviderError::Refused(_))
        ));
        assert!(!other.add_key().await.expect("env keys"));
    }

    #[test]
    fn bad_env_keys_are_refused_without_echoing_them() {
        let err = LocalKeyProvider::from_env_value(&"c2VjcmV0".into())
            .err()
            .expect("refused");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        assert!(LocalKeyProvider::from_env_value(&"!!".into()).is_err());
    }
}
