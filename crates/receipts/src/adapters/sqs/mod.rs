//! Amazon SQS job queue (aws-sdk-sqs): the [`JobQueue`] port on SQS queues
//! named like quintet's [`QueueName`]s. Not here: SDK set-up (see
//! [`platform::aws`]), redrive policies (the pipeline moves dead letters
//! itself), queue attributes beyond what creating a queue needs.
//!
//! Queues: a name becomes a queue URL with `GetQueueUrl`; a queue given by
//! URL is used as is, once `GetQueueAttributes` has said it exists (or was
//! refused for want of permission, which proves nothing either way). A URL is
//! not resolved by its last path segment because it names more than the
//! name: the account that owns the queue (results posted to another
//! account's queue, which that account's policy allows, must not land in a
//! same-named queue of ours) and, being SQS's own id of the queue, it
//! saves a `GetQueueUrl`. The SDK sends every call to the configured
//! endpoint, never to the URL's host (SQS reads the URL as a parameter, as
//! the original's erlcloud did with its path). Known URLs are cached (at
//! most [`MAX_CACHED_URLS`] queues; the cache is emptied when full, since
//! job producers name post queues) and forgotten when SQS says the queue is
//! gone. `ensure` creates a missing queue only when the adapter was built
//! with [`SqsJobQueue::create_queues`] (tests, development); in production
//! queues are provisioned outside and a missing one is `NoSuchQueue`. A
//! `.fifo` name is created as a FIFO queue, and every message sent to one
//! gets its own group and deduplication id, so it behaves as the port says
//! (no ordering or deduplication promised).
//!
//! Units: SQS counts waits and visibility timeouts in whole seconds. A
//! visibility timeout is rounded up (hidden at least as long as asked, at
//! most 12 hours). A receive's wait is rounded up to whole seconds, so a
//! sub-second wait long-polls for 1 s: a wait of 0 is short polling, which
//! samples a subset of SQS's servers and can answer empty while messages
//! wait. Waits over SQS's 20 s become several calls. A long poll gets the
//! settings' operation timeout on top of its wait.
//!
//! Messages: bodies are text on SQS, so a body that is not UTF-8 or holds a
//! character SQS does not carry is refused for that message (`Unavailable`,
//! of kind `Rejected`: sending it again will not help). [`wire`] holds what
//! SQS's messages, units and error codes look like. A send batch is split into calls of at
//! most [`MAX_BODY_BYTES`] of bodies and attributes (SQS's batch payload
//! limit was 256 KiB; it is now 1 MiB, as on moto). The `reason` travels
//! as a String message attribute; its characters SQS would refuse become
//! U+FFFD, and an empty reason is not sent (SQS refuses empty attributes).
//! A message's trace context travels the same way, as `traceparent`.
//!
//! Where SQS (real or moto) differs from the port's contract suite:
//! - stale handles: real SQS answers success to a delete or visibility
//!   change with an older receipt handle of a message ("the request
//!   succeeds, but the message might not be deleted"), and moto accepts any
//!   handle a message ever had and acts on it. So
//!   `a_stale_handle_cannot_delete_or_hide` holds on the embedded queue
//!   only; on SQS, junk handles are `InvalidHandle` and the pipeline only
//!   ever uses a delivery's latest handle.
//! - order: standard queues deliver in roughly send order, best effort;
//!   moto delivers in exact send order, so `visible_messages_come_in_send_order`
//!   passes on moto but is promised by SQS FIFO queues only.
//! - duplicates: standard queues are at-least-once and may, rarely, hand
//!   one message to two receivers; so does moto, whose receive is not
//!   atomic across its request threads (about one run in seven of
//!   `concurrent_receivers_never_share_a_message`). That test holds on the
//!   embedded queue only; on SQS, racing receivers get every message at
//!   least once, and the ledger makes a job's second run harmless.

mod wire;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use platform::aws::{AwsSettings, sdk_config};
use platform::backend::{BackendError, FailureKind};
use tokio_util::sync::CancellationToken;
use wire::{
    ACCESS_DENIED, MAX_VISIBILITY_SECONDS, MISSING_QUEUE, REASON, TRACEPARENT, closed, code,
    delivery, entry_error, entry_index, failure, is_bad_handle, reason_text, text_body,
    wait_seconds, whole_seconds,
};

