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

/// Block cache of one fjall database: the blocks of recent reads.
const FJALL_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// A keyspace's memtable: recent writes held in memory until they are
/// written out as a table (the journal holds them on disk meanwhile).
/// Smaller than fjall's 64 MiB default: a store has a few keyspaces, and a
/// server a few stores.
pub const FJALL_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

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

/// What moving a store from one engine's file to another's did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Records in the old store.
    pub total: u64,
    /// Copied by this run (the rest were copied by an interrupted one).
    pub copied: u64,
    /// Compared byte for byte in the new store after the copy.
    pub verified: u64,
    /// Records the old store could not give (an order entry naming nothing):
    /// nothing to copy; `quintet verify` of the old file names them.
    pub unreadable: u64,
    /// Where the old file was moved once the copy verified.
    pub old_file: PathBuf,
}

/// Why a migration stopped. Nothing is lost: run it again to resume. `E`
/// is the store's own error (reading the old store, writing the new one).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError<E: std::error::Error + 'static> {
    /// The old file could not be opened (in use by a running server, unreadable).
    #[error(transparent)]
    Open(crate::integrity::ScanOpenError),
    /// Reading the old store or writing the new one failed.
    #[error("{}", crate::backend::chain(.0))]
    Store(E),
    /// A copied record does not read back as it was stored.
    #[error(
        "{record} reads back differently from {} than from {}: the new store is left in \
         place, the old file untouched; run `quintet verify` on the new store",
        new.display(),
        old.display()
    )]
    Mismatch {
        /// Which record (`message <digest>`, `the record under key "…"`).
        record: String,
        /// The old file.
        old: PathBuf,
        /// The new store.
        new: PathBuf,
    },
    /// The verified old file could not be renamed aside.
    #[error("cannot rename {} to {}: {source}", from.display(), to.display())]
    Rename {
        /// The old file.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

/// The name an old store file gets once its records are in the new store.
pub fn migrated_name(old: &Path) -> PathBuf {
    let mut name = old.as_os_str().to_owned();
    name.push(".migrated");
    PathBuf::from(name)
}

/// Renames the old store file aside once its records verified in the new
/// store (the step that makes a migration final).
pub fn retire<E: std::error::Error + 'static>(old: &Path) -> Result<PathBuf, MigrateError<E>> {
    let to = migrated_name(old);
    std::fs::rename(old, &to).map_err(|source| MigrateError::Rename {
        from: old.to_path_buf(),
        to: to.clone(),
        source,
    })?;
    Ok(to)
}

/// Runs `migrate` (given a progress callback) when the old store file `old`
/// exists, logging its start, its progress every ten seconds and its counts
/// at the end: what a server does on start with a store an earlier engine
/// wrote, before it opens the new one.
pub fn migrate_logged<E>(
    store: &'static str,
    old: &Path,
    new: &Path,
    migrate: impl FnOnce(&mut dyn FnMut(u64, u64)) -> Result<Migrated, E>,
) -> Result<(), E> {
    if !old.exists() {
        return Ok(());
    }
    tracing::info!(
        store,
        from = %old.display(),
        to = %new.display(),
        "migrating a store from redb to fjall (resumable; the old file is kept as *.migrated)"
    );
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let report = migrate(&mut |done, total| {
        if last.elapsed() >= std::time::Duration::from_secs(10) {
            last = std::time::Instant::now();
            tracing::info!(store, done, total, "migrating");
        }
    })?;
    tracing::info!(
        store,
        total = report.total,
        copied = report.copied,
        verified = report.verified,
        unreadable = report.unreadable,
        old_file = %report.old_file.display(),
        seconds = started.elapsed().as_secs_f64(),
        "store migrated and verified"
    );
    Ok(())
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
