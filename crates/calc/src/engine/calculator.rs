//! The calculator as the interfaces see it: every method validates, computes
//! (prime work on the blocking pool, a bounded number at a time, stopped when
//! the caller goes away) and records one `CalculationPerformed` — answered,
//! refused or cancelled — without waiting on the event log, or, with
//! `--calc-event-ack appended`, answering a unary call only once its event
//! is in the log (a `Primes` stream's event follows the stream).
//!
//! gRPC and REST both call this, so both behave and record the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::counter;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::domain::event::{CalculationPerformed, EventQuery, Outcome, StoredEvent};
use crate::domain::{self, CalcError, MAX_VALUES, Operation, primes};
use crate::engine::recorder::Recorder;
use crate::ports::{EventLog, EventLogError};

/// The limits the server enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest n for `NthPrimes`.
    pub max_n: u64,
    /// Widest `Primes` range.
    pub max_range: u64,
    /// Prime computations running at once; more wait their turn.
    pub max_sieves: usize,
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// There is no event log to read (`--calc-events none`).
    #[error("the event log is turned off (--calc-events none)")]
    Disabled,
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] EventLogError),
}

/// The calculator behind both APIs: computes within its limits, records an
/// event for every calculation, and reads the history back.
pub struct Calculator {
    limits: Limits,
    recorder: Recorder,
    log: Option<Arc<dyn EventLog>>,
    sieves: Arc<Semaphore>,
}

impl Calculator {
    /// `log` is where history is read from (`None` when events are off).
    pub fn new(limits: Limits, recorder: Recorder, log: Option<Arc<dyn EventLog>>) -> Self {
        Self {
            limits,
            recorder,
            log,
            sieves: Arc::new(Semaphore::new(limits.max_sieves.max(1))),
        }
    }

    /// `a op b` for the binary operations (add, subtract, multiply, divide).
    ///
    /// # Errors
    /// The operation's refusal, or [`CalcError::NotRecorded`].
    pub async fn binary(
        &self,
        op: Operation,
        a: i64,
        b: i64,
        request_id: &str,
    ) -> Result<i64, CalcError> {
        let answer = op.apply(a, b);
        self.event(op.name(), request_id, json!({"a": a, "b": b}))
            .settle(Outcome::of(&answer))
            .await?;
        answer
    }

    /// `Max`/`Min` over the values.
    ///
    /// # Errors
    /// The operation's refusal, or [`CalcError::NotRecorded`].
    pub async fn fold(
        &self,
        op: Operation,
        values: &[i64],
        request_id: &str,
    ) -> Result<i64, CalcError> {
        let answer = domain::fold(op, values);
        self.event(op.name(), request_id, json!({"values": values}))
            .settle(Outcome::of(&answer))
            .await?;
        answer
    }

    /// The n-th prime for each n, in the order asked. Dropping the future
    /// (client gone, deadline passed) stops the sieve at its next segment.
    pub async fn nth_primes(&self, n: Vec<u64>, request_id: &str) -> Result<Vec<u64>, CalcError> {
        let event = self.event("nth_primes", request_id, json!({"n": &n}));
        let answer = self.sieve_nth(n).await;
        event.settle(Outcome::of(&answer)).await?;
        answer
    }

