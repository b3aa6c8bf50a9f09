//! Event log on NATS `JetStream`: each event is one message (JSON) on a
//! subject of a file-backed stream; the stream sequence is the event's
//! position. A read is an ephemeral pull consumer starting at the asked
//! position (or time), acknowledging nothing, deleted after the page.
//!
//! Publishing waits for `JetStream`'s acknowledgement of every message in the
//! batch, so an appended batch is stored. A batch that fails half-way may be
//! partly stored and is retried whole by the recorder: events carry their
//! request id and time, so a reader can tell a repeat (at-least-once).
//!
//! [`NatsEventLog::connect_in_background`] does not wait for the server: a
//! task keeps trying (jittered exponential backoff, capped, each failure
//! logged at warn) while every call fails as unavailable, naming the server.
//! The recorder buffers events meanwhile and readiness (`ping`) says the log
//! is not reached, so a server that is down at start leaves calc running and
//! not ready instead of exiting (a crash loop under an orchestrator). Once
//! connected, the client reconnects by itself with the same backoff.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use platform::backend::{BackendError, FailureKind};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};
use crate::ports::{EventLog, EventLogError, decode_event};

/// The stream and subject used when the URL names none.
pub const DEFAULT_STREAM: &str = "QUINTET_CALC_EVENTS";
/// The subject events are published on when the URL names none.
pub const DEFAULT_SUBJECT: &str = "quintet.calc.events";

/// Bound on connecting and on each request to the server.
const TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between connection attempts (±25% jitter).
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Events in a NATS `JetStream` stream, reached by a background connector.
pub struct NatsEventLog {
    state: Arc<RwLock<State>>,
    /// `host:port` of the server, without credentials: for messages.
    endpoint: String,
    stream: String,
    subject: String,
    /// Stops the background connector on close.
    connector: CancellationToken,
}

enum State {
    /// Not reached yet; the last attempt's error.
    Connecting {
        last_error: String,
    },
    Open(Box<Connection>),
    Closed,
}

struct Connection {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// Maps a failure met during `operation` on NATS to the port's error, as
/// `kind` (the client's errors do not say more than that the server was not
/// reached or did not answer).
fn failed<E: Into<platform::backend::BoxError>>(
    operation: &'static str,
    kind: FailureKind,
) -> impl FnOnce(E) -> EventLogError {
    move |error| EventLogError::Unavailable(BackendError::new("nats", operation, kind, error))
}

/// `host:port` of `nats://[user:password@]host:port`.
fn endpoint(server: &str) -> String {
    let authority = server.trim_start_matches("nats://");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_owned()
}

/// `base` ± up to 25%, so many instances do not retry in step.
fn jitter(base: Duration) -> Duration {
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    let quarter = millis / 4;
    Duration::from_millis((millis - quarter).saturating_add(rand::random_range(0..=quarter * 2)))
}

/// The wait before reconnect attempt `attempt` (1-based): none for the
/// first, then doubling from [`FIRST_RETRY`] up to [`MAX_RETRY`], jittered.
fn retry_delay(attempt: usize) -> Duration {
    if attempt <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(16);
    jitter(FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY))
}

/// Connects once and makes sure the stream exists.
async fn open(
    server: &str,
    stream: &str,
    subject: &str,
) -> Result<(async_nats::Client, jetstream::Context), EventLogError> {
    let client = async_nats::ConnectOptions::new()
        .name("quintet-calc")
        .connection_timeout(TIMEOUT)
        .request_timeout(Some(TIMEOUT))
        // Reconnects after a connection was lost (the client logs them).
        .reconnect_delay_callback(retry_delay)
        .connect(server)
        .await
        .map_err(|e| {
            failed("connect", FailureKind::Unreachable)(format!(
                "cannot connect to NATS at {}: {e}",
                endpoint(server)
            ))
        })?;
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(stream::Config {
        name: stream.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        description: Some("quintet calc: one CalculationPerformed per message".into()),
        ..Default::default()
    })
    .await
    .map_err(|e| {
        failed("create stream", FailureKind::Unreachable)(format!(
            "cannot create JetStream stream {stream}: {e}"
        ))
    })?;
    Ok((client, js))
}

