//! The contract every `JobQueue` adapter must honour, run against the real
//! engines: the embedded redb queue (`on_redb`) and SQS on the moto server
//! (`on_sqs`, see `testkit::moto`). Each test of the suite is a function of
//! an `Arc<dyn JobQueue>` working on queues of its own (unique names), so
//! engines share the functions. Timeouts are whole seconds, as SQS counts
//! them.
//!
//! Two tests are not run on SQS, whose promises are weaker (see
//! `receipts::adapters::sqs`): `a_stale_handle_cannot_delete_or_hide` (SQS,
//! real and moto, acts on or answers success to an older handle of a
//! message) and `concurrent_receivers_never_share_a_message` (standard
//! queues are at-least-once; moto, too, now and then hands one message to
//! two racing receivers). `tests/aws.rs` holds what SQS does promise there.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::aws::AwsSettings;
use receipts::adapters::redb_queue::RedbJobQueue;
use receipts::adapters::sqs::SqsJobQueue;
use receipts::domain::{QueueName, QueueRef};
use receipts::ports::{Delivery, JobQueue, MAX_BATCH, MAX_BODY_BYTES, Outgoing, QueueError};

/// Runs every listed suite function on a fresh redb queue file.
macro_rules! queue_contract_on_redb {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[tokio::test]
            async fn $name() {
                let dir = tempfile::tempdir().expect("tempdir");
                let queue = super::open_redb(&dir.path().join("queues.redb"));
                super::$name(queue.clone()).await;
                queue.close().await;
            })*
        }
    };
}

queue_contract_on_redb!(
    send_receive_delete_round_trip,
    visibility_timeout_hides_then_redelivers_the_same_message,
    a_stale_handle_cannot_delete_or_hide,
    change_visibility_zero_makes_it_visible_at_once,
    long_polling_returns_as_soon_as_a_message_is_sent,
    long_polling_returns_empty_after_the_wait,
    unknown_queue_is_no_such_queue,
    bodies_over_256_kib_are_too_large,
    more_than_ten_entries_is_an_error,
    visible_messages_come_in_send_order,
    the_reason_attribute_round_trips,
    the_trace_context_round_trips_and_goes_with_the_message,
    concurrent_receivers_never_share_a_message,
);

/// Runs every listed suite function on SQS (moto), queues created on demand.
macro_rules! queue_contract_on_sqs {
    ($($name:ident),* $(,)?) => {
        mod on_sqs {
            $(#[tokio::test]
            async fn $name() {
                let queue = super::connect_sqs().await;
                super::$name(queue.clone()).await;
                queue.close().await;
            })*
        }
    };
}

queue_contract_on_sqs!(
    send_receive_delete_round_trip,
    visibility_timeout_hides_then_redelivers_the_same_message,
    change_visibility_zero_makes_it_visible_at_once,
    long_polling_returns_as_soon_as_a_message_is_sent,
    long_polling_returns_empty_after_the_wait,
    unknown_queue_is_no_such_queue,
    bodies_over_256_kib_are_too_large,
    more_than_ten_entries_is_an_error,
    visible_messages_come_in_send_order,
    the_reason_attribute_round_trips,
    the_trace_context_round_trips_and_goes_with_the_message,
);

async fn connect_sqs() -> Arc<dyn JobQueue> {
    let settings = AwsSettings::moto(testkit::moto::moto_endpoint().await);
    Arc::new(
        SqsJobQueue::connect(&settings)
            .await
            .expect("SQS on moto")
            .create_queues(true),
    )
}

fn open_redb(path: &Path) -> Arc<dyn JobQueue> {
    Arc::new(RedbJobQueue::open(path).expect("open redb queue"))
}

/// A queue no other test uses, ensured.
async fn fresh_queue(queue: &Arc<dyn JobQueue>, label: &str) -> QueueRef {
    let name = QueueRef::parse(&format!("{label}-{}", uuid::Uuid::new_v4().simple()))
        .expect("valid queue name");
    queue.ensure(&name).await.expect("ensure");
    name
}

fn message(body: &str) -> Outgoing {
    Outgoing {
        traceparent: None,
        body: body.as_bytes().to_vec(),
        reason: None,
    }
}

fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

const NO_WAIT: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_mins(1);

async fn send_one(queue: &Arc<dyn JobQueue>, name: &QueueRef, body: &str) -> String {
    let mut outcomes = queue
        .send_batch(name, &[message(body)])
        .await
        .expect("send");
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).expect("sent")
}

async fn receive_one(
    queue: &Arc<dyn JobQueue>,
    name: &QueueRef,
    wait: Duration,
    visibility: Duration,
) -> Delivery {
    let mut got = queue
        .receive(name, 1, wait, visibility)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "expected one message, got {:?}", bodies(&got));
    got.remove(0)
}

async fn send_receive_delete_round_trip(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "round-trip").await;
    assert!(queue.exists(&name).await.expect("exists"));
    queue.ensure(&name).await.expect("ensure is idempotent");
    let before = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .unwrap();
    let id = send_one(&queue, &name, "hello").await;
    let delivery = receive_one(&queue, &name, Duration::from_secs(5), LONG).await;
    assert_eq!(delivery.message_id, id);
    assert_eq!(delivery.body, b"hello");
    assert_eq!(delivery.receive_count, 1);
    assert_eq!(delivery.reason, None);
    assert!(
        (before - 1000..before + 60_000).contains(&delivery.sent_at_ms),
        "sent_at_ms {} vs {before}",
        delivery.sent_at_ms
    );
    let outcomes = queue
        .delete_batch(&name, std::slice::from_ref(&delivery.handle))
        .await
        .expect("delete");
    assert_eq!(outcomes, vec![Ok(())]);
    let none = queue
        .receive(&name, 10, Duration::from_secs(1), LONG)
        .await
        .expect("receive");
    assert!(none.is_empty(), "deleted, yet {:?}", bodies(&none));
    queue.ping().await.expect("ping");
}

async fn visibility_timeout_hides_then_redelivers_the_same_message(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "visibility").await;
    let id = send_one(&queue, &name, "job").await;
    let first = receive_one(&queue, &name, NO_WAIT, Duration::from_secs(1)).await;
    assert_eq!(first.message_id, id);
    let hidden = queue
        .receive(&name, 10, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert!(hidden.is_empty(), "in flight, yet {:?}", bodies(&hidden));
    // A long poll wakes when the timeout runs out, well before its wait.
    let started = Instant::now();
    let again = receive_one(&queue, &name, Duration::from_secs(10), LONG).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(again.message_id, id);
    assert_eq!(again.receive_count, 2);
    assert_eq!(again.body, b"job");
    assert_ne!(again.handle, first.handle);
}

async fn a_stale_handle_cannot_delete_or_hide(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "stale").await;
    send_one(&queue, &name, "job").await;
    let first = receive_one(&queue, &name, NO_WAIT, LONG).await;
    queue
        .change_visibility(&name, &first.handle, Duration::ZERO)
        .await
        .expect("release");
    let second = receive_one(&queue, &name, NO_WAIT, LONG).await;
    assert_eq!(second.message_id, first.message_id);
    let stale = queue
        .delete_batch(&name, &[first.handle.clone(), "not-a-handle".into()])
        .await
        .expect("delete call");
    assert_eq!(
        stale,
        vec![
            Err(QueueError::InvalidHandle),
            Err(QueueError::InvalidHandle)
        ]
    );
    assert_eq!(
        queue
            .change_visibility(&name, &first.handle, Duration::ZERO)
            .await,
        Err(QueueError::InvalidHandle)
    );
    // The stale handle changed nothing: the message is still in flight.
    let none = queue
        .receive(&name, 10, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert!(none.is_empty(), "{:?}", bodies(&none));
    let current = queue
        .delete_batch(&name, std::slice::from_ref(&second.handle))
        .await
        .expect("delete");
    assert_eq!(current, vec![Ok(())]);
}

