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
