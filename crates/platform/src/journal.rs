//! An append-only journal with group commit: many records, one `fdatasync`.
//!
//! Services use it to acknowledge a write as soon as it is durable here, and
//! apply it to their store later (write-behind, checkpoints). Blocking I/O:
//! call it from a dedicated thread, never from the async runtime.
//!
//! Each record is framed as `len: u32 LE | crc32: u32 LE | payload`. On open,
//! records are read back until the first frame that is short or fails its
//! checksum — the tail a crash left half written, which no caller was ever
//! told was durable — and the file is cut there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest payload one record may carry.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
const HEADER: usize = 8;

/// An open journal file.
pub struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    buffer: Vec<u8>,
}

impl Journal {
    /// Opens (or creates) the journal and returns the intact records it holds, oldest first.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<Vec<u8>>)> {
        if let Some(dir) = path.parent() {
            crate::private::create_dir(dir).map_err(io::Error::other)?;
        }
        let mut options = OpenOptions::new();
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let (records, intact) = read_records(&mut file)?;
        let on_disk = file.metadata()?.len();
        if intact < on_disk {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = on_disk - intact,
                "journal ends in a torn record (a crash mid-write); cutting it off"
            );
            file.set_len(intact)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(intact))?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
                len: intact,
                buffer: Vec::new(),
            },
            records,
        ))
    }

    /// Appends the records and makes them durable with one `fdatasync`.
    pub fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        self.buffer.clear();
        for payload in records {
            let len = match u32::try_from(payload.len()) {
                Ok(len) if payload.len() <= MAX_RECORD_BYTES => len,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "journal record too large",
                    ));
                }
            };
            self.buffer.extend_from_slice(&len.to_le_bytes());
            self.buffer
                .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            self.buffer.extend_from_slice(payload);
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(error) = self
            .file
            .write_all(&self.buffer)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no partial frame behind for the next append to follow.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(error);
        }
        self.len += self.buffer.len() as u64;
        Ok(())
    }

    /// Empties the journal once everything in it is durable elsewhere.
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.sync_all()?;
        self.len = 0;
        Ok(())
    }

    /// Bytes currently in the journal.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads frames from the start; returns the payloads and where the intact part ends.
fn read_records(file: &mut File) -> io::Result<(Vec<Vec<u8>>, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&mut *file);
    let mut records = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        if !read_full(&mut reader, &mut header)? {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD_BYTES {
            break;
        }
        let mut payload = vec![0u8; len];
        if !read_full(&mut reader, &mut payload)? || crc32fast::hash(&payload) != crc {
            break;
        }
        offset += (HEADER + len) as u64;
        records.push(payload);
    }
    Ok((records, offset))
}

/// Fills `buf`; `false` when the file ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let (mut journal, records) = Journal::open(&path).expect("open");
        assert!(records.is_empty());
        journal
            .append([b"one".as_slice(), b"two".as_slice()])
            .expect("append");
        journal
            .append([b"".as_slice(), b"three".as_slice()])
            .expect("append");
        drop(journal);
        let (journal, records) = Journal::open(&path).expect("reopen");
        assert_eq!(
            records,
            vec![
                b"one".to_vec(),
                b"two".to_vec(),
                b"".to_vec(),
                b"three".to_vec()
            ]
        );
        assert_eq!(journal.len(), std::fs::metadata(&path).expect("meta").len());
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append([b"kept".as_slice()]).expect("append");
        journal.append([b"torn away".as_slice()]).expect("append");
        drop(journal);
        // Simulate a crash mid-write: lose the last 3 bytes of the second record.
        let len = std::fs::metadata(&path).expect("meta").len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(len - 3)
            .expect("cut");
        let (mut journal, records) = Journal::open(&path).expect("reopen");
        assert_eq!(records, vec![b"kept".to_vec()]);
        journal.append([b"after".as_slice()]).expect("append");
        drop(journal);
        let (_, records) = Journal::open(&path).expect("reopen");
        assert_eq!(records, vec![b"kept".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn a_corrupt_record_ends_the_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal
            .append([
                b"good".as_slice(),
                b"flipped".as_slice(),
                b"after".as_slice(),
            ])
            .expect("append");
        drop(journal);
        let mut bytes = std::fs::read(&path).expect("read");
        let second_payload = HEADER + 4 + HEADER;
        bytes[second_payload] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        let (_, records) = Journal::open(&path).expect("reopen");
        assert_eq!(records, vec![b"good".to_vec()]);
    }

    #[test]
    fn reset_empties_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let (mut journal, _) = Journal::open(&path).expect("open");
        journal.append([b"x".as_slice()]).expect("append");
        journal.reset().expect("reset");
        assert!(journal.is_empty());
        drop(journal);
        assert!(Journal::open(&path).expect("reopen").1.is_empty());
    }
}
