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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use metrics::{counter, gauge, histogram};
use tokio::sync::mpsc;
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

/// Where calculations are recorded. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    buffer: Option<mpsc::Sender<CalculationPerformed>>,
    /// Events dropped by this recorder (also in the metrics).
    dropped: Arc<AtomicU64>,
}

/// The writer half: run it as a background task (see [`Recorder::new`]).
pub struct Writer {
    log: Arc<dyn EventLog>,
    buffer: mpsc::Receiver<CalculationPerformed>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder buffering up to `capacity` events for `log`, and the writer task to run.
    pub fn new(log: Arc<dyn EventLog>, capacity: usize) -> (Self, Writer) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        gauge!(EVENT_BUFFER_CAPACITY).set(crate::metrics::count(capacity));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                buffer: Some(tx),
                dropped: dropped.clone(),
            },
            Writer {
                log,
                buffer: rx,
                dropped,
            },
        )
    }

    /// A recorder that keeps nothing (`--calc-events none`).
    pub fn disabled() -> Self {
        Self {
            buffer: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many events were dropped so far (buffer full, or unwritable at shutdown).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Buffers `event` for the log; never waits. A full buffer drops it (counted).
    pub fn record(&self, event: CalculationPerformed) {
        let Some(buffer) = &self.buffer else {
            return;
        };
        match buffer.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS_DROPPED, "reason" => "buffer_full").increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(EVENTS_DROPPED, "reason" => "stopped").increment(1);
            }
        }
    }
}

impl Writer {
    /// Writes buffered events until `stop`, then writes what is left and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        let engine = self.log.engine();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let received = tokio::select! {
                biased;
                n = self.buffer.recv_many(&mut batch, BATCH) => n,
                () = stop.cancelled() => break,
            };
            if received == 0 {
                break;
            }
            if batch.len() < BATCH {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(LINGER) => {}
                }
                while batch.len() < BATCH {
                    match self.buffer.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
            }
            gauge!(EVENT_BUFFER_EVENTS).set(crate::metrics::count(self.buffer.len()));
            self.write(&batch, engine, &stop).await;
            batch.clear();
        }
        // Whatever the RPCs recorded before the listener drained is in the buffer.
        self.buffer.close();
        let mut left = 0;
        loop {
            batch.clear();
            if self.buffer.recv_many(&mut batch, BATCH).await == 0 {
                break;
            }
            if !self.write_at_shutdown(&batch, engine).await {
                left += batch.len();
            }
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
        &self,
        batch: &[CalculationPerformed],
        engine: &'static str,
        stop: &CancellationToken,
    ) {
        // Every failure is retried, whatever its kind: the batch is events
        // already answered for, and giving up on it would drop them.
        let mut backoff = append_backoff();
        let mut failing_since: Option<Instant> = None;
        loop {
            if self.append(batch, engine).await {
                if let Some(since) = failing_since {
                    tracing::info!(engine, down_for = ?since.elapsed(), "event log reachable again");
                }
                gauge!(EVENT_LOG_UP).set(1.0);
                return;
            }
            gauge!(EVENT_LOG_UP).set(0.0);
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