use crate::domain::{QueueName, QueueRef};
use crate::ports::{Delivery, JobQueue, MAX_BATCH, MAX_BODY_BYTES, Outgoing, QueueError};

/// Queue URLs kept at most (see the module doc).
pub const MAX_CACHED_URLS: usize = 1024;
/// The longest a receive waits, whatever it asks (a year: "forever").
const MAX_WAIT: Duration = Duration::from_hours(8760);
/// Bodies and attributes in one `SendMessageBatch` call at most.
const CALL_BYTES: usize = MAX_BODY_BYTES;
/// A [`JobQueue`] on Amazon SQS (or an SQS-compatible endpoint).
pub struct SqsJobQueue {
    client: Client,
    create_queues: bool,
    operation_timeout: Duration,
    /// Queues known to exist, and their URLs.
    urls: Mutex<HashMap<QueueRef, String>>,
    closed: CancellationToken,
}

impl std::fmt::Debug for SqsJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsJobQueue")
            .field("create_queues", &self.create_queues)
            .finish_non_exhaustive()
    }
}

impl SqsJobQueue {
    /// A client on `settings`; checks SQS answers and takes the credentials
    /// (`ListQueues`; a refusal for want of that one permission passes).
    /// Queues are not created (see [`Self::create_queues`]).
    pub async fn connect(settings: &AwsSettings) -> Result<Self, QueueError> {
        let config = sdk_config(settings).await;
        let queue = Self {
            client: Client::new(&config),
            create_queues: false,
            operation_timeout: settings.operation_timeout,
            urls: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        };
        queue.ping().await?;
        Ok(queue)
    }

    /// Whether `ensure` creates missing queues (default: no).
    #[must_use]
    pub fn create_queues(mut self, create: bool) -> Self {
        self.create_queues = create;
        self
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.closed.is_cancelled() {
            return Err(closed());
        }
        Ok(())
    }

    fn cached(&self, queue: &QueueRef) -> Option<String> {
        let urls = self
            .urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        urls.get(queue).cloned()
    }

    fn remember(&self, queue: &QueueRef, url: &str) {
        let mut urls = self
            .urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if urls.len() >= MAX_CACHED_URLS && !urls.contains_key(queue) {
            urls.clear();
        }
        urls.insert(queue.clone(), url.to_owned());
    }

    fn forget(&self, queue: &QueueRef) {
        let mut urls = self
            .urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        urls.remove(queue);
    }

