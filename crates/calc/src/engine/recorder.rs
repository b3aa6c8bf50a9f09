//! The recorder: hands calculations to the event log without ever blocking
//! or failing the RPC that performed them.
//!
//! [`Recorder::record`] puts the event in a bounded buffer (never waits); one
//! background task writes the buffer to the log in batches, retrying with
//! backoff while the log is down. When the log stays down longer than the
//! buffer lasts, new events are dropped and counted
//! (`quintet_calc_events_dropped_total{reason="buffer_full"}`) rather than
//! held without bound. On shutdown the task writes what is buffered, with a
//! few last tries; what still cannot be written is counted as dropped
//! (`reason="shutdown"`).
//!
//! With `--calc-event-ack appended`, [`Recorder::record_appended`] is what
//! the unary RPCs use instead: the event joins the same buffer, the writer
//! appends at once (no linger) whatever has gathered, and the RPC answers
//! only when its event's first append attempt is done — every answered
//! calculation is then in the log, at least once (a caller that retries an
//! answer it never got may add a second). A failed attempt answers its
//! callers at once (they get UNAVAILABLE), and the writer keeps retrying the
//! batch as in the default mode, so those events may still land.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use metrics::{counter, gauge, histogram};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::event::CalculationPerformed;
use crate::metrics::{
    EVENT_APPEND_DURATION, EVENT_APPEND_FAILURES, EVENT_BUFFER_CAPACITY, EVENT_BUFFER_EVENTS,
    EVENT_LOG_UP, EVENTS_APPENDED, EVENTS_DROPPED,
};
use crate::ports::EventLog;

/// Most events one append carries.
pub const BATCH: usize = 8192;
/// How long the writer lets a batch fill after its first event: one append
/// (one durable commit, one round trip) per this interval under load
/// instead of one per handful of events; the events are at most this late.
const LINGER: Duration = Duration::from_millis(100);
/// First and longest wait between tries of a failing append.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Tries left for each batch once shutdown has begun.
const SHUTDOWN_TRIES: u32 = 3;

/// When a calculation is answered relative to its event's append
/// (`--calc-event-ack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EventAck {
    /// Answer at once; the event is appended within about 100 ms. A process
    /// killed in between loses the events it had not appended.
    #[default]
    Buffered,
    /// Answer after the event is appended (or fail with UNAVAILABLE when the
    /// append fails): every answered calculation is in the log.
    Appended,
}

/// Why an event that had to be appended before the answer was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRecorded {
    /// The append failed (the log is down); the writer keeps retrying it.
    #[error("the calc event log did not take the event")]
    LogFailed,
    /// The buffer is full: the log has been slow or down for a while.
    #[error("the calc event buffer is full (the event log is slow or down)")]
    BufferFull,
    /// The writer has stopped (the server is shutting down).
    #[error("the calc event writer has stopped")]
    Stopped,
}

/// One buffered event and, when its RPC waits for it, who to tell.
struct Entry {
    event: CalculationPerformed,
    appended: Option<oneshot::Sender<bool>>,
}

/// Where calculations are recorded. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    buffer: Option<mpsc::Sender<Entry>>,
    /// Events dropped by this recorder (also in the metrics).
    dropped: Arc<AtomicU64>,
    ack: EventAck,
    /// Raised by the writer while the log refuses appends: waiting callers
    /// are then refused at once instead of queueing behind the retries.
    down: Arc<AtomicBool>,
}

/// The writer half: run it as a background task (see [`Recorder::new`]).
pub struct Writer {
    log: Arc<dyn EventLog>,
    buffer: mpsc::Receiver<Entry>,
    dropped: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    /// Events taken out of the buffer when the log went down, to answer
    /// their waiting callers at once; written before anything newer (at
    /// most the buffer's capacity: only what was queued at that moment).
    held: Vec<CalculationPerformed>,
}

impl Recorder {
    /// A recorder buffering up to `capacity` events for `log`, and the writer task to run.
    pub fn new(log: Arc<dyn EventLog>, capacity: usize) -> (Self, Writer) {
        Self::with_ack(log, capacity, EventAck::Buffered)
    }

