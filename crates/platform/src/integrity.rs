//! Checking what the embedded stores hold: the shared vocabulary of every
//! redb adapter's `verify` scan, the `quarantine` table corrupt records are
//! moved into, and the checksum the records that carry one use.
//!
//! Not here: what a record looks like (each adapter owns its format) and how
//! an answer is rendered (each service's edges).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use redb::{Database, TableDefinition, WriteTransaction};

use crate::backend::BackendError;

/// Where `quintet verify --quarantine` moves a corrupt record, in the same
/// database: `<table>/<key>` → the record's stored bytes, untouched, for an
/// operator to inspect. No service reads this table.
pub const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");

/// What every corrupt-record answer tells the operator to do.
pub const VERIFY_HINT: &str = "stop the server and run `quintet verify --data-dir <dir>` to list corrupt records \
     (`--quarantine` moves them aside)";

/// One record that failed its check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The table it is stored in.
    pub table: &'static str,
    /// Its key, printable (hex for binary keys).
    pub key: String,
    /// What failed, in words for an operator.
    pub problem: String,
}

/// What one store's scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Records read.
    pub scanned: u64,
    /// Records that failed their check.
    pub corrupt: Vec<CorruptRecord>,
    /// Records written before their format had a check (read as they are).
    pub unchecked: u64,
    /// Corrupt records moved into [`QUARANTINE`].
    pub quarantined: u64,
}

/// Told how far a scan is: `(records done, records in all)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Why a store file could not be opened for a scan; each case names it.
#[derive(Debug, thiserror::Error)]
pub enum ScanOpenError {
    /// This process or another already holds the file open.
    #[error(
        "{} is in use by another process: stop the quintet server that uses this data \
         directory, then run verify again",
        path.display()
    )]
    InUse {
        /// The store file.
        path: PathBuf,
    },
    /// Another process holds the file's lock.
    #[error(
        "{} is locked by another process: stop the quintet server that uses this data \
         directory, then run verify again",
        path.display()
    )]
    Locked {
        /// The store file.
        path: PathBuf,
    },
    /// Anything else redb refused (missing, not a database, I/O).
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The store file.
        path: PathBuf,
        /// redb's reason.
        #[source]
        source: redb::DatabaseError,
    },
}

/// Opens an existing store file for a scan. redb's lock refuses a file a
/// running server holds; the error then says so.
pub fn open_existing(path: &Path) -> Result<Database, ScanOpenError> {
    let path_buf = || path.to_path_buf();
    match Database::open(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(ScanOpenError::InUse { path: path_buf() })
        }
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Err(ScanOpenError::Locked { path: path_buf() })
        }
        Err(source) => Err(ScanOpenError::Open {
            path: path_buf(),
            source,
        }),
    }
}

/// Copies a record's stored bytes into [`QUARANTINE`] under `<table>/<key>`.
/// The caller removes it from its own table in the same transaction.
pub fn quarantine(
    txn: &WriteTransaction,
    table: &str,
    key: &str,
    stored: &[u8],
) -> Result<(), BackendError> {
    let mut quarantine = txn
        .open_table(QUARANTINE)
        .map_err(|e| BackendError::redb("open quarantine table", e))?;
    quarantine
        .insert(format!("{table}/{key}").as_str(), stored)
        .map_err(|e| BackendError::redb("quarantine record", e))?;
    Ok(())
}

/// CRC-32 (IEEE) over the parts in order: a record's checksum, covering its
/// key and its fields, so a flipped bit in either is seen.
pub fn checksum(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// Printable form of a binary key.
pub fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => text.chars().take(300).collect(),
        _ => format!("0x{}", hex_encode(key)),
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sees_a_flip_in_any_part() {
        let sum = checksum(&[b"key", b"value"]);
        assert_ne!(sum, checksum(&[b"kez", b"value"]));
        assert_ne!(sum, checksum(&[b"key", b"valud"]));
        assert_eq!(sum, checksum(&[b"keyvalue"]));
    }

    #[test]
    fn a_held_file_is_refused_with_a_clear_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let held = Database::create(&path).expect("create");
        let err = open_existing(&path).expect_err("held");
        assert!(matches!(err, ScanOpenError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("stop the quintet server"), "{err}");
        drop(held);
        open_existing(&path).expect("free again");
        let err = open_existing(&dir.path().join("missing.redb")).expect_err("missing");
        assert!(err.to_string().contains("missing.redb"), "{err}");
    }

    #[test]
    fn binary_keys_print_as_hex() {
        assert_eq!(printable(b"abc"), "abc");
        assert_eq!(printable(&[0, 255]), "0x00ff");
    }
}