    /// A failed call on `queue`: `NoSuchQueue` (and its URL forgotten) if
    /// SQS says the queue is gone, else `Unavailable` with what SQS said.
    fn failed<E, R>(
        &self,
        queue: &QueueRef,
        operation: &'static str,
        error: SdkError<E, R>,
    ) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        if code(&error).is_some_and(|c| MISSING_QUEUE.contains(&c)) {
            self.forget(queue);
            return QueueError::NoSuchQueue(queue.name().clone());
        }
        BackendError::aws("sqs", operation, error).into()
    }

    /// The queue's URL: from the cache, else `GetQueueUrl` for a name, or
    /// the URL itself once `GetQueueAttributes` found the queue.
    async fn url(&self, queue: &QueueRef) -> Result<String, QueueError> {
        self.check_open()?;
        if let Some(url) = self.cached(queue) {
            return Ok(url);
        }
        let url = match queue {
            QueueRef::Name(name) => {
                let out = self
                    .client
                    .get_queue_url()
                    .queue_name(name.as_str())
                    .send()
                    .await
                    .map_err(|e| self.failed(queue, "GetQueueUrl", e))?;
                out.queue_url.filter(|u| !u.is_empty()).ok_or_else(|| {
                    failure(
                        "GetQueueUrl",
                        FailureKind::Other,
                        format!("no URL for '{queue}' in the answer"),
                    )
                })?
            }
            QueueRef::Url(url) => {
                let answer = self
                    .client
                    .get_queue_attributes()
                    .queue_url(url.as_str())
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await;
                match answer {
                    Ok(_) => {}
                    // Another account's queue whose policy lets us send and no
                    // more: it cannot be checked, so the sends will tell.
                    Err(e) if code(&e).is_some_and(|c| ACCESS_DENIED.contains(&c)) => {
                        tracing::debug!(%queue, "sqs: not allowed to check the queue; using its URL unchecked");
                    }
                    Err(e) => return Err(self.failed(queue, "GetQueueAttributes", e)),
                }
                url.as_str().to_owned()
            }
        };
        self.remember(queue, &url);
        Ok(url)
    }

    /// Creates the queue by its name; a queue given by URL must then be
    /// found at that URL (SQS may have put it elsewhere: another account
    /// or host spelling).
    async fn create(&self, queue: &QueueRef) -> Result<(), QueueError> {
        let name = queue.name();
        let mut request = self.client.create_queue().queue_name(name.as_str());
        if name.is_fifo() {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.failed(queue, "CreateQueue", e))?;
        let url = out.queue_url.filter(|u| !u.is_empty()).ok_or_else(|| {
            failure(
                "CreateQueue",
                FailureKind::Other,
                format!("no URL for '{queue}' in the answer"),
            )
        })?;
        tracing::info!(queue = %name, "sqs queue created");
        self.remember(&QueueRef::Name(name.clone()), &url);
        if queue.url().is_some() {
            self.url(queue).await?;
        }
        Ok(())
    }

    /// The batch's entries in calls of at most [`CALL_BYTES`]; entries SQS
    /// would refuse get their outcome in `outcomes` instead.
    fn plan_send(
        queue: &QueueName,
        messages: &[Outgoing],
        outcomes: &mut [Option<Result<String, QueueError>>],
    ) -> Result<Vec<Vec<(usize, SendMessageBatchRequestEntry)>>, QueueError> {
        let fifo = queue.is_fifo();
        let mut calls = Vec::new();
        let mut call = Vec::new();
        let mut call_bytes = 0usize;
        for (i, message) in messages.iter().enumerate() {
            if message.body.len() > MAX_BODY_BYTES {
                outcomes[i] = Some(Err(QueueError::TooLarge(message.body.len())));
                continue;
            }
            let body = match text_body(&message.body) {
                Ok(body) => body,
                Err(e) => {
                    outcomes[i] = Some(Err(e));
                    continue;
                }
            };
            let mut size = body.len();
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body);
            for (name, text) in [
                (REASON, &message.reason),
                (TRACEPARENT, &message.traceparent),
            ] {
                let Some(text) = text.as_deref().and_then(reason_text) else {
                    continue;
                };
                size += name.len() + "String".len() + text.len();
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(text)
                    .build()
                    .map_err(|e| failure("SendMessageBatch", FailureKind::Other, e))?;
                entry = entry.message_attributes(name, value);
            }
            if fifo {
                let id = uuid::Uuid::new_v4().simple().to_string();
                entry = entry
                    .message_group_id(id.clone())
                    .message_deduplication_id(id);
            }
            let entry = entry
                .build()
                .map_err(|e| failure("SendMessageBatch", FailureKind::Other, e))?;
            if !call.is_empty() && call_bytes + size > CALL_BYTES {
                calls.push(std::mem::take(&mut call));
                call_bytes = 0;
            }
            call.push((i, entry));
            call_bytes += size;
        }
        if !call.is_empty() {
            calls.push(call);
        }
        Ok(calls)
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    fn kind(&self) -> &'static str {
        "sqs"
    }

    async fn ensure(&self, queue: &QueueRef) -> Result<(), QueueError> {
        match self.url(queue).await {
            Ok(_) => Ok(()),
            Err(QueueError::NoSuchQueue(_)) if self.create_queues => self.create(queue).await,
            Err(e) => Err(e),
        }
    }

    async fn exists(&self, queue: &QueueRef) -> Result<bool, QueueError> {
        match self.url(queue).await {
            Ok(_) => Ok(true),
            Err(QueueError::NoSuchQueue(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn send_batch(
        &self,
        queue: &QueueRef,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::TooManyEntries(messages.len()));
        }
        let url = self.url(queue).await?;
        let mut outcomes: Vec<Option<Result<String, QueueError>>> = vec![None; messages.len()];
        let calls = Self::plan_send(queue.name(), messages, &mut outcomes)?;
        let mut sent = 0u64;
        for (n, call) in calls.into_iter().enumerate() {
            let (indexes, entries): (Vec<usize>, Vec<_>) = call.into_iter().unzip();
            let answer = self
                .client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await;
            let out = match answer {
                Ok(out) => out,
                Err(e) => {
                    let error = self.failed(queue, "SendMessageBatch", e);
                    // Nothing sent yet: the whole batch failed. Else each
                    // message keeps its own outcome, so none is sent twice.
                    if n == 0 {
                        return Err(error);
                    }
                    for i in indexes {
                        outcomes[i] = Some(Err(error.clone()));
                    }
                    continue;
                }
            };
            for ok in out.successful {
                if let Some(i) = entry_index(&ok.id, messages.len()) {
                    outcomes[i] = Some(Ok(ok.message_id));
                    sent += 1;
                }
            }
            for failed in &out.failed {
                if let Some(i) = entry_index(&failed.id, messages.len()) {
                    outcomes[i] = Some(Err(entry_error("SendMessageBatch", failed)));
                }
            }
        }
        if sent > 0 {
            metrics::counter!(crate::metrics::QUEUE_SENT_TOTAL, "queue" => queue.name().to_string())
                .increment(sent);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(failure(
                        "SendMessageBatch",
                        FailureKind::Other,
                        "SQS did not answer for this message",
                    ))
                })
            })
            .collect())
    }

    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max > MAX_BATCH {
            return Err(QueueError::TooManyEntries(max));
        }
        let url = self.url(queue).await?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i32::try_from(max).unwrap_or(1);
        let visibility = whole_seconds(visibility, MAX_VISIBILITY_SECONDS);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let wait_s = wait_seconds(deadline.saturating_duration_since(Instant::now()));
            let long_poll = TimeoutConfig::builder()
                .operation_timeout(
                    self.operation_timeout
                        + Duration::from_secs(u64::try_from(wait_s).unwrap_or(0)),
                )
                .build();
            let call = self
                .client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(max)
                .wait_time_seconds(wait_s)
                .visibility_timeout(visibility)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names(REASON)
                .message_attribute_names(TRACEPARENT)
                .customize()
                .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(long_poll))
                .send();
            let out = tokio::select! {
                () = self.closed.cancelled() => return Err(closed()),
                out = call => out.map_err(|e| self.failed(queue, "ReceiveMessage", e))?,
            };
            let messages = out.messages.unwrap_or_default();
            if !messages.is_empty() {
                let count = messages.len();
                let deliveries: Vec<Delivery> = messages.into_iter().filter_map(delivery).collect();
                if deliveries.len() < count {
                    tracing::warn!(%queue, dropped = count - deliveries.len(),
                        "sqs answered messages without an id or receipt handle; they return after their visibility timeout");
                }
                metrics::counter!(crate::metrics::QUEUE_RECEIVED_TOTAL, "queue" => queue.name().to_string())
                    .increment(deliveries.len() as u64);
                return Ok(deliveries);
            }
            // Less than a second left is not worth another (whole-second) poll.
            if deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(1) {
                return Ok(Vec::new());
            }
        }
    }

    async fn delete_batch(
        &self,
        queue: &QueueRef,
        handles: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        if handles.len() > MAX_BATCH {
            return Err(QueueError::TooManyEntries(handles.len()));
        }
        let url = self.url(queue).await?;
        let mut outcomes: Vec<Option<Result<(), QueueError>>> = vec![None; handles.len()];
        let mut entries = Vec::with_capacity(handles.len());
        for (i, handle) in handles.iter().enumerate() {
            if handle.is_empty() {
                outcomes[i] = Some(Err(QueueError::InvalidHandle));
                continue;
            }
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .build()
                .map_err(|e| failure("DeleteMessageBatch", FailureKind::Other, e))?;
            entries.push(entry);
        }
        if !entries.is_empty() {
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.failed(queue, "DeleteMessageBatch", e))?;
            let deleted = out.successful.len();
            for ok in out.successful {
                if let Some(i) = entry_index(&ok.id, handles.len()) {
                    outcomes[i] = Some(Ok(()));
                }
            }
            for failed in &out.failed {
                if let Some(i) = entry_index(&failed.id, handles.len()) {
                    outcomes[i] = Some(Err(
                        if is_bad_handle(&failed.code, failed.message.as_deref()) {
                            QueueError::InvalidHandle
                        } else {
                            entry_error("DeleteMessageBatch", failed)
                        },
                    ));
                }
            }
            if deleted > 0 {
                metrics::counter!(crate::metrics::QUEUE_DELETED_TOTAL, "queue" => queue.name().to_string())
                    .increment(deleted as u64);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(failure(
                        "DeleteMessageBatch",
                        FailureKind::Other,
                        "SQS did not answer for this handle",
                    ))
                })
            })
            .collect())
    }

    async fn change_visibility(
        &self,
        queue: &QueueRef,
        handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let url = self.url(queue).await?;
        if handle.is_empty() {
            return Err(QueueError::InvalidHandle);
        }
        let answer = self
            .client
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(handle)
            .visibility_timeout(whole_seconds(visibility, MAX_VISIBILITY_SECONDS))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(e)
                if code(&e).is_some_and(|c| {
                    is_bad_handle(c, e.as_service_error().and_then(|s| s.message()))
                }) =>
            {
                Err(QueueError::InvalidHandle)
            }
            Err(e) => Err(self.failed(queue, "ChangeMessageVisibility", e)),
        }
    }

    /// `ListQueues` (one result): SQS answers and accepts the credentials.
    async fn ping(&self) -> Result<(), QueueError> {
        self.check_open()?;
        match self.client.list_queues().max_results(1).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e).is_some_and(|c| ACCESS_DENIED.contains(&c)) => Ok(()),
            Err(e) => Err(BackendError::aws("sqs", "ListQueues", e).into()),
        }
    }

    /// Refuses further calls and ends long polls in progress (they answer
    /// `Unavailable`); their messages come back after their visibility timeout.
    async fn close(&self) {
        self.closed.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_by_payload_and_refused_entries_keep_their_place() {
        let queue = QueueName::new("q").expect("name");
        let big = |fill: u8| Outgoing {
            traceparent: None,
            body: vec![fill; 200 * 1024],
            reason: None,
        };
        let messages = vec![
            big(b'a'),
            Outgoing {
                traceparent: None,
                body: vec![0xff],
                reason: None,
            },
            big(b'b'),
            Outgoing {
                traceparent: None,
                body: b"small".to_vec(),
                reason: Some("why".into()),
            },
            Outgoing {
                traceparent: None,
                body: vec![b'c'; MAX_BODY_BYTES + 1],
                reason: None,
            },
        ];
        let mut outcomes = vec![None; messages.len()];
        let calls = SqsJobQueue::plan_send(&queue, &messages, &mut outcomes).expect("plan");
        let indexes: Vec<Vec<usize>> = calls
            .iter()
            .map(|c| c.iter().map(|(i, _)| *i).collect())
            .collect();
        assert_eq!(indexes, vec![vec![0], vec![2, 3]]);
        assert!(matches!(outcomes[1], Some(Err(QueueError::Unavailable(_)))));
        assert!(matches!(
            outcomes[4],
            Some(Err(QueueError::TooLarge(n))) if n == MAX_BODY_BYTES + 1
        ));
        assert!(outcomes[0].is_none() && outcomes[2].is_none() && outcomes[3].is_none());
        let small = &calls[1][1].1;
        assert_eq!(small.id, "3");
        assert!(small.message_group_id.is_none());
        assert_eq!(
            small
                .message_attributes
                .as_ref()
                .and_then(|a| a.get(REASON))
                .and_then(|v| v.string_value.as_deref()),
            Some("why")
        );
    }

    #[test]
    fn fifo_queues_get_a_group_and_deduplication_id_per_message() {
        let queue = QueueName::new("jobs.fifo").expect("name");
        let same = Outgoing {
            traceparent: None,
            body: b"same".to_vec(),
            reason: None,
        };
        let mut outcomes = vec![None; 2];
        let calls =
            SqsJobQueue::plan_send(&queue, &[same.clone(), same], &mut outcomes).expect("plan");
        let entries: Vec<_> = calls[0].iter().map(|(_, e)| e).collect();
        assert!(entries[0].message_group_id.is_some());
        assert_ne!(
            entries[0].message_deduplication_id,
            entries[1].message_deduplication_id
        );
    }
}
