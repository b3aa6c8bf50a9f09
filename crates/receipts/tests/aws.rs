//! The SQS queue and the `DynamoDB` ledger against a real moto server (one per
//! test process, see `testkit::moto`): what each promises beyond, or in
//! place of, the shared contract suites (`queue_contract.rs`,
//! `ledger_contract.rs`). Each test uses queues and tables of its own.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use platform::aws::{AwsSettings, StaticCredentials, sdk_config};
use platform::backend::chain;
use receipts::adapters::dynamodb_ledger::DynamoLedger;
use receipts::adapters::sqs::SqsJobQueue;
use receipts::domain::{QueueName, QueueRef, UserId};
use receipts::ports::{
    Claim, Delivery, JobQueue, LedgerError, MAX_BATCH, Outgoing, QueueError, TransactionLedger,
};
use testkit::moto::{moto_endpoint, unique_name};

const LONG: Duration = Duration::from_mins(1);

async fn moto() -> AwsSettings {
    AwsSettings::moto(moto_endpoint().await)
}

async fn sqs(create: bool) -> Arc<SqsJobQueue> {
    Arc::new(
        SqsJobQueue::connect(&moto().await)
            .await
            .expect("SQS on moto")
            .create_queues(create),
    )
}

fn queue_name(label: &str) -> QueueRef {
    QueueName::new(unique_name(label))
        .expect("valid queue name")
        .into()
}

async fn fresh_queue(queue: &SqsJobQueue, label: &str) -> QueueRef {
    let name = queue_name(label);
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

async fn receive_all(queue: &SqsJobQueue, name: &QueueRef, count: usize) -> Vec<Delivery> {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn sqs_junk_handles_are_invalid_and_the_latest_handle_deletes() {
    let queue = sqs(true).await;
    let name = fresh_queue(&queue, "junk").await;
    queue
        .send_batch(&name, &[message("job")])
        .await
        .expect("send")
        .remove(0)
        .expect("sent");
    let got = queue
        .receive(&name, 1, Duration::from_secs(5), LONG)
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(
        queue
            .change_visibility(&name, "not-a-handle", Duration::ZERO)
            .await,
        Err(QueueError::InvalidHandle)
    );
    assert_eq!(
        queue.change_visibility(&name, "", Duration::ZERO).await,
        Err(QueueError::InvalidHandle)
    );
    let outcomes = queue
        .delete_batch(
            &name,
            &[
                "not-a-handle".to_owned(),
                String::new(),
                got[0].handle.clone(),
            ],
        )
        .await
        .expect("delete call");
    assert_eq!(
        outcomes,
        vec![
            Err(QueueError::InvalidHandle),
            Err(QueueError::InvalidHandle),
            Ok(())
        ]
    );
    let none = queue
        .receive(&name, MAX_BATCH, Duration::ZERO, Duration::ZERO)
        .await
        .expect("receive");
    assert!(none.is_empty(), "deleted, yet {none:?}");
}

/// SQS standard queues are at-least-once: racing receivers together get
/// every message, whether or not one of them is handed twice.
#[tokio::test]
async fn sqs_concurrent_receivers_get_every_message_at_least_once() {
    let queue = sqs(true).await;
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
            let (queue, name) = (queue.clone(), name.clone());
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
    let mut received = HashSet::new();
    for receiver in receivers {
        received.extend(receiver.await.expect("receiver"));
    }
    assert_eq!(received, sent);
}

#[tokio::test]
async fn sqs_missing_queues_are_created_only_when_asked() {
    let strict = sqs(false).await;
    let creating = sqs(true).await;
    let name = queue_name("provisioned");
    assert_eq!(
        strict.ensure(&name).await,
        Err(QueueError::NoSuchQueue(name.name().clone()))
    );
    assert!(!strict.exists(&name).await.expect("exists"));
    creating.ensure(&name).await.expect("created");
    strict.ensure(&name).await.expect("exists now");
    assert!(strict.exists(&name).await.expect("exists"));
    assert_eq!(strict.kind(), "sqs");
}

/// SQS's own URL of a queue (moto spells them `<endpoint>/<account>/<name>`).
async fn moto_url(name: &QueueRef) -> QueueRef {
    QueueRef::parse(&format!("{}/123456789012/{name}", moto_endpoint().await)).expect("URL")
}

#[tokio::test]
async fn sqs_a_queue_given_by_url_is_used_as_is() {
    let queue = sqs(false).await;
    let name = fresh_queue(sqs(true).await.as_ref(), "by-url").await;
    let url = moto_url(&name).await;
    assert!(queue.exists(&url).await.expect("exists"));
    queue.ensure(&url).await.expect("exists, so ensure passes");
    let id = queue
        .send_batch(&url, &[message("by url")])
        .await
        .expect("send")
        .remove(0)
        .expect("sent");
    let got = receive_all(&queue, &name, 1).await;
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].body, b"by url");
    // And back: received by URL, deleted by URL.
    queue
        .send_batch(&name, &[message("again")])
        .await
        .expect("send");
    let got = receive_all(&queue, &url, 1).await;
    assert_eq!(got[0].body, b"again");
    assert_eq!(
        queue.delete_batch(&url, &[got[0].handle.clone()]).await,
        Ok(vec![Ok(())])
    );

    // A URL whose queue does not exist: missing, and created (by its name) only when asked.
    let absent = moto_url(&queue_name("absent")).await;
    assert!(!queue.exists(&absent).await.expect("exists"));
    assert_eq!(
        queue.ensure(&absent).await,
        Err(QueueError::NoSuchQueue(absent.name().clone()))
    );
    assert_eq!(
        queue.send_batch(&absent, &[message("x")]).await,
        Err(QueueError::NoSuchQueue(absent.name().clone()))
    );
    sqs(true).await.ensure(&absent).await.expect("created");
    assert!(queue.exists(&absent).await.expect("exists now"));
}

