//! Event log on NATS JetStream: each event is one message (JSON) on a
//! subject of a file-backed stream; the stream sequence is the event's
//! position. A read is an ephemeral pull consumer starting at the asked
//! position (or time), acknowledging nothing, deleted after the page.
//!
//! Publishing waits for JetStream's acknowledgement of every message in the
//! batch, so an appended batch is stored. A batch that fails half-way may be
//! partly stored and is retried whole by the recorder: events carry their
//! request id and time, so a reader can tell a repeat (at-least-once).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::RwLock;

use crate::domain::event::{CalculationPerformed, EventQuery, StoredEvent};
use crate::ports::{EventLog, EventLogError, decode_event};

/// The stream and subject used when the URL names none.
pub const DEFAULT_STREAM: &str = "QUINTET_CALC_EVENTS";
pub const DEFAULT_SUBJECT: &str = "quintet.calc.events";

/// Bound on connecting and on each request to the server.
const TIMEOUT: Duration = Duration::from_secs(5);

pub struct NatsEventLog {
    /// `None` once closed.
    client: RwLock<Option<async_nats::Client>>,
    js: jetstream::Context,
    stream: String,
    subject: String,
}

fn unavailable(error: impl std::fmt::Display) -> EventLogError {
    EventLogError::Unavailable(error.to_string())
}

impl NatsEventLog {
    /// Connects to `server` (`nats://host:4222`) and creates the stream if it is missing.
    pub async fn connect(server: &str, stream: &str, subject: &str) -> Result<Self, EventLogError> {
        let client = async_nats::ConnectOptions::new()
            .name("quintet-calc")
            .connection_timeout(TIMEOUT)
            .request_timeout(Some(TIMEOUT))
            .connect(server)
            .await
            .map_err(|e| unavailable(format!("cannot connect to NATS: {e}")))?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(stream::Config {
            name: stream.to_owned(),
            subjects: vec![subject.to_owned()],
            storage: stream::StorageType::File,
            description: Some("quintet calc: one CalculationPerformed per message".into()),
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot create JetStream stream {stream}: {e}")))?;
        Ok(Self {
            client: RwLock::new(Some(client)),
            js,
            stream: stream.to_owned(),
            subject: subject.to_owned(),
        })
    }

    async fn open(&self) -> Result<(), EventLogError> {
        match &*self.client.read().await {
            Some(_) => Ok(()),
            None => Err(unavailable("event log is closed")),
        }
    }
}

#[async_trait]
impl EventLog for NatsEventLog {
    fn engine(&self) -> &'static str {
        "nats"
    }

    async fn append(&self, events: &[CalculationPerformed]) -> Result<(), EventLogError> {
        self.open().await?;
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let payload = serde_json::to_vec(event).map_err(unavailable)?;
            let ack = self
                .js
                .publish(self.subject.clone(), payload.into())
                .await
                .map_err(unavailable)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
        self.open().await?;
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(unavailable)?;
        let last = stream
            .info()
            .await
            .map_err(unavailable)?
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
            .map_err(unavailable)?;
        let name = reader.cached_info().name.clone();
        let page = read_page(&reader, query).await;
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, consumer = %name, "could not delete a history reader; the server drops it when idle");
        }
        page
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        self.open().await?;
        self.js
            .get_stream(&self.stream)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn close(&self) {
        if let Some(client) = self.client.write().await.take() {
            let _ = client.flush().await;
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
            .map_err(unavailable)?;
        let mut fetched = 0;
        let mut pending = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(unavailable)?;
            fetched += 1;
            let info = message.info().map_err(unavailable)?;
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