impl NatsEventLog {
    /// Connects to `server` (`nats://host:4222`) and creates the stream if
    /// it is missing; fails if either cannot be done now.
    pub async fn connect(server: &str, stream: &str, subject: &str) -> Result<Self, EventLogError> {
        let (client, js) = open(server, stream, subject).await?;
        Ok(Self {
            state: Arc::new(RwLock::new(State::Open(Box::new(Connection {
                client,
                js,
            })))),
            endpoint: endpoint(server),
            stream: stream.to_owned(),
            subject: subject.to_owned(),
            connector: CancellationToken::new(),
        })
    }

    /// A log that connects (and creates the stream) in the background,
    /// retrying until it succeeds or the log is closed; until then every
    /// call fails as unavailable. Needs a Tokio runtime.
    pub fn connect_in_background(server: &str, stream: &str, subject: &str) -> Self {
        let log = Self {
            state: Arc::new(RwLock::new(State::Connecting {
                last_error: format!("first attempt to reach {} under way", endpoint(server)),
            })),
            endpoint: endpoint(server),
            stream: stream.to_owned(),
            subject: subject.to_owned(),
            connector: CancellationToken::new(),
        };
        tokio::spawn(connect_until_done(
            log.state.clone(),
            log.connector.clone(),
            server.to_owned(),
            log.stream.clone(),
            log.subject.clone(),
        ));
        log
    }

    /// The `JetStream` context, or why there is none.
    async fn js(&self) -> Result<jetstream::Context, EventLogError> {
        match &*self.state.read().await {
            State::Open(connection) => Ok(connection.js.clone()),
            State::Connecting { last_error } => Err(failed("call", FailureKind::Unreachable)(
                format!("not connected to NATS yet, retrying: {last_error}"),
            )),
            State::Closed => Err(BackendError::closed("nats").into()),
        }
    }
}

/// The background connector: tries, waits, tries again, until connected or stopped.
async fn connect_until_done(
    state: Arc<RwLock<State>>,
    stop: CancellationToken,
    server: String,
    stream: String,
    subject: String,
) {
    let endpoint = endpoint(&server);
    let mut attempt: usize = 1;
    loop {
        let outcome = tokio::select! {
            outcome = open(&server, &stream, &subject) => outcome,
            () = stop.cancelled() => return,
        };
        match outcome {
            Ok((client, js)) => {
                let mut state = state.write().await;
                if matches!(*state, State::Closed) {
                    return;
                }
                *state = State::Open(Box::new(Connection { client, js }));
                if attempt > 1 {
                    tracing::info!(nats = %endpoint, attempts = attempt, "calc event log reached NATS; buffered events follow");
                }
                return;
            }
            Err(error) => {
                let reason = platform::backend::chain(&error);
                attempt += 1;
                let wait = retry_delay(attempt);
                tracing::warn!(
                    nats = %endpoint,
                    error = %reason,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "calc event log: NATS unreachable; calculations go on, their events wait in the buffer, and /readyz stays 503 until it is reached"
                );
                match &mut *state.write().await {
                    State::Connecting { last_error } => *last_error = reason,
                    _ => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

#[async_trait]
impl EventLog for NatsEventLog {
    fn engine(&self) -> &'static str {
        "nats"
    }

    async fn append(&self, events: &[CalculationPerformed]) -> Result<(), EventLogError> {
        let js = self.js().await?;
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let payload =
                serde_json::to_vec(event).map_err(failed("encode event", FailureKind::Other))?;
            let ack = js
                .publish(self.subject.clone(), payload.into())
                .await
                .map_err(failed("append", FailureKind::Unreachable))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(failed("append", FailureKind::Unreachable))?;
        }
        Ok(())
    }

    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
        let js = self.js().await?;
        let mut stream = js
            .get_stream(&self.stream)
            .await
            .map_err(failed("read", FailureKind::Unreachable))?;
        let last = stream
            .info()
            .await
            .map_err(failed("read", FailureKind::Unreachable))?
            .state
            .last_sequence;
        if query.after >= last {
            return Ok(Vec::new());
        }
        let deliver_policy = match (query.after, query.since) {
            (0, Some(since)) => consumer::DeliverPolicy::ByStartTime { start_time: since },
            (0, None) => consumer::DeliverPolicy::All,
            (after, _) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
        };
        let reader = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy,
                ack_policy: consumer::AckPolicy::None,
                filter_subject: self.subject.clone(),
                // Removed by the server if this process dies before deleting it.
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(failed("read", FailureKind::Unreachable))?;
        let name = reader.cached_info().name.clone();
        let page = read_page(&reader, query).await;
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, consumer = %name, "could not delete a history reader; the server drops it when idle");
        }
        page
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.js()
            .await?
            .get_stream(&self.stream)
            .await
            .map(|_| ())
            .map_err(|e| {
                failed("ping", FailureKind::Unreachable)(format!("NATS at {}: {e}", self.endpoint))
            })
    }

    async fn close(&self) {
        self.connector.cancel();
        let previous = std::mem::replace(&mut *self.state.write().await, State::Closed);
        if let State::Open(connection) = previous {
            let _ = connection.client.flush().await;
        }
    }
}