#[tokio::test]
async fn sqs_fifo_queues_carry_identical_bodies_each_once() {
    let queue = sqs(true).await;
    let name = QueueRef::parse(&format!("{}.fifo", unique_name("jobs"))).expect("fifo name");
    queue.ensure(&name).await.expect("fifo queue created");
    let outcomes = queue
        .send_batch(&name, &[message("same"), message("same")])
        .await
        .expect("send");
    let ids: HashSet<String> = outcomes.into_iter().map(|o| o.expect("sent")).collect();
    assert_eq!(ids.len(), 2, "two messages, not one deduplicated");
    let got = receive_all(&queue, &name, 2).await;
    let got_ids: HashSet<String> = got.iter().map(|d| d.message_id.clone()).collect();
    assert_eq!(got_ids, ids);
}

/// Six 200 KiB bodies are over the 1 MiB SQS (and moto) allows one call:
/// the adapter splits them across calls and every one is sent.
#[tokio::test]
async fn sqs_batches_over_the_call_payload_limit_are_split_and_all_sent() {
    let queue = sqs(true).await;
    let name = fresh_queue(&queue, "big-batch").await;
    let batch: Vec<Outgoing> = (0..6u8)
        .map(|i| Outgoing {
            traceparent: None,
            body: vec![b'a' + i; 200 * 1024],
            reason: Some(format!("part {i}")),
        })
        .collect();
    let outcomes = queue.send_batch(&name, &batch).await.expect("send");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let got = receive_all(&queue, &name, 6).await;
    let mut firsts: Vec<u8> = got.iter().map(|d| d.body[0]).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, b"abcdef".to_vec());
    assert!(got.iter().all(|d| d.body.len() == 200 * 1024));
}

#[tokio::test]
async fn sqs_bodies_that_are_not_text_are_refused_alone() {
    let queue = sqs(true).await;
    let name = fresh_queue(&queue, "binary").await;
    let outcomes = queue
        .send_batch(
            &name,
            &[
                Outgoing {
                    traceparent: None,
                    body: vec![0xff, 0xfe, 0x00],
                    reason: None,
                },
                message("text"),
            ],
        )
        .await
        .expect("send call");
    assert!(
        matches!(&outcomes[0], Err(e @ QueueError::Unavailable(_)) if chain(e).contains("UTF-8")),
        "{outcomes:?}"
    );
    let id = outcomes[1].clone().expect("the text body is sent");
    let got = receive_all(&queue, &name, 1).await;
    assert_eq!(got[0].message_id, id);
}

