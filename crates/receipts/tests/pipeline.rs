//! The pipeline on real parts: the redb queue and ledger in a temporary
//! directory, `apple-sim` over HTTP as Apple. What is staged: a crash
//! between the ledger claim and the result post (the post fails, the job
//! comes back), Apple faults, and a misconfigured shared secret.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use platform::backend::{BackendError, FailureKind};
use receipts::adapters::apple::verify_receipt::{AppleConfig, VerifyReceiptClient};
use receipts::adapters::redb_ledger::RedbLedger;
use receipts::adapters::redb_queue::RedbJobQueue;
use receipts::apple_sim::{self as sim, Fault, SimConfig, Simulator};
use receipts::domain::{QueueRef, USER_ID_ACCEPTED, UserId};
use receipts::engine::{Pipeline, PipelineConfig};
use receipts::ports::{
    Claim, Delivery, JobQueue, Outgoing, QueueError, ReceiptValidator, TransactionLedger,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TX_1: &str = "1000000042928567";
const TX_2: &str = "1000000181492557";

fn fixture(n: u8) -> String {
    let path = format!(
        "{}/tests/fixtures/apple-sandbox-receipt-{n}.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn name(text: &str) -> QueueRef {
    QueueRef::parse(text).expect("queue name")
}

/// A queue whose first `fail_sends` sends to `results` fail, as if the
/// process died after the ledger claim and before the post.
struct CrashingQueue {
    inner: Arc<dyn JobQueue>,
    fail_sends: AtomicUsize,
}

#[async_trait]
impl JobQueue for CrashingQueue {
    fn kind(&self) -> &'static str {
        "crashing"
    }
    async fn ensure(&self, queue: &QueueRef) -> Result<(), QueueError> {
        self.inner.ensure(queue).await
    }
    async fn exists(&self, queue: &QueueRef) -> Result<bool, QueueError> {
        self.inner.exists(queue).await
    }
    async fn send_batch(
        &self,
        queue: &QueueRef,
        messages: &[Outgoing],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        if queue.name().as_str() == "results"
            && self
                .fail_sends
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(QueueError::from(BackendError::new(
                "test",
                "send",
                FailureKind::Unreachable,
                "staged crash before the post",
            )));
        }
        self.inner.send_batch(queue, messages).await
    }
    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, max, wait, visibility).await
    }
    async fn delete_batch(
        &self,
        queue: &QueueRef,
        handles: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        self.inner.delete_batch(queue, handles).await
    }
    async fn change_visibility(
        &self,
        queue: &QueueRef,
        handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.inner
            .change_visibility(queue, handle, visibility)
            .await
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }
}