    /// [`Recorder::new`] with the given [`EventAck`].
    pub fn with_ack(log: Arc<dyn EventLog>, capacity: usize, ack: EventAck) -> (Self, Writer) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        gauge!(EVENT_BUFFER_CAPACITY).set(crate::metrics::count(capacity));
        // At 0 from the start, so alert rules see it before the first failure.
        counter!(EVENT_APPEND_FAILURES, "engine" => log.engine()).increment(0);
        let dropped = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        (
            Self {
                buffer: Some(tx),
                dropped: dropped.clone(),
                ack,
                down: down.clone(),
            },
            Writer {
                log,
                buffer: rx,
                dropped,
                down,
                held: Vec::new(),
            },
        )
    }

    /// A recorder that keeps nothing (`--calc-events none`).
    pub fn disabled() -> Self {
        Self {
            buffer: None,
            dropped: Arc::new(AtomicU64::new(0)),
            ack: EventAck::Buffered,
            down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether answers wait for their event's append ([`EventAck::Appended`]).
    pub fn waits(&self) -> bool {
        self.ack == EventAck::Appended && self.buffer.is_some()
    }

    /// How many events were dropped so far (buffer full, or unwritable at shutdown).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Buffers `event` for the log; never waits. A full buffer drops it (counted).
    pub fn record(&self, event: CalculationPerformed) {
        let _ = self.buffer(Entry {
            event,
            appended: None,
        });
    }

    /// Buffers `event` and waits until the writer's first attempt to append
    /// it is done: `Ok` once it is in the log. Refused at once (and counted
    /// as dropped) when the buffer is full or the writer stopped. Without a
    /// log (`--calc-events none`) there is nothing to wait for.
    ///
    /// # Errors
    /// [`NotRecorded`]: why the event is not (yet) in the log.
    pub async fn record_appended(&self, event: CalculationPerformed) -> Result<(), NotRecorded> {
        if self.buffer.is_none() {
            return Ok(());
        }
        // The log is refusing appends: say so now, not after the retries.
        // The calculation is not answered, so it need not be recorded.
        if self.down.load(Ordering::Relaxed) {
            return Err(NotRecorded::LogFailed);
        }
        let (tx, rx) = oneshot::channel();
        self.buffer(Entry {
            event,
            appended: Some(tx),
        })?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotRecorded::LogFailed),
            Err(_) => Err(NotRecorded::Stopped),
        }
    }

    fn buffer(&self, entry: Entry) -> Result<(), NotRecorded> {
        let Some(buffer) = &self.buffer else {
            return Ok(());
        };
        match buffer.try_send(entry) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS_DROPPED, "reason" => "buffer_full").increment(1);
                Err(NotRecorded::BufferFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS_DROPPED, "reason" => "stopped").increment(1);
                Err(NotRecorded::Stopped)
            }
        }
    }
}

/// Tells every waiting RPC of `batch` whether its event was appended.
fn answer(waiting: &mut Vec<oneshot::Sender<bool>>, appended: bool) {
    for tx in waiting.drain(..) {
        let _ = tx.send(appended);
    }
}

