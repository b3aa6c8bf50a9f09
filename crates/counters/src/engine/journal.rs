//! The counters journal: every acknowledged increment, group-committed to
//! segment files in `<data-dir>/counters-journal/` by one thread.
//!
//! Operations arrive in one channel, in the order the engine made them: a
//! `Rotate { upto }` is sent while no increment can be sequenced, so every
//! record with `seq <= upto` is in a segment closed by that rotation or an
//! earlier one. Once the flush covering `upto` is committed to the store,
//! `Truncate { upto }` deletes those segments.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use platform::journal::Journal;
use tokio::sync::{mpsc, oneshot};

use crate::domain::CounterKey;

/// Most operations handled between two fsyncs.
const MAX_GROUP: usize = 4096;

/// One journaled increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Its sequence number, in the order increments were made.
    pub(crate) seq: u64,
    /// The key incremented.
    pub(crate) key: CounterKey,
    /// What was added.
    pub(crate) delta: i64,
}

impl Record {
    /// `seq: u64 LE | delta: i64 LE | key`
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.delta.to_le_bytes());
        out.extend_from_slice(self.key.as_str().as_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (seq, rest) = bytes.split_at_checked(8)?;
        let (delta, key) = rest.split_at_checked(8)?;
        Some(Self {
            seq: u64::from_le_bytes(seq.try_into().ok()?),
            delta: i64::from_le_bytes(delta.try_into().ok()?),
            // Accepted once under the limit in force then; a smaller limit now must not drop it.
            key: CounterKey::parse(String::from_utf8(key.to_vec()).ok()?, usize::MAX).ok()?,
        })
    }
}

/// Why an increment could not be journaled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// Writing or syncing the active segment failed (shared by every append
    /// of the group that failed with it).
    #[error("journal append failed")]
    Append(#[source] Arc<std::io::Error>),
    /// The journal thread is gone (the engine is stopping).
    #[error("journal thread stopped")]
    Stopped,
}

/// What the engine asks of the journal thread.
pub(crate) enum Op {
    /// Write `record`, then answer on `ack` once it is fsynced (or failed).
    Append {
        record: Record,
        ack: oneshot::Sender<Result<(), JournalError>>,
    },
    /// Close the active segment: every record up to `upto` is in a closed one.
    Rotate { upto: u64 },
    /// Delete the closed segments whose records are all at or below `upto`
    /// (the store has them).
    Truncate { upto: u64 },
}

struct Closed {
    max_seq: u64,
    path: PathBuf,
}

/// The segment files: one being appended to, the closed ones awaiting a flush.
pub(crate) struct Segments {
    /// Held for the life of the journal: two processes must never share one.
    _lock: std::fs::File,
    dir: PathBuf,
    active: Journal,
    active_index: u64,
    active_max: u64,
    closed: Vec<Closed>,
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.log"))
}