#[tokio::test]
async fn sqs_closing_ends_a_long_poll_at_once() {
    let queue = sqs(true).await;
    let name = fresh_queue(&queue, "closing").await;
    let poll = {
        let (queue, name) = (queue.clone(), name.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = queue.receive(&name, 1, Duration::from_secs(20), LONG).await;
            (result, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.close().await;
    let (result, elapsed) = poll.await.expect("poll task");
    assert!(
        matches!(result, Err(QueueError::Unavailable(_))),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(matches!(
        queue.send_batch(&name, &[message("late")]).await,
        Err(QueueError::Unavailable(_))
    ));
    assert!(matches!(
        queue.ping().await,
        Err(QueueError::Unavailable(_))
    ));
}

#[tokio::test]
async fn sqs_and_dynamodb_ledger_unreachable_fail_quickly_and_name_no_secret() {
    let secret = "do-not-print-this-secret";
    let settings = AwsSettings {
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        region: Some("us-east-1".into()),
        max_attempts: 1,
        connect_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(2),
        static_credentials: Some(StaticCredentials::new("AKIDEXAMPLE", secret)),
    };
    let started = Instant::now();
    let err = SqsJobQueue::connect(&settings)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&err, QueueError::Unavailable(_)) && chain(&err).contains("ListQueues"),
        "{err}"
    );
    assert!(!err.to_string().contains(secret));
    let err = DynamoLedger::connect(&settings, "TransactionIdTable", false)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&err, LedgerError::Unavailable(_)) && chain(&err).contains("DescribeTable"),
        "{err}"
    );
    assert!(!err.to_string().contains(secret));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&moto().await).await)
}

#[tokio::test]
async fn dynamodb_ledger_items_have_the_seed_table_shape() {
    let table = unique_name("ledger");
    let ledger = DynamoLedger::connect(&moto().await, &table, true)
        .await
        .expect("table created");
    assert_eq!(ledger.table(), table);
    assert_eq!(ledger.kind(), "dynamodb");
    let before = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .unwrap();
    assert_eq!(
        ledger
            .claim("1000000042928567", "job-1", &UserId::Int(42))
            .await,
        Ok(Claim::New)
    );
    let item = dynamo_client()
        .await
        .get_item()
        .table_name(&table)
        .key(
            "TransactionId",
            AttributeValue::S("1000000042928567".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the claim is an item");
    assert_eq!(item.get("JobId"), Some(&AttributeValue::S("job-1".into())));
    assert_eq!(item.get("UserId"), Some(&AttributeValue::N("42".into())));
    let Some(AttributeValue::N(claimed_at)) = item.get("ClaimedAt") else {
        panic!("ClaimedAt is a number: {item:?}");
    };
    let claimed_at: i64 = claimed_at.parse().expect("ms");
    assert!(
        (before - 1000..before + 60_000).contains(&claimed_at),
        "{claimed_at} vs {before}"
    );

    // A string user id is stored as a string.
    let user = UserId::text("user-8").expect("valid user id");
    assert_eq!(
        ledger.claim("1000000181492557", "job-2", &user).await,
        Ok(Claim::New)
    );
    let item = dynamo_client()
        .await
        .get_item()
        .table_name(&table)
        .key(
            "TransactionId",
            AttributeValue::S("1000000181492557".into()),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the claim is an item");
    assert_eq!(
        item.get("UserId"),
        Some(&AttributeValue::S("user-8".into()))
    );
}

/// The seed stored only the transaction id: such an item is a claim by
/// another job, whoever asks.
#[tokio::test]
async fn dynamodb_ledger_honours_items_the_seed_wrote() {
    let table = unique_name("ledger");
    let ledger = DynamoLedger::connect(&moto().await, &table, true)
        .await
        .expect("table created");
    dynamo_client()
        .await
        .put_item()
        .table_name(&table)
        .item("TransactionId", AttributeValue::S("777".into()))
        .send()
        .await
        .expect("PutItem");
    assert_eq!(
        ledger.claim("777", "job-1", &UserId::Int(1)).await,
        Ok(Claim::OtherJob {
            job_id: String::new()
        })
    );
}

#[tokio::test]
async fn dynamodb_ledger_missing_table_is_an_error_unless_created() {
    let table = unique_name("absent");
    let err = DynamoLedger::connect(&moto().await, &table, false)
        .await
        .expect_err("missing table");
    assert!(
        matches!(&err, LedgerError::Unavailable(_))
            && chain(&err).contains("does not exist")
            && chain(&err).contains("TransactionId"),
        "{}",
        chain(&err)
    );
    DynamoLedger::connect(&moto().await, &table, true)
        .await
        .expect("created");
    DynamoLedger::connect(&moto().await, &table, false)
        .await
        .expect("exists now");
}

#[tokio::test]
async fn dynamodb_ledger_refuses_a_table_with_another_key_schema() {
    let table = unique_name("wrong-key");
    dynamo_client()
        .await
        .create_table()
        .table_name(&table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("key")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("definition"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let err = DynamoLedger::connect(&moto().await, &table, true)
        .await
        .expect_err("wrong schema");
    assert!(
        matches!(&err, LedgerError::Unavailable(_))
            && chain(&err).contains("key schema")
            && chain(&err).contains("TransactionId"),
        "{}",
        chain(&err)
    );
}
