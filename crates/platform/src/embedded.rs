//! Embedded stores' files: every service's redb adapter opens its database
//! the same way (parent directory created owner-only, a new file made
//! owner-only, a clear error naming the path, a file held by another
//! process refused by redb's own lock).

use std::path::{Path, PathBuf};

use crate::backend::{BackendError, FailureKind};
use crate::private::PrivateError;

/// Why a store file could not be opened; each case names the path.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its directory could not be created (or made owner-only).
    #[error(transparent)]
    Directory(PrivateError),
    /// redb refused the file: held by another process, not a database, I/O.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The store file.
        path: PathBuf,
        /// redb's reason.
        #[source]
        source: redb::DatabaseError,
    },
    /// The new file could not be made owner-only.
    #[error(transparent)]
    Restrict(PrivateError),
}

/// "redb open: error", with the whole [`OpenError`] (path and cause) as source.
impl From<OpenError> for BackendError {
    fn from(error: OpenError) -> Self {
        BackendError::new("redb", "open", FailureKind::Other, error)
    }
}

/// Why a keyspace directory could not be opened; each case names the path.
#[derive(Debug, thiserror::Error)]
pub enum KeyspaceOpenError {
    /// The directory (or its parent) could not be created owner-only.
    #[error(transparent)]
    Directory(PrivateError),
    /// Another process holds the directory's lock.
    #[error(
        "{} is locked by another process: stop the quintet server (or migrate) that uses this \
         data directory, then try again",
        path.display()
    )]
    Locked {
        /// The keyspace directory.
        path: PathBuf,
    },
    /// A whole journal batch fails its checksum (bit rot, or a write that
    /// was not fjall's): it may hold acknowledged writes, so fjall refuses
    /// to drop it. A batch cut short by a crash is not this: it is dropped
    /// on open, as it was never acknowledged.
    #[error(
        "the journal in {} is corrupt ({source:?}): a whole batch fails its checksum, and it \
         may hold acknowledged writes; restore the directory from a backup",
        path.display()
    )]
    Journal {
        /// The keyspace directory.
        path: PathBuf,
        /// fjall's reason.
        source: fjall::Error,
    },
    /// fjall refused the directory: not a database, a newer format, I/O.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The keyspace directory.
        path: PathBuf,
        /// fjall's reason.
        #[source]
        source: fjall::Error,
    },
}

/// "fjall open: error", with the whole [`KeyspaceOpenError`] as source.
impl From<KeyspaceOpenError> for BackendError {
    fn from(error: KeyspaceOpenError) -> Self {
        BackendError::new("fjall", "open", FailureKind::Other, error)
    }
}

/// Block cache of one fjall database: the blocks of recent reads, beside
/// the memtable (64 MiB by default, per keyspace) that holds recent writes.
const FJALL_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (or creates) the fjall database in the directory `dir`, made
/// owner-only; a directory another process holds is refused by fjall's lock.
///
/// fjall keeps a write-ahead journal: a batch committed with
/// `durability(Some(PersistMode::SyncData))` is on disk when `commit`
/// returns, and a torn journal tail (a crash mid-write) is cut back to the
/// last whole batch on the next open.
pub fn open_keyspaces(dir: &Path) -> Result<fjall::Database, KeyspaceOpenError> {
    crate::private::create_dir(dir).map_err(KeyspaceOpenError::Directory)?;
    fjall::Database::builder(dir)
        .cache_size(FJALL_CACHE_BYTES)
        .worker_threads(2)
        .open()
        .map_err(|source| match source {
            fjall::Error::Locked => KeyspaceOpenError::Locked {
                path: dir.to_path_buf(),
            },
            source @ fjall::Error::JournalRecovery(_) => KeyspaceOpenError::Journal {
                path: dir.to_path_buf(),
                source,
            },
            source => KeyspaceOpenError::Open {
                path: dir.to_path_buf(),
                source,
            },
        })
}

/// Opens the redb database at `path`, creating it and its directory if needed.
pub fn create_database(path: &Path) -> Result<redb::Database, OpenError> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir).map_err(OpenError::Directory)?;
    }
    let new = !path.exists();
    let db = redb::Database::create(path).map_err(|source| OpenError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if new {
        crate::private::restrict_file(path).map_err(OpenError::Restrict)?;
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyspace_directory_is_owner_only_and_held_by_one_opener() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/store.fjall");
        let db = open_keyspaces(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("dir").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        let Err(err) = open_keyspaces(&path) else {
            panic!("a second open of a held directory succeeded");
        };
        assert!(matches!(err, KeyspaceOpenError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("store.fjall"), "{err}");
        drop(db);
        open_keyspaces(&path).expect("reopened once released");
    }

    #[test]
    fn creates_the_directory_and_names_the_path_when_it_cannot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/store.redb");
        let db = create_database(&path).expect("created");
        assert!(path.exists());
        let err = create_database(&path).expect_err("held by this process");
        assert!(matches!(err, OpenError::Open { .. }), "{err}");
        assert!(err.to_string().contains("store.redb"), "{err}");
        drop(db);
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"x").expect("write");
        let err = create_database(&blocked.join("store.redb")).expect_err("parent is a file");
        assert!(err.to_string().contains("cannot create"), "{err}");
        let backend = BackendError::from(err);
        assert_eq!(backend.to_string(), "redb open: error");
        assert!(
            crate::backend::chain(&backend).contains("cannot create"),
            "{backend}"
        );
    }
}