/// Fetches until the page is full or the consumer has nothing pending.
async fn read_page(
    reader: &consumer::PullConsumer,
    query: EventQuery,
) -> Result<Vec<StoredEvent>, EventLogError> {
    let mut events = Vec::new();
    loop {
        let mut batch = reader
            .fetch()
            .max_messages(query.limit - events.len())
            .expires(TIMEOUT)
            .messages()
            .await
            .map_err(failed("read", FailureKind::Unreachable))?;
        let mut fetched = 0;
        let mut pending = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(failed("read", FailureKind::Unreachable))?;
            fetched += 1;
            let info = message
                .info()
                .map_err(failed("read", FailureKind::Unreachable))?;
            let seq = info.stream_sequence;
            pending = info.pending;
            let event = decode_event(seq, &message.payload)?;
            if query.admits(event.at) {
                events.push(StoredEvent { seq, event });
                if events.len() == query.limit {
                    return Ok(events);
                }
            }
        }
        if fetched == 0 || pending == 0 {
            return Ok(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_up_to_a_cap() {
        assert_eq!(retry_delay(1), Duration::ZERO);
        for _ in 0..100 {
            let first = retry_delay(2);
            assert!(
                (FIRST_RETRY * 3 / 4..=FIRST_RETRY * 5 / 4).contains(&first),
                "{first:?}"
            );
            let late = retry_delay(usize::MAX);
            assert!(
                (MAX_RETRY * 3 / 4..=MAX_RETRY * 5 / 4).contains(&late),
                "{late:?}"
            );
        }
    }

    #[test]
    fn the_server_is_named_without_its_credentials() {
        assert_eq!(endpoint("nats://u:hunter2@nats.svc:4222"), "nats.svc:4222");
        assert_eq!(endpoint("nats://127.0.0.1:4222"), "127.0.0.1:4222");
    }

    #[tokio::test]
    async fn an_unreachable_server_leaves_the_log_unavailable_naming_it_until_closed() {
        let log = NatsEventLog::connect_in_background("nats://127.0.0.1:1", "S", "s.x");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = log.ping().await.expect_err("nothing listens on port 1");
        let text = platform::backend::chain(&err);
        assert!(
            text.contains("not connected to NATS yet, retrying"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(log.append(&[]).await.is_err());
        log.close().await;
        let err = log.ping().await.expect_err("closed");
        assert!(
            matches!(&err, EventLogError::Unavailable(e) if e.kind() == FailureKind::Closed),
            "{err:?}"
        );
    }
}