async fn change_visibility_zero_makes_it_visible_at_once(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "release").await;
    send_one(&queue, &name, "job").await;
    let first = receive_one(&queue, &name, NO_WAIT, LONG).await;
    let none = queue
        .receive(&name, 10, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert!(none.is_empty());
    queue
        .change_visibility(&name, &first.handle, Duration::ZERO)
        .await
        .expect("change visibility");
    let again = receive_one(&queue, &name, NO_WAIT, LONG).await;
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count, 2);
    // And a longer timeout keeps it hidden past its first one.
    queue
        .change_visibility(&name, &again.handle, LONG)
        .await
        .expect("extend");
    let none = queue
        .receive(&name, 10, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert!(none.is_empty());
}

async fn long_polling_returns_as_soon_as_a_message_is_sent(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "long-poll").await;
    let sender = {
        let queue = queue.clone();
        let name = name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            send_one(&queue, &name, "late").await
        })
    };
    let started = Instant::now();
    let got = queue
        .receive(&name, 10, Duration::from_secs(15), LONG)
        .await
        .expect("receive");
    let elapsed = started.elapsed();
    let id = sender.await.expect("sender");
    assert_eq!(bodies(&got), vec!["late"]);
    assert_eq!(got[0].message_id, id);
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

async fn long_polling_returns_empty_after_the_wait(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "long-poll-empty").await;
    let started = Instant::now();
    let got = queue
        .receive(&name, 10, Duration::from_secs(1), LONG)
        .await
        .expect("receive");
    let elapsed = started.elapsed();
    assert!(got.is_empty());
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

async fn unknown_queue_is_no_such_queue(queue: Arc<dyn JobQueue>) {
    let name = QueueName::new(format!("never-{}", uuid::Uuid::new_v4().simple())).expect("name");
    let missing = QueueError::NoSuchQueue(name.clone());
    let name = QueueRef::from(name);
    assert!(!queue.exists(&name).await.expect("exists"));
    assert_eq!(
        queue.send_batch(&name, &[message("x")]).await,
        Err(missing.clone())
    );
    assert_eq!(
        queue.receive(&name, 1, Duration::from_secs(1), LONG).await,
        Err(missing.clone())
    );
    assert_eq!(
        queue.delete_batch(&name, &["1.0".to_owned()]).await,
        Err(missing.clone())
    );
    assert_eq!(
        queue.change_visibility(&name, "1.0", LONG).await,
        Err(missing)
    );
    assert!(!queue.exists(&name).await.expect("exists"));
}

async fn bodies_over_256_kib_are_too_large(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "large").await;
    let largest = Outgoing {
        traceparent: None,
        body: vec![b'a'; MAX_BODY_BYTES],
        reason: None,
    };
    let over = Outgoing {
        traceparent: None,
        body: vec![b'b'; MAX_BODY_BYTES + 1],
        reason: None,
    };
    let outcomes = queue
        .send_batch(&name, &[over, largest])
        .await
        .expect("send call");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], Err(QueueError::TooLarge(MAX_BODY_BYTES + 1)));
    let id = outcomes[1]
        .clone()
        .expect("the largest allowed body is sent");
    let got = receive_one(&queue, &name, Duration::from_secs(5), LONG).await;
    assert_eq!(got.message_id, id);
    assert_eq!(got.body.len(), MAX_BODY_BYTES);
}

async fn more_than_ten_entries_is_an_error(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "eleven").await;
    let eleven: Vec<Outgoing> = (0..=MAX_BATCH).map(|i| message(&i.to_string())).collect();
    assert_eq!(
        queue.send_batch(&name, &eleven).await,
        Err(QueueError::TooManyEntries(11))
    );
    let handles: Vec<String> = (0..=MAX_BATCH).map(|i| format!("{i}.0")).collect();
    assert_eq!(
        queue.delete_batch(&name, &handles).await,
        Err(QueueError::TooManyEntries(11))
    );
    assert_eq!(
        queue.receive(&name, 11, NO_WAIT, LONG).await,
        Err(QueueError::TooManyEntries(11))
    );
    // Nothing of the refused batch was sent.
    let none = queue
        .receive(&name, 10, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert!(none.is_empty(), "{:?}", bodies(&none));
    let ten = &eleven[..MAX_BATCH];
    let outcomes = queue.send_batch(&name, ten).await.expect("ten is fine");
    assert!(outcomes.iter().all(Result::is_ok));
}

