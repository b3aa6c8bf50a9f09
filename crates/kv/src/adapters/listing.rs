//! What the embedded adapters share over their ordered scans: one page of a
//! kv listing (records fed in key order), and the check `verify` makes of
//! each record.

use crate::domain::{Entry, KeyPrefix, KvKey, Page, PageLimit, RecordProblem, SealedRecord};

/// What `verify` finds wrong with one stored record, if anything: its key
/// must be a valid key, its bytes must parse, and `authenticate` must
/// accept it under that key. The embedded adapters' scans share it.
pub(crate) fn record_problem(
    key: &str,
    value: &[u8],
    authenticate: &mut dyn FnMut(&KvKey, &SealedRecord) -> Result<(), RecordProblem>,
) -> Option<String> {
    match KvKey::new(key) {
        Err(e) => Some(format!("stored key is not a valid key: {e}")),
        Ok(parsed) => match SealedRecord::decode(value) {
            Err(e) => Some(e.to_string()),
            Ok(record) => authenticate(&parsed, &record).err().map(|p| p.to_string()),
        },
    }
}

/// Collects the records of one page: those under `prefix`, after `after`,
/// at most `limit`; a record that does not parse is skipped and named.
pub(crate) struct PageBuilder<'a> {
    prefix: &'a KeyPrefix,
    after: Option<&'a KvKey>,
    limit: usize,
    entries: Vec<Entry>,
    corrupt: Vec<String>,
    next: Option<KvKey>,
}

impl<'a> PageBuilder<'a> {
    pub(crate) fn new(prefix: &'a KeyPrefix, after: Option<&'a KvKey>, limit: PageLimit) -> Self {
        Self {
            prefix,
            after,
            limit: limit.get() as usize,
            entries: Vec::new(),
            corrupt: Vec::new(),
            next: None,
        }
    }

    /// The key the engine's scan starts at (inclusive).
    pub(crate) fn start(&self) -> &'a str {
        match self.after {
            Some(after) if after.as_str() >= self.prefix.as_str() => after.as_str(),
            _ => self.prefix.as_str(),
        }
    }

    /// Takes the next stored record in key order; `false` once the page is
    /// complete (full, or past the prefix) and the scan should stop.
    pub(crate) fn push(&mut self, key: &str, value: &[u8]) -> bool {
        if !self.prefix.matches(key) {
            return false;
        }
        if self.after.is_some_and(|a| a.as_str() == key) {
            return true;
        }
        if self.entries.len() == self.limit {
            self.next = self.entries.last().map(|e| e.key.clone());
            return false;
        }
        // An unreadable record is skipped and named, not a failed page.
        let parsed = KvKey::new(key).map_err(|e| e.to_string()).and_then(|k| {
            SealedRecord::decode(value)
                .map(|r| (k, r))
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok((key, record)) => self.entries.push(Entry {
                key,
                size: record.plaintext_len(),
            }),
            Err(reason) => {
                let key: String = key.chars().take(300).collect();
                tracing::error!(key, reason, "skipped a corrupt kv record in a listing");
                self.corrupt.push(key);
            }
        }
        true
    }

    pub(crate) fn finish(self) -> Page {
        Page {
            entries: self.entries,
            next: self.next,
            corrupt: self.corrupt,
        }
    }
}
