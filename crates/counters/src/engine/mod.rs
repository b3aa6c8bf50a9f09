//! The write-behind engine: increments are summed per key in memory (sharded,
//! no global lock), journaled before they are acknowledged (`journal`
//! durability), and flushed to the store in one batch per interval.
//!
//! Exactly once: every increment gets a sequence number. A flush takes the
//! pending deltas of every key up to sequence `P` and the store records `P`
//! for this instance in the same step as the totals; on start, journal records
//! with a sequence the store already has are skipped. A flush that fails is
//! retried with the same `P` and the same deltas, so it applies once.
//!
//! What a total means: this instance's pending and in-flight deltas plus the
//! store's total as it last read it (on first use of a key, and after each
//! flush that included the key). Other instances' increments show up there
//! once they have flushed and this instance has re-read the key.

pub mod journal;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::{self, Counter, CounterKey, DomainError, KeyPrefix, PageLimit};
use crate::ports::{CounterStore, FlushBatch, Page, StoreError};
use journal::{JournalError, Op, Record, Segments};

const SHARDS: usize = 64;
/// Journal operations waiting for the journal thread; beyond it, 503.
const JOURNAL_QUEUE: usize = 65_536;
/// First wait before retrying a failed flush.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two flush attempts while the store is failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The flusher's waits between attempts while the store fails: 100 ms,
/// doubling up to 5 s, no jitter, never giving up. A flush retries every
/// failure, transient or not: the batch holds acknowledged increments, and
/// giving up on it would lose them.
fn flush_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// When an increment counts as safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// Acknowledged after it is in the fsynced local journal: a crash loses nothing.
    Journal,
    /// Acknowledged from memory (the original behaviour): a crash loses what was not flushed.
    Memory,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// When an increment is acknowledged.
    pub durability: Durability,
    /// How often pending increments are flushed to the store.
    pub flush_interval: Duration,
    /// Flush early once this many keys have pending increments.
    pub flush_max_keys: usize,
    /// Keys with pending increments at most; beyond, new keys are refused.
    pub max_pending_keys: usize,
    /// Flushed totals kept in memory to answer without a store read.
    pub max_cached_keys: usize,
}

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The input was refused: a bad key, prefix or limit, or an overflow.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// The key has no total: it was never incremented.
    #[error("counter not found")]
    NotFound,
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A new key was refused: this many keys already wait for a flush.
    #[error("too many keys waiting for a flush ({0}); retry shortly")]
    TooManyPending(usize),
    /// The journal's queue is full.
    #[error("the journal is not keeping up; retry shortly")]
    JournalBusy,
    /// The journal failed to write the increment, which is not applied.
    #[error("the journal could not be written")]
    Journal(#[from] JournalError),
    /// The key's stored total kept changing under the read (evicted between
    /// reading and using it); worth retrying.
    #[error("the key's stored total could not be read")]
    BaseUnreadable,
}

#[derive(Debug, Default)]
struct Entry {
    /// The store's total as last read; `None` until read.
    base: Option<i64>,
    /// Deltas in the flush under way (or waiting for a retry).
    inflight: i64,
    /// Deltas since the last cut.
    pending: i64,
}

impl Entry {
    fn dirty(&self) -> bool {
        self.pending != 0 || self.inflight != 0
    }

    fn total(&self) -> Option<i64> {
        let sum = i128::from(self.base?) + i128::from(self.inflight) + i128::from(self.pending);
        i64::try_from(sum).ok()
    }
}