    async fn sieve_nth(&self, n: Vec<u64>) -> Result<Vec<u64>, CalcError> {
        if n.is_empty() {
            return Err(CalcError::NoValues { what: "n" });
        }
        if n.len() > MAX_VALUES {
            return Err(CalcError::TooManyValues {
                what: "n",
                got: n.len(),
                max: MAX_VALUES,
            });
        }
        let max_n = self.limits.max_n;
        let biggest = n.iter().copied().max().unwrap_or(0);
        // Refused before queueing for a sieve slot.
        if biggest > max_n {
            return Err(CalcError::NTooLarge {
                n: biggest,
                max: max_n,
            });
        }
        let _permit = if biggest > primes::TABLE_LEN as u64 {
            Some(
                self.sieves
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| CalcError::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        tokio::task::spawn_blocking(move || {
            primes::nth_primes(&n, max_n, &|| cancelled.load(Ordering::Acquire))
        })
        .await
        .map_err(|e| CalcError::Internal(format!("prime computation failed: {e}")))?
    }

    /// Every prime in `[from, to]`, as chunks on the returned channel; the
    /// sieve stops when the receiver is dropped. Refusals come back before
    /// anything is streamed.
    pub async fn primes(
        &self,
        from: u64,
        to: u64,
        request_id: &str,
    ) -> Result<mpsc::Receiver<Result<Vec<u64>, CalcError>>, CalcError> {
        let event = self.event("primes", request_id, json!({"from": from, "to": to}));
        let max_range = self.limits.max_range;
        let refused = if from > to {
            Some(CalcError::InvertedRange { from, to })
        } else if to - from >= max_range {
            Some(CalcError::RangeTooLarge {
                width: to - from + 1,
                max: max_range,
            })
        } else if to > primes::MAX_HI {
            Some(CalcError::HiTooLarge {
                hi: to,
                max: primes::MAX_HI,
            })
        } else {
            None
        };
        if let Some(error) = refused {
            event
                .settle(Outcome::Error {
                    kind: error.kind().to_owned(),
                    message: error.to_string(),
                })
                .await?;
            return Err(error);
        }
        let permit = self
            .sieves
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| CalcError::Internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut count: u64 = 0;
            let cancelled = || tx.is_closed();
            let mut sink = |chunk: &[u64]| {
                count += chunk.len() as u64;
                tx.blocking_send(Ok(chunk.to_vec())).is_ok()
            };
            let outcome = primes::primes_in_range(from, to, max_range, &cancelled, &mut sink);
            let outcome = match outcome {
                Ok(()) if tx.is_closed() => Err(CalcError::Cancelled),
                other => other,
            };
            if let Err(error) = &outcome
                && !matches!(error, CalcError::Cancelled)
            {
                let _ = tx.blocking_send(Err(error.clone()));
            }
            event.finish(Outcome::of(&outcome.map(|()| json!({"count": count}))));
        });
        Ok(rx)
    }

    /// A page of the event log.
    pub async fn history(&self, query: EventQuery) -> Result<Vec<StoredEvent>, HistoryError> {
        let log = self.log.as_ref().ok_or(HistoryError::Disabled)?;
        Ok(log.read(query).await?)
    }

    fn event(&self, method: &'static str, request_id: &str, input: serde_json::Value) -> Pending {
        Pending {
            recorder: self.recorder.clone(),
            method,
            request_id: request_id.to_owned(),
            input: Some(input),
        }
    }
}

/// A calculation under way: recorded once with its outcome, or as
/// cancelled if it is dropped first (the caller went away mid-computation).
struct Pending {
    recorder: Recorder,
    method: &'static str,
    request_id: String,
    input: Option<serde_json::Value>,
}

impl Pending {
    fn finish(mut self, outcome: Outcome) {
        if let Some(event) = self.event(outcome) {
            self.recorder.record(event);
        }
    }

    /// Records the outcome; with `--calc-event-ack appended`, returns once
    /// the event is in the log, or why it is not.
    async fn settle(mut self, outcome: Outcome) -> Result<(), CalcError> {
        let Some(event) = self.event(outcome) else {
            return Ok(());
        };
        if !self.recorder.waits() {
            self.recorder.record(event);
            return Ok(());
        }
        self.recorder
            .record_appended(event)
            .await
            .map_err(|why| CalcError::NotRecorded(why.to_string()))
    }

    /// The event of this calculation, once (counted as it is made).
    fn event(&mut self, outcome: Outcome) -> Option<CalculationPerformed> {
        let input = self.input.take()?;
        let label = match &outcome {
            Outcome::Result(_) => "ok",
            Outcome::Error { .. } => "error",
        };
        counter!(crate::metrics::CALCULATIONS, "method" => self.method, "outcome" => label)
            .increment(1);
        Some(CalculationPerformed::now(
            self.method,
            &self.request_id,
            input,
            outcome,
        ))
    }

    fn record(&mut self, outcome: Outcome) {
        if let Some(event) = self.event(outcome) {
            self.recorder.record(event);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let cancelled = CalcError::Cancelled;
        self.record(Outcome::Error {
            kind: cancelled.kind().to_owned(),
            message: cancelled.to_string(),
        });
    }
}

/// Raised when dropped: the RPC future's end (completed, cancelled or timed out).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}