async fn visible_messages_come_in_send_order(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "fifo").await;
    let all: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    for chunk in all.chunks(MAX_BATCH) {
        let batch: Vec<Outgoing> = chunk.iter().map(|b| message(b)).collect();
        let outcomes = queue.send_batch(&name, &batch).await.expect("send");
        assert!(outcomes.iter().all(Result::is_ok));
    }
    let mut got = Vec::new();
    while got.len() < all.len() {
        let batch = queue
            .receive(&name, MAX_BATCH, Duration::from_secs(1), LONG)
            .await
            .expect("receive");
        assert!(!batch.is_empty(), "stopped after {got:?}");
        got.extend(bodies(&batch));
    }
    assert_eq!(got, all);
}

async fn the_reason_attribute_round_trips(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "reason").await;
    let batch = [
        Outgoing {
            traceparent: None,
            body: b"{\"user_id\":1}".to_vec(),
            reason: Some("job body is not a valid job: user_id: missing field".into()),
        },
        message("plain"),
    ];
    let outcomes = queue.send_batch(&name, &batch).await.expect("send");
    assert!(outcomes.iter().all(Result::is_ok));
    let mut got = Vec::new();
    while got.len() < 2 {
        let more = queue
            .receive(&name, MAX_BATCH, Duration::from_secs(1), LONG)
            .await
            .expect("receive");
        assert!(!more.is_empty());
        got.extend(more);
    }
    got.sort_by_key(|d| d.body.clone());
    assert_eq!(got[0].body, b"plain");
    assert_eq!(got[0].reason, None);
    assert_eq!(
        got[1].reason.as_deref(),
        Some("job body is not a valid job: user_id: missing field")
    );
}

/// A message sent with a trace context is received with it, every time it
/// is delivered; one sent without is received without; deleting the
/// message deletes its context.
async fn the_trace_context_round_trips_and_goes_with_the_message(queue: Arc<dyn JobQueue>) {
    const CONTEXT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let name = fresh_queue(&queue, "trace").await;
    let batch = [
        Outgoing {
            traceparent: Some(CONTEXT.into()),
            body: b"traced".to_vec(),
            reason: Some("why".into()),
        },
        message("plain"),
    ];
    let outcomes = queue.send_batch(&name, &batch).await.expect("send");
    assert!(outcomes.iter().all(Result::is_ok));
    let mut got = Vec::new();
    while got.len() < 2 {
        let more = queue
            .receive(&name, MAX_BATCH, Duration::from_secs(1), Duration::ZERO)
            .await
            .expect("receive");
        assert!(!more.is_empty());
        got.extend(more);
    }
    got.sort_by_key(|d| d.body.clone());
    assert_eq!(got[0].body, b"plain");
    assert_eq!(got[0].traceparent, None);
    assert_eq!(got[1].traceparent.as_deref(), Some(CONTEXT));
    assert_eq!(got[1].reason.as_deref(), Some("why"));
    // Delivered again (visibility 0): the context comes again.
    let again = receive_until(&queue, &name, 2).await;
    let traced = again
        .iter()
        .find(|d| d.body == b"traced")
        .expect("redelivered");
    assert_eq!(traced.traceparent.as_deref(), Some(CONTEXT));
    assert!(traced.receive_count >= 2);
    let handles: Vec<String> = again.iter().map(|d| d.handle.clone()).collect();
    let deleted = queue.delete_batch(&name, &handles).await.expect("delete");
    assert!(deleted.iter().all(Result::is_ok));
    assert!(
        queue
            .receive(&name, MAX_BATCH, Duration::ZERO, LONG)
            .await
            .expect("receive")
            .is_empty()
    );
}

/// Receives until `count` deliveries arrived (visibility `LONG`).
async fn receive_until(queue: &Arc<dyn JobQueue>, name: &QueueRef, count: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count && Instant::now() < deadline {
        got.extend(
            queue
                .receive(name, MAX_BATCH, Duration::from_secs(1), LONG)
                .await
                .expect("receive"),
        );
    }
    got
}