/// The engine of one `quintet serve` process.
pub struct Engine {
    store: Arc<dyn CounterStore>,
    instance: String,
    config: EngineConfig,
    hasher: RandomState,
    shards: Box<[Mutex<HashMap<CounterKey, Entry>>]>,
    /// Increments hold it shared while they take a sequence number and add
    /// their delta; a cut holds it exclusively, so a cut sees whole increments.
    barrier: RwLock<()>,
    next_seq: AtomicU64,
    /// The `seq` of the batch being flushed (or waiting for a retry): every
    /// entry's non-zero `inflight` belongs to it (one flush at a time).
    inflight_seq: AtomicU64,
    dirty_keys: AtomicUsize,
    /// The journal thread: appends (journal durability), rotations, truncations.
    journal: mpsc::Sender<Op>,
    flush_now: Notify,
    /// Every increment's metrics, resolved once rather than looked up by
    /// name on each request.
    pending_keys: metrics::Gauge,
    increments: metrics::Counter,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads (or creates) this data directory's instance id.
fn instance_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("counters.instance");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            platform::private::create_dir(data_dir).map_err(std::io::Error::other)?;
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = path.with_extension("tmp");
            {
                use std::io::Write as _;
                let mut options = std::fs::OpenOptions::new();
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                options
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)?
                    .write_all(id.as_bytes())?;
            }
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(id)
        }
    }
}