impl Segments {
    /// Opens the directory: every existing segment is closed (its records are
    /// returned for replay) and a new one is started.
    pub(crate) fn open(dir: &Path) -> std::io::Result<(Self, Vec<Record>)> {
        platform::private::create_dir(dir).map_err(std::io::Error::other)?;
        let mut options = std::fs::OpenOptions::new();
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        // A previous holder in this process may still be stopping: give it a moment.
        let mut attempts = 0;
        while lock.try_lock().is_err() {
            attempts += 1;
            if attempts == 20 {
                return Err(std::io::Error::other(format!(
                    "{} is in use by another quintet process; give each instance its own --data-dir",
                    dir.display()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let mut indexes: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(std::result::Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        indexes.sort_unstable();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        for index in &indexes {
            let path = segment_path(dir, *index);
            let (_, raw) = Journal::open(&path)?;
            let decoded: Vec<Record> = raw.iter().filter_map(|r| Record::decode(r)).collect();
            if decoded.len() != raw.len() {
                tracing::error!(path = %path.display(), "skipped journal records that do not decode");
            }
            match decoded.iter().map(|r| r.seq).max() {
                Some(max_seq) => closed.push(Closed { max_seq, path }),
                None => std::fs::remove_file(&path)?,
            }
            records.extend(decoded);
        }
        let active_index = indexes.last().map_or(1, |i| i + 1);
        let (active, _) = Journal::open(&segment_path(dir, active_index))?;
        Ok((
            Self {
                _lock: lock,
                dir: dir.to_path_buf(),
                active,
                active_index,
                active_max: 0,
                closed,
            },
            records,
        ))
    }

    fn rotate(&mut self, upto: u64) -> std::io::Result<()> {
        let next = self.active_index + 1;
        let (fresh, _) = Journal::open(&segment_path(&self.dir, next))?;
        let old = std::mem::replace(&mut self.active, fresh);
        if old.is_empty() {
            std::fs::remove_file(old.path())?;
        } else {
            self.closed.push(Closed {
                max_seq: self.active_max.max(upto),
                path: old.path().to_path_buf(),
            });
        }
        self.active_index = next;
        self.active_max = 0;
        Ok(())
    }

    fn truncate(&mut self, upto: u64) {
        self.closed.retain(|segment| {
            if segment.max_seq > upto {
                return true;
            }
            if let Err(error) = std::fs::remove_file(&segment.path) {
                tracing::warn!(%error, path = %segment.path.display(), "cannot delete a flushed journal segment");
            }
            false
        });
    }

    /// Makes the buffered appends durable and answers their callers.
    fn commit(&mut self, appends: &mut Vec<(Record, oneshot::Sender<Result<(), JournalError>>)>) {
        if appends.is_empty() {
            return;
        }
        let mut buffers: Vec<Vec<u8>> = Vec::with_capacity(appends.len());
        for (record, _) in appends.iter() {
            let mut buf = Vec::with_capacity(16 + record.key.as_str().len());
            record.encode(&mut buf);
            buffers.push(buf);
            self.active_max = self.active_max.max(record.seq);
        }
        let started = Instant::now();
        let result = self
            .active
            .append(buffers.iter().map(Vec::as_slice))
            .map_err(|e| JournalError::Append(Arc::new(e)));
        metrics::histogram!(crate::metrics::JOURNAL_SYNC_DURATION)
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!(crate::metrics::JOURNAL_GROUP_SIZE)
            .record(crate::metrics::count(appends.len()));
        if let Err(error) = &result {
            tracing::error!(error = %platform::backend::chain(error), "counters journal append failed");
        }
        for (_, ack) in appends.drain(..) {
            let _ = ack.send(result.clone());
        }
    }
}

/// The journal thread's loop; returns when every sender is gone.
pub(crate) fn run(mut segments: Segments, mut rx: mpsc::Receiver<Op>) {
    let mut appends = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        for op in ops {
            match op {
                Op::Append { record, ack } => appends.push((record, ack)),
                Op::Rotate { upto } => {
                    segments.commit(&mut appends);
                    if let Err(error) = segments.rotate(upto) {
                        tracing::error!(%error, "cannot start a new counters journal segment");
                    }
                }
                Op::Truncate { upto } => segments.truncate(upto),
            }
        }
        segments.commit(&mut appends);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_directory_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, _) = Segments::open(dir.path()).expect("open");
        let err = Segments::open(dir.path())
            .err()
            .expect("second open refused");
        assert!(
            err.to_string()
                .contains("in use by another quintet process"),
            "{err}"
        );
        drop(first);
        Segments::open(dir.path()).expect("free again");
    }

    #[test]
    fn records_round_trip() {
        let record = Record {
            seq: 7,
            key: CounterKey::parse("k é".into(), 16).expect("key"),
            delta: -3,
        };
        let mut buf = Vec::new();
        record.encode(&mut buf);
        assert_eq!(Record::decode(&buf), Some(record));
        assert_eq!(Record::decode(&buf[..10]), None);
    }

    #[test]
    fn segments_reopen_with_their_records_and_truncate_by_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = |s: &str| CounterKey::parse(s.into(), 16).expect("key");
        let (mut segments, replay) = Segments::open(dir.path()).expect("open");
        assert!(replay.is_empty());
        let (tx, _rx) = oneshot::channel();
        segments.commit(&mut vec![(
            Record {
                seq: 1,
                key: key("a"),
                delta: 1,
            },
            tx,
        )]);
        segments.rotate(1).expect("rotate");
        let (tx, _rx) = oneshot::channel();
        segments.commit(&mut vec![(
            Record {
                seq: 2,
                key: key("b"),
                delta: 2,
            },
            tx,
        )]);
        drop(segments);

        let (mut segments, replay) = Segments::open(dir.path()).expect("reopen");
        assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
        segments.truncate(1);
        drop(segments);
        let (_, replay) = Segments::open(dir.path()).expect("reopen");
        assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2]);
    }
}