struct Rig {
    queue: Arc<dyn JobQueue>,
    ledger: Arc<dyn TransactionLedger>,
    sim: Arc<Simulator>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Queue, ledger, simulator and a running pipeline; `fail_sends` results posts fail first.
async fn rig(fail_sends: usize, sim_config: SimConfig, secret: Option<&str>) -> Rig {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner: Arc<dyn JobQueue> =
        Arc::new(RedbJobQueue::open(&dir.path().join("queue.redb")).expect("queue"));
    let queue: Arc<dyn JobQueue> = Arc::new(CrashingQueue {
        inner,
        fail_sends: AtomicUsize::new(fail_sends),
    });
    let ledger: Arc<dyn TransactionLedger> =
        Arc::new(RedbLedger::open(&dir.path().join("ledger.redb")).expect("ledger"));
    let sim = Arc::new(Simulator::new(sim_config).expect("sim"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    {
        let (sim, stopped) = (sim.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = sim::serve(listener, sim, async move { stopped.cancelled().await }).await;
        });
    }
    let validator: Arc<dyn ReceiptValidator> = Arc::new(
        VerifyReceiptClient::new(AppleConfig {
            production_url: format!("{base}/verifyReceipt"),
            sandbox_url: format!("{base}/sandbox/verifyReceipt"),
            shared_secret: secret.map(Into::into),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(10),
            request_timeout: Duration::from_millis(500),
        })
        .expect("client"),
    );
    queue.ensure(&name("results")).await.expect("results queue");
    let pipeline = Arc::new(Pipeline::new(
        queue.clone(),
        ledger.clone(),
        validator,
        PipelineConfig {
            visibility: Duration::from_secs(5),
            wait: Duration::from_millis(200),
            max_receives: 3,
            ..PipelineConfig::default()
        },
    ));
    tokio::spawn(pipeline.run(stop.clone()));
    Rig {
        queue,
        ledger,
        sim,
        stop,
        _dir: dir,
    }
}

async fn submit(rig: &Rig, receipt: &str, user_id: impl Into<Value>) -> String {
    let user_id = user_id.into();
    submit_body(
        rig,
        json!({ "receipt": receipt, "user_id": user_id, "post_queue": "results" }),
    )
    .await
}

/// Sends `body` to the input queue as a producer would.
async fn submit_body(rig: &Rig, body: Value) -> String {
    // The pipeline creates the input queue when it starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match rig
            .queue
            .send_batch(
                &name("receipts"),
                &[Outgoing {
                    traceparent: None,
                    body: body.to_string().into_bytes(),
                    reason: None,
                }],
            )
            .await
        {
            Ok(mut ids) => return ids.pop().expect("one outcome").expect("sent"),
            Err(QueueError::NoSuchQueue(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("submit: {e}"),
        }
    }
}

/// Messages from `queue` until `count` arrived or `limit` passed (deleted as read).
async fn take(rig: &Rig, queue: &str, count: usize, limit: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    while got.len() < count && Instant::now() < deadline {
        let batch = rig
            .queue
            .receive(
                &name(queue),
                10,
                Duration::from_millis(200),
                Duration::from_secs(30),
            )
            .await
            .expect("receive");
        let handles: Vec<String> = batch.iter().map(|d| d.handle.clone()).collect();
        if !handles.is_empty() {
            rig.queue
                .delete_batch(&name(queue), &handles)
                .await
                .expect("delete");
        }
        got.extend(batch);
    }
    got
}

fn body(delivery: &Delivery) -> Value {
    serde_json::from_slice(&delivery.body).expect("JSON result")
}

#[tokio::test]
async fn a_crash_between_claim_and_post_is_still_ok_on_redelivery_and_claimed_once() {
    let rig = rig(1, SimConfig::default(), None).await;
    let job_id = submit(&rig, &fixture(1), 42).await;
    // First delivery: claimed, then the post fails; the job comes back after its backoff.
    let results = take(&rig, "results", 1, Duration::from_secs(15)).await;
    assert_eq!(results.len(), 1, "one result after the redelivery");
    assert_eq!(
        body(&results[0]),
        json!({"user_id": 42, "transaction_id": TX_1, "status": "OK"})
    );
    // Exactly once in the ledger, claimed by that job.
    assert_eq!(
        rig.ledger
            .claim(TX_1, "another-job", &UserId::Int(1))
            .await
            .expect("claim"),
        Claim::OtherJob { job_id }
    );
    assert!(
        take(&rig, "results", 1, Duration::from_millis(600))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn apple_faults_are_retried_and_refusals_naming_no_transaction_are_dead_lettered() {
    let rig = rig(0, SimConfig::default(), None).await;
    // Retryable answers then success (within the client's 3 attempts): OK.
    let faults: Vec<Fault> = ["21005", "503"]
        .iter()
        .map(|f| f.parse().expect("fault"))
        .collect();
    rig.sim.script(&faults).expect("script");
    submit(&rig, &fixture(1), 1).await;
    let ok = take(&rig, "results", 1, Duration::from_secs(10)).await;
    assert_eq!(body(&ok[0])["status"], "OK");

    // A final status whose answer names no transaction: nothing to report
    // (a result always has a transaction_id); dead-lettered with the status.
    rig.sim
        .script(&["21003".parse().expect("fault")])
        .expect("script");
    submit(&rig, &fixture(2), 2).await;
    let dead = take(&rig, "receipts-dlq", 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("no transaction") && reason.contains("21003"),
        "{reason}"
    );
    assert_eq!(body(&dead[0])["user_id"], 2, "the job is kept as it came");
    assert!(
        take(&rig, "results", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );

    // Retryable answers past the client's budget: the job is retried later and then succeeds.
    let many: Vec<Fault> = std::iter::repeat_n("21009".parse().expect("fault"), 3).collect();
    rig.sim.script(&many).expect("script");
    submit(&rig, &fixture(2), 3).await;
    let later = take(&rig, "results", 1, Duration::from_secs(15)).await;
    assert_eq!(body(&later[0])["status"], "OK", "retried after the outage");
}

#[tokio::test]
async fn a_receipt_apple_calls_malformed_is_dead_lettered_and_nothing_is_posted() {
    let rig = rig(0, SimConfig::default(), None).await;
    // Not a receipt: Apple (the simulator) answers 21002 to every attempt.
    submit(&rig, "bm90IGEgcmVjZWlwdA==", "user-8").await;
    let dead = take(&rig, "receipts-dlq", 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].reason.as_deref(),
        Some("the receipt names no transaction to report: 21002: the receipt data is malformed")
    );
    assert!(
        take(&rig, "results", 1, Duration::from_millis(500))
            .await
            .is_empty(),
        "no result without a transaction_id"
    );
}

/// Apple's 21006 (valid, but the subscription expired) names its
/// transaction: INVALID with that `transaction_id`, as the original posted,
/// and the transaction is not claimed.
#[tokio::test]
async fn an_expired_subscription_posts_invalid_with_its_transaction_id() {
    let rig = rig(0, SimConfig::default(), None).await;
    rig.sim
        .script(&["21006".parse().expect("fault")])
        .expect("script");
    submit(&rig, &fixture(1), "user-8").await;
    let invalid = take(&rig, "results", 1, Duration::from_secs(10)).await;
    assert_eq!(
        body(&invalid[0]),
        json!({
            "user_id": "user-8",
            "transaction_id": TX_1,
            "status": "INVALID",
            "reason": "21006: the receipt is valid but the subscription has expired",
        })
    );
    submit(&rig, &fixture(1), 9).await;
    let ok = take(&rig, "results", 1, Duration::from_secs(10)).await;
    assert_eq!(
        body(&ok[0]),
        json!({"user_id": 9, "transaction_id": TX_1, "status": "OK"})
    );
}

#[tokio::test]
async fn a_wrong_shared_secret_dead_letters_jobs_instead_of_calling_them_invalid() {
    let rig = rig(
        0,
        SimConfig {
            shared_secret: Some("the-right-one".into()),
            ..SimConfig::default()
        },
        Some("a-wrong-one"),
    )
    .await;
    submit(&rig, &fixture(1), 9).await;
    let dead = take(&rig, "receipts-dlq", 1, Duration::from_secs(10)).await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("21004")),
        "{:?}",
        dead[0].reason
    );
    assert!(
        take(&rig, "results", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );
    // Nothing was claimed: with the secret fixed, the receipt is still OK.
    assert_eq!(
        rig.ledger
            .claim(TX_1, "later-job", &UserId::Int(9))
            .await
            .expect("claim"),
        Claim::New
    );
}

#[tokio::test]
async fn a_string_user_id_comes_back_as_the_same_string() {
    let rig = rig(0, SimConfig::default(), None).await;
    submit(&rig, &fixture(1), "user-8").await;
    submit(&rig, &fixture(2), "42").await;
    let mut results: Vec<Value> = take(&rig, "results", 2, Duration::from_secs(10))
        .await
        .iter()
        .map(body)
        .collect();
    results.sort_by_key(|r| r["transaction_id"].as_str().map(str::to_owned));
    assert_eq!(
        results,
        vec![
            json!({"user_id": "user-8", "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": "42", "transaction_id": TX_2, "status": "OK"}),
        ]
    );
}

#[tokio::test]
async fn user_ids_that_are_neither_integer_nor_string_are_dead_lettered_naming_the_field() {
    let rig = rig(0, SimConfig::default(), None).await;
    let wrong = [
        json!({"id": 8}),
        json!([8]),
        json!(8.5),
        json!(true),
        Value::Null,
        json!(""),
        json!("x".repeat(257)),
    ];
    for user_id in &wrong {
        submit(&rig, &fixture(1), user_id.clone()).await;
    }
    submit_body(
        &rig,
        json!({ "receipt": fixture(1), "post_queue": "results" }),
    )
    .await;
    let dead = take(
        &rig,
        "receipts-dlq",
        wrong.len() + 1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(dead.len(), wrong.len() + 1);
    for delivery in &dead {
        let reason = delivery.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("user_id") && reason.contains(USER_ID_ACCEPTED),
            "{reason}"
        );
        // The job itself is kept as it was sent.
        assert_eq!(body(delivery)["receipt"], json!(fixture(1)));
    }
    assert!(
        take(&rig, "results", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );
    // Nothing was claimed: the receipt is still OK for a job with a valid user id.
    submit(&rig, &fixture(1), 8).await;
    let ok = take(&rig, "results", 1, Duration::from_secs(10)).await;
    assert_eq!(
        body(&ok[0]),
        json!({"user_id": 8, "transaction_id": TX_1, "status": "OK"})
    );
}

#[tokio::test]
async fn a_post_queue_url_posts_to_the_queue_its_last_path_segment_names() {
    let rig = rig(0, SimConfig::default(), None).await;
    for (receipt, post_queue) in [
        (
            fixture(1),
            "https://sqs.us-east-1.amazonaws.com/123456789012/results",
        ),
        (fixture(2), "http://127.0.0.1:4566/000000000000/results"),
    ] {
        submit_body(
            &rig,
            json!({ "receipt": receipt, "user_id": 5, "post_queue": post_queue }),
        )
        .await;
    }
    let mut results: Vec<Value> = take(&rig, "results", 2, Duration::from_secs(10))
        .await
        .iter()
        .map(body)
        .collect();
    results.sort_by_key(|r| r["transaction_id"].as_str().map(str::to_owned));
    assert_eq!(
        results,
        vec![
            json!({"user_id": 5, "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": 5, "transaction_id": TX_2, "status": "OK"}),
        ]
    );
}

#[tokio::test]
async fn bad_post_queues_are_dead_lettered_with_the_reason() {
    let rig = rig(0, SimConfig::default(), None).await;
    let cases = [
        (json!(""), "is not a queue name"),
        (json!("no spaces"), "is not a queue name"),
        (
            json!("https://sqs.us-east-1.amazonaws.com/123456789012/"),
            "ends in the queue's name",
        ),
        (json!("ftp://h/123456789012/results"), "http or https"),
        (json!(7), "invalid type: integer"),
        (
            json!("https://sqs.us-east-1.amazonaws.com/123456789012/nowhere"),
            "does not exist",
        ),
    ];
    for (post_queue, _) in &cases {
        submit_body(
            &rig,
            json!({ "receipt": fixture(1), "user_id": 5, "post_queue": post_queue }),
        )
        .await;
    }
    let dead = take(&rig, "receipts-dlq", cases.len(), Duration::from_secs(10)).await;
    assert_eq!(dead.len(), cases.len());
    for (post_queue, says) in &cases {
        let delivery = dead
            .iter()
            .find(|d| body(d)["post_queue"] == *post_queue)
            .unwrap_or_else(|| panic!("{post_queue} was not dead-lettered"));
        let reason = delivery.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains("post_queue") && reason.contains(says),
            "{post_queue}: {reason}"
        );
    }
    assert!(
        take(&rig, "results", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_job_with_fields_the_worker_does_not_read_is_processed_as_usual() {
    let rig = rig(0, SimConfig::default(), None).await;
    submit_body(
        &rig,
        json!({
            "receipt": fixture(1),
            "user_id": 8,
            "post_queue": "results",
            "source": "ios",
            "app": {"version": "1.2", "build": [4, 5]},
        }),
    )
    .await;
    let results = take(&rig, "results", 1, Duration::from_secs(10)).await;
    assert_eq!(
        body(&results[0]),
        json!({"user_id": 8, "transaction_id": TX_1, "status": "OK"})
    );
    assert!(
        take(&rig, "receipts-dlq", 1, Duration::from_millis(500))
            .await
            .is_empty()
    );
}