/// Receivers racing on one queue each get their own messages, once.
async fn concurrent_receivers_never_share_a_message(queue: Arc<dyn JobQueue>) {
    let name = fresh_queue(&queue, "racers").await;
    let mut sent = HashSet::new();
    for round in 0..5 {
        let batch: Vec<Outgoing> = (0..MAX_BATCH)
            .map(|i| message(&format!("{round}-{i}")))
            .collect();
        for outcome in queue.send_batch(&name, &batch).await.expect("send") {
            sent.insert(outcome.expect("sent"));
        }
    }
    let receivers: Vec<_> = (0..8)
        .map(|_| {
            let queue = queue.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let batch = queue
                        .receive(&name, 3, Duration::from_millis(300), LONG)
                        .await
                        .expect("receive");
                    if batch.is_empty() {
                        return ids;
                    }
                    ids.extend(batch.into_iter().map(|d| d.message_id));
                }
            })
        })
        .collect();
    let mut received = Vec::new();
    for receiver in receivers {
        received.extend(receiver.await.expect("receiver"));
    }
    let unique: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(
        received.len(),
        sent.len(),
        "some message was delivered twice"
    );
    assert_eq!(unique, sent);
}

/// Messages, their visibility and their handles are on disk: a reopened
/// file has the visible ones visible, the in-flight one still hidden, and
/// the handle of its delivery still valid.
#[tokio::test]
async fn messages_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("queues.redb");
    let queue = open_redb(&path);
    let name = fresh_queue(&queue, "durable").await;
    let outcomes = queue
        .send_batch(
            &name,
            &[
                message("a"),
                Outgoing {
                    traceparent: None,
                    body: b"b".to_vec(),
                    reason: Some("why".into()),
                },
                message("c"),
            ],
        )
        .await
        .expect("send");
    assert!(outcomes.iter().all(Result::is_ok));
    let in_flight = receive_one(&queue, &name, NO_WAIT, LONG).await;
    assert_eq!(in_flight.body, b"a");
    queue.close().await;
    assert!(matches!(
        queue.receive(&name, 1, NO_WAIT, LONG).await,
        Err(QueueError::Unavailable(_))
    ));
    drop(queue);

    let queue = open_redb(&path);
    assert!(queue.exists(&name).await.expect("exists"));
    let visible = queue
        .receive(&name, MAX_BATCH, NO_WAIT, LONG)
        .await
        .expect("receive");
    assert_eq!(bodies(&visible), vec!["b", "c"]);
    assert_eq!(visible[0].reason.as_deref(), Some("why"));
    queue
        .change_visibility(&name, &in_flight.handle, Duration::ZERO)
        .await
        .expect("the delivery's handle survives reopening");
    let again = receive_one(&queue, &name, NO_WAIT, LONG).await;
    assert_eq!(again.message_id, in_flight.message_id);
    assert_eq!(again.receive_count, 2);
    queue.close().await;
}

/// The embedded queue reads a queue URL as the name in its last path
/// segment, whatever the host (SQS uses the URL itself: see `tests/aws.rs`).
#[tokio::test]
async fn on_redb_a_queue_url_is_the_queue_its_last_path_segment_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open_redb(&dir.path().join("queues.redb"));
    let name = fresh_queue(&queue, "by-url").await;
    let url = QueueRef::parse(&format!(
        "https://sqs.us-east-1.amazonaws.com/123456789012/{name}"
    ))
    .expect("valid URL");
    assert!(queue.exists(&url).await.expect("exists"));
    let id = send_one(&queue, &url, "by url").await;
    let delivery = receive_one(&queue, &name, NO_WAIT, LONG).await;
    assert_eq!(
        (delivery.message_id, delivery.body),
        (id, b"by url".to_vec())
    );

    let missing = QueueRef::parse("http://127.0.0.1:1/000000000000/missing-queue").expect("URL");
    assert!(!queue.exists(&missing).await.expect("exists"));
    queue.ensure(&missing).await.expect("created by its name");
    assert!(
        queue
            .exists(&QueueRef::parse("missing-queue").expect("name"))
            .await
            .expect("exists")
    );
    queue.close().await;
}