impl Writer {
    /// Writes buffered events until `stop`, then writes what is left and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        let engine = self.log.engine();
        let mut entries = Vec::with_capacity(BATCH);
        let mut batch = Vec::with_capacity(BATCH);
        let mut waiting = Vec::new();
        loop {
            if !self.held.is_empty() {
                let rest = self.held.split_off(self.held.len().min(BATCH));
                batch = std::mem::replace(&mut self.held, rest);
                self.write(&batch, &mut waiting, engine, &stop).await;
                batch.clear();
                if stop.is_cancelled() {
                    break;
                }
                continue;
            }
            let received = tokio::select! {
                biased;
                n = self.buffer.recv_many(&mut entries, BATCH) => n,
                () = stop.cancelled() => break,
            };
            if received == 0 {
                break;
            }
            // An RPC waiting for its event is not kept waiting for more.
            let anyone_waits = entries.iter().any(|e: &Entry| e.appended.is_some());
            if entries.len() < BATCH && !anyone_waits {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(LINGER) => {}
                }
                while entries.len() < BATCH {
                    match self.buffer.try_recv() {
                        Ok(entry) => entries.push(entry),
                        Err(_) => break,
                    }
                }
            }
            split(&mut entries, &mut batch, &mut waiting);
            gauge!(EVENT_BUFFER_EVENTS).set(crate::metrics::count(self.buffer.len()));
            self.write(&batch, &mut waiting, engine, &stop).await;
            batch.clear();
        }
        // Whatever the RPCs recorded before the listener drained is in the buffer.
        self.buffer.close();
        let mut left = 0;
        for chunk in std::mem::take(&mut self.held).chunks(BATCH) {
            if !self.write_at_shutdown(chunk, engine).await {
                left += chunk.len();
            }
        }
        loop {
            entries.clear();
            if self.buffer.recv_many(&mut entries, BATCH).await == 0 {
                break;
            }
            split(&mut entries, &mut batch, &mut waiting);
            let appended = self.write_at_shutdown(&batch, engine).await;
            answer(&mut waiting, appended);
            if !appended {
                left += batch.len();
            }
            batch.clear();
        }
        gauge!(EVENT_BUFFER_EVENTS).set(0.0);
        if left > 0 {
            self.dropped.fetch_add(left as u64, Ordering::Relaxed);
            counter!(EVENTS_DROPPED, "reason" => "shutdown").increment(left as u64);
            tracing::error!(
                events = left,
                engine,
                "event log unreachable at shutdown; events dropped"
            );
        }
        self.log.close().await;
    }

    /// Appends `batch`, retrying with backoff until it is written or `stop`
    /// is raised (then shutdown's own tries take over).
    async fn write(
        &mut self,
        batch: &[CalculationPerformed],
        waiting: &mut Vec<oneshot::Sender<bool>>,
        engine: &'static str,
        stop: &CancellationToken,
    ) {
        // Every failure is retried, whatever its kind: the batch is events
        // already answered for (or being answered UNAVAILABLE, which a
        // caller may retry), and giving up on it would drop them.
        let mut backoff = append_backoff();
        let mut failing_since: Option<Instant> = None;
        loop {
            let appended = self.append(batch, engine).await;
            // The waiting RPCs hear the first attempt's outcome.
            answer(waiting, appended);
            if appended {
                if let Some(since) = failing_since {
                    tracing::info!(engine, down_for = ?since.elapsed(), "event log reachable again");
                }
                gauge!(EVENT_LOG_UP).set(1.0);
                self.down.store(false, Ordering::Relaxed);
                return;
            }
            gauge!(EVENT_LOG_UP).set(0.0);
            if !self.down.swap(true, Ordering::Relaxed) {
                // Callers queued behind this batch hear now that the log is
                // down; their events are held and written first once it is back.
                while let Ok(entry) = self.buffer.try_recv() {
                    if let Some(tx) = entry.appended {
                        let _ = tx.send(false);
                    }
                    self.held.push(entry.event);
                }
            }
            failing_since.get_or_insert_with(Instant::now);
            tokio::select! {
                () = tokio::time::sleep(jitter(backoff.next().unwrap_or(MAX_BACKOFF))) => {}
                () = stop.cancelled() => {
                    if !self.write_at_shutdown(batch, engine).await {
                        self.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        counter!(EVENTS_DROPPED, "reason" => "shutdown")
                            .increment(batch.len() as u64);
                    }
                    return;
                }
            }
        }
    }

    async fn write_at_shutdown(
        &self,
        batch: &[CalculationPerformed],
        engine: &'static str,
    ) -> bool {
        for attempt in 0..SHUTDOWN_TRIES {
            if attempt > 0 {
                tokio::time::sleep(jitter(FIRST_BACKOFF)).await;
            }
            if self.append(batch, engine).await {
                return true;
            }
        }
        false
    }

    async fn append(&self, batch: &[CalculationPerformed], engine: &'static str) -> bool {
        let started = Instant::now();
        let outcome = self.log.append(batch).await;
        histogram!(EVENT_APPEND_DURATION, "engine" => engine)
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                counter!(EVENTS_APPENDED, "engine" => engine).increment(batch.len() as u64);
                true
            }
            Err(error) => {
                counter!(EVENT_APPEND_FAILURES, "engine" => engine).increment(1);
                tracing::warn!(error = %platform::backend::chain(&error), engine, events = batch.len(), "appending calc events failed; will retry");
                false
            }
        }
    }
}

/// Moves `entries` into the events to append and the RPCs waiting for them.
fn split(
    entries: &mut Vec<Entry>,
    batch: &mut Vec<CalculationPerformed>,
    waiting: &mut Vec<oneshot::Sender<bool>>,
) {
    for entry in entries.drain(..) {
        batch.push(entry.event);
        waiting.extend(entry.appended);
    }
}

/// The waits between failed appends before jitter: 100 ms doubling up to
/// 5 s, never giving up (shutdown ends the loop). Jitter is [`jitter`]'s
/// ±25% around each wait.
fn append_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// `base` ± up to 25%, so many writers do not retry in step.
fn jitter(base: Duration) -> Duration {
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let quarter = millis / 4;
    Duration::from_millis((millis - quarter).saturating_add(rand::random_range(0..=quarter * 2)))
}
