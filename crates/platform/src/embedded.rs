//! Embedded stores' files: every service's redb adapter opens its database
//! the same way (parent directory created owner-only, a new file made
//! owner-only, a clear error naming the path, a file held by another
//! process refused by redb's own lock).

use std::path::Path;

/// Opens the redb database at `path`, creating it and its directory if needed.
pub fn create_database(path: &Path) -> Result<redb::Database, String> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir).map_err(|e| e.to_string())?;
    }
    let new = !path.exists();
    let db =
        redb::Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    if new {
        crate::private::restrict_file(path).map_err(|e| e.to_string())?;
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
        assert!(err.contains("store.redb"), "{err}");
        drop(db);
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"x").expect("write");
        let err = create_database(&blocked.join("store.redb")).expect_err("parent is a file");
        assert!(err.contains("cannot create"), "{err}");
    }
}