impl Engine {
    /// Opens the engine: its instance id and journal in `data_dir`, replaying
    /// journaled increments the store does not have yet.
    pub async fn open(
        store: Arc<dyn CounterStore>,
        data_dir: &Path,
        config: EngineConfig,
    ) -> anyhow::Result<Arc<Self>> {
        let instance = instance_id(data_dir)?;
        let flushed = store.flushed_seq(&instance).await?;
        // Even in memory mode, what an earlier journal-mode run left is applied;
        // its segments are deleted once the first flush has it.
        let (segments, records) = Segments::open(&data_dir.join("counters-journal"))?;
        let (journal, rx) = mpsc::channel(JOURNAL_QUEUE);
        std::thread::Builder::new()
            .name("counters-journal".into())
            .spawn(move || journal::run(segments, rx))?;
        metrics::gauge!(crate::metrics::MAX_PENDING_KEYS)
            .set(crate::metrics::count(config.max_pending_keys));
        let mut engine = Self {
            store,
            instance,
            config,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            barrier: RwLock::new(()),
            next_seq: AtomicU64::new(flushed + 1),
            inflight_seq: AtomicU64::new(0),
            dirty_keys: AtomicUsize::new(0),
            journal,
            flush_now: Notify::new(),
            pending_keys: metrics::gauge!(crate::metrics::PENDING_KEYS),
            increments: metrics::counter!(crate::metrics::INCREMENTS),
        };
        let mut replayed = 0;
        let mut max_seq = flushed;
        for record in records {
            max_seq = max_seq.max(record.seq);
            if record.seq <= flushed {
                continue;
            }
            let mut shard = lock(engine.shard(&record.key));
            let entry = shard.entry(record.key.clone()).or_default();
            let was_dirty = entry.dirty();
            match entry.pending.checked_add(record.delta) {
                Some(pending) => entry.pending = pending,
                None => {
                    tracing::error!(key = %record.key, "journal replay would overflow; record skipped");
                }
            }
            if !was_dirty && entry.dirty() {
                engine.dirty_keys.fetch_add(1, Ordering::Relaxed);
            }
            replayed += 1;
        }
        engine.next_seq = AtomicU64::new(max_seq + 1);
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                already_flushed_up_to = flushed,
                "replayed the counters journal"
            );
        }
        let engine = Arc::new(engine);
        if replayed > 0 {
            engine.flush_now.notify_one();
        }
        Ok(engine)
    }

    /// This data directory's instance id: the name its flushes are recorded
    /// under in the store.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    // Any bits of the hash pick a shard: dropping the high ones on a 32-bit
    // target is harmless.
    #[allow(clippy::cast_possible_truncation)]
    fn shard(&self, key: &CounterKey) -> &Mutex<HashMap<CounterKey, Entry>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Makes sure the key's stored total is known (one store read on first use).
    async fn ensure_base(&self, key: &CounterKey) -> Result<(), EngineError> {
        if lock(self.shard(key))
            .get(key)
            .is_some_and(|e| e.base.is_some())
        {
            return Ok(());
        }
        let (stored, flushed) = self.store.load_with_flushed(key, &self.instance).await?;
        let mut shard = lock(self.shard(key));
        let entry = shard.entry(key.clone()).or_default();
        if entry.base.is_none() {
            entry.base = Some(self.without_inflight(stored, flushed, entry).unwrap_or(0));
        }
        Ok(())
    }

    /// A stored total read while `entry` may have a batch in flight, made
    /// comparable with the entry: if the store already holds that batch
    /// (committed, not yet settled here), its delta is both in the total and
    /// in `entry.inflight`, so it is taken out of the total once.
    fn without_inflight(&self, stored: Option<i64>, flushed: u64, entry: &Entry) -> Option<i64> {
        match stored {
            Some(total)
                if entry.inflight != 0 && flushed >= self.inflight_seq.load(Ordering::SeqCst) =>
            {
                Some(total.saturating_sub(entry.inflight))
            }
            other => other,
        }
    }

    /// Adds `delta` to `key` and returns the key's new total.
    pub async fn increment(&self, key: CounterKey, delta: i64) -> Result<i64, EngineError> {
        // A clean entry may be evicted between reading its base and using it: read again.
        for _ in 0..3 {
            self.ensure_base(&key).await?;
            if let Some(outcome) = self.try_increment(&key, delta) {
                let (total, ack) = outcome?;
                if let Some(ack) = ack {
                    ack.await.map_err(|_| JournalError::Stopped)??;
                }
                let dirty = self.dirty_keys.load(Ordering::Relaxed);
                self.pending_keys.set(crate::metrics::count(dirty));
                self.increments.increment(1);
                if dirty >= self.config.flush_max_keys {
                    self.flush_now.notify_one();
                }
                return Ok(total);
            }
        }
        Err(EngineError::BaseUnreadable)
    }

    /// Sequences and applies one increment in memory; `None` if the key's base is unknown.
    // Used once, by `increment`, which unpacks it at once: an alias would hide the layers.
    #[allow(clippy::type_complexity)]
    fn try_increment(
        &self,
        key: &CounterKey,
        delta: i64,
    ) -> Option<Result<(i64, Option<oneshot::Receiver<Result<(), JournalError>>>), EngineError>>
    {
        let _cut = self
            .barrier
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut shard = lock(self.shard(key));
        let entry = shard.entry(key.clone()).or_default();
        let current = entry.total()?;
        Some((|| {
            let total = domain::add(key, current, delta)?;
            let pending = domain::add(key, entry.pending, delta)?;
            let was_dirty = entry.dirty();
            let dirty = self.dirty_keys.load(Ordering::Relaxed);
            if !was_dirty && dirty >= self.config.max_pending_keys {
                return Err(EngineError::TooManyPending(dirty));
            }
            let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
            let ack = if self.config.durability == Durability::Journal {
                let (ack, done) = oneshot::channel();
                let record = Record {
                    seq,
                    key: key.clone(),
                    delta,
                };
                self.journal
                    .try_send(Op::Append { record, ack })
                    .map_err(|_| EngineError::JournalBusy)?;
                Some(done)
            } else {
                None
            };
            entry.pending = pending;
            if !was_dirty && entry.dirty() {
                self.dirty_keys.fetch_add(1, Ordering::Relaxed);
            }
            Ok((total, ack))
        })())
    }

    /// The key's total as this instance knows it.
    pub async fn get(&self, key: &CounterKey) -> Result<i64, EngineError> {
        {
            let shard = lock(self.shard(key));
            if let Some(total) = shard.get(key).and_then(Entry::total) {
                return Ok(total);
            }
        }
        let (stored, flushed) = self.store.load_with_flushed(key, &self.instance).await?;
        let shard = lock(self.shard(key));
        // A flush may have committed and settled this key while the store was
        // read: its delta is then in the new base, not in `inflight`, and the
        // value just read may predate it.
        if let Some(total) = shard.get(key).and_then(Entry::total) {
            return Ok(total);
        }
        let stored = match shard.get(key) {
            Some(entry) => self.without_inflight(stored, flushed, entry),
            None => stored,
        };
        match (stored, shard.get(key)) {
            (None, None) => Err(EngineError::NotFound),
            (stored, entry) => {
                let (inflight, pending) = entry.map_or((0, 0), |e| (e.inflight, e.pending));
                let sum =
                    i128::from(stored.unwrap_or(0)) + i128::from(inflight) + i128::from(pending);
                i64::try_from(sum).map_err(|_| EngineError::NotFound)
            }
        }
    }

    /// A page of counters: the store's, merged with keys only this instance has pending.
    pub async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&CounterKey>,
        limit: PageLimit,
    ) -> Result<Page, EngineError> {
        let stored = self.store.page(prefix, after, limit).await?;
        let mut merged: std::collections::BTreeMap<CounterKey, i64> =
            stored.items.into_iter().map(|c| (c.key, c.value)).collect();
        // Keys beyond the store page's last key belong to a later page when the store page is full.
        let horizon = stored.next.clone();
        for shard in &self.shards {
            let shard = lock(shard);
            for (key, entry) in shard.iter().filter(|(k, e)| e.dirty() && prefix.matches(k)) {
                if after.is_some_and(|a| key <= a)
                    || horizon.as_ref().is_some_and(|h| key > h)
                    || stored.corrupt.iter().any(|c| c == key.as_str())
                {
                    continue;
                }
                let delta = i128::from(entry.inflight) + i128::from(entry.pending);
                let value = merged.get(key).copied().or(entry.base).unwrap_or(0);
                let total = i64::try_from(i128::from(value) + delta).unwrap_or(value);
                merged.insert(key.clone(), total);
            }
        }
        let more = merged.len() > limit.as_usize();
        let items: Vec<Counter> = merged
            .into_iter()
            .take(limit.as_usize())
            .map(|(key, value)| Counter { key, value })
            .collect();
        let next = if more || horizon.is_some() {
            items.last().map(|c| c.key.clone())
        } else {
            None
        };
        Ok(Page {
            items,
            next,
            corrupt: stored.corrupt,
        })
    }

    /// Takes every pending delta into one batch, up to the current sequence.
    fn cut(&self) -> Option<FlushBatch> {
        let _cut = self
            .barrier
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let upto = self.next_seq.load(Ordering::SeqCst) - 1;
        self.inflight_seq.store(upto, Ordering::SeqCst);
        let mut deltas = Vec::new();
        for shard in &self.shards {
            for (key, entry) in lock(shard).iter_mut() {
                if entry.pending != 0 {
                    entry.inflight = entry.pending;
                    entry.pending = 0;
                    deltas.push((key.clone(), entry.inflight));
                }
            }
        }
        if self.journal.try_send(Op::Rotate { upto }).is_err() {
            // The journal is saturated: undo, try again next round.
            for shard in &self.shards {
                for entry in lock(shard).values_mut() {
                    entry.pending += std::mem::take(&mut entry.inflight);
                }
            }
            return None;
        }
        Some(FlushBatch {
            instance: self.instance.clone(),
            seq: upto,
            deltas,
        })
    }

    /// Records a committed batch: bases become the store's totals.
    fn settle(&self, batch: &FlushBatch, totals: &[Counter]) {
        let totals: HashMap<&CounterKey, i64> = totals.iter().map(|c| (&c.key, c.value)).collect();
        for (key, _) in &batch.deltas {
            let mut shard = lock(self.shard(key));
            if let Some(entry) = shard.get_mut(key) {
                let was_dirty = entry.dirty();
                entry.inflight = 0;
                entry.base = totals.get(key).copied();
                if was_dirty && !entry.dirty() {
                    self.dirty_keys.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        // If the queue is full, a later flush's truncation covers these segments.
        let _ = self.journal.try_send(Op::Truncate { upto: batch.seq });
        self.evict();
    }

    /// Drops clean cached entries once there are more than `max_cached_keys`.
    fn evict(&self) {
        let per_shard = self.config.max_cached_keys.div_ceil(SHARDS);
        for shard in &self.shards {
            let mut shard = lock(shard);
            if shard.len() > per_shard {
                shard.retain(|_, e| e.dirty());
            }
        }
    }

    /// One flush: a retried batch if one failed, else a new cut. Returns the keys written.
    async fn flush_once(&self, retry: &mut Option<FlushBatch>) -> Result<usize, StoreError> {
        let batch = match retry.take() {
            Some(batch) => batch,
            None => match self.cut() {
                Some(batch) => batch,
                None => return Ok(0),
            },
        };
        if batch.deltas.is_empty() {
            // Nothing pending: every sequence up to the cut is in the store.
            let _ = self.journal.try_send(Op::Truncate { upto: batch.seq });
            return Ok(0);
        }
        let started = Instant::now();
        match self.store.apply(&batch).await {
            Ok(totals) => {
                metrics::histogram!(crate::metrics::FLUSH_DURATION)
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!(crate::metrics::FLUSH_KEYS)
                    .record(crate::metrics::count(batch.deltas.len()));
                self.settle(&batch, &totals);
                metrics::gauge!(crate::metrics::PENDING_KEYS).set(crate::metrics::count(
                    self.dirty_keys.load(Ordering::Relaxed),
                ));
                Ok(batch.deltas.len())
            }
            Err(error) => {
                metrics::counter!(crate::metrics::FLUSH_FAILURES).increment(1);
                *retry = Some(batch);
                Err(error)
            }
        }
    }

    /// The flusher: every `flush_interval`, or sooner when `flush_max_keys`
    /// are pending; retries with backoff while the store fails; flushes a last
    /// time when `stop` is cancelled.
    pub async fn run_flusher(self: Arc<Self>, stop: CancellationToken) {
        let mut retry = None;
        let mut backoff = flush_backoff();
        let mut retry_in = FIRST_BACKOFF;
        loop {
            let wait = if retry.is_some() {
                retry_in
            } else {
                self.config.flush_interval
            };
            let stopping = tokio::select! {
                () = tokio::time::sleep(wait) => false,
                () = self.flush_now.notified() => false,
                () = stop.cancelled() => true,
            };
            match self.flush_once(&mut retry).await {
                Ok(_) => backoff = flush_backoff(),
                Err(error) => {
                    retry_in = backoff.next().unwrap_or(MAX_BACKOFF);
                    tracing::warn!(
                        error = %platform::backend::chain(&error),
                        kind = %error_kind(&error),
                        retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                        "counters flush failed; will retry"
                    );
                }
            }
            if stopping {
                self.final_flush(&mut retry).await;
                return;
            }
        }
    }

    async fn final_flush(&self, retry: &mut Option<FlushBatch>) {
        // Whatever is still pending, including increments acknowledged during the drain.
        for attempt in 0..5 {
            match self.flush_once(retry).await {
                Ok(_) if retry.is_none() && self.dirty_keys.load(Ordering::Relaxed) == 0 => {
                    tracing::info!("counters flushed");
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %platform::backend::chain(&error), attempt, "final counters flush failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        let kept = if self.config.durability == Durability::Journal {
            "the journal keeps them for the next start"
        } else {
            "they are lost (memory durability)"
        };
        tracing::error!(
            pending_keys = self.dirty_keys.load(Ordering::Relaxed),
            "could not flush every counter before stopping; {kept}"
        );
    }
}

/// A store error's kind for the log: the backend's failure kind, or the
/// domain case.
fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Unavailable(backend) => backend.kind().as_str(),
        StoreError::Overflow { .. } => "overflow",
        StoreError::Corrupt { .. } => "corrupt",
    }
}
