//! receipts on AWS end to end: the real binary with its queues on SQS and
//! its ledger in DynamoDB, both on the moto server the tests start (see
//! `testkit::moto`), selected the way an operator would (`--receipts-queue
//! sqs://…`, `--receipts-ledger dynamodb://…`), Apple played by `quintet
//! apple-sim`. Queue and table names are unique per test, as moto is shared.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use kv::adapters::aws::{AwsSettings, sdk_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::moto::{moto_endpoint, unique_name};

use crate::support::{BIN, Start, TestServer, http};

const TX_1: &str = "1000000042928567";
const TX_2: &str = "1000000181492557";

/// Credentials for moto (it accepts any) given the way the SDK's standard chain reads them.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

fn fixture(n: u8) -> String {
    let path = format!(
        "{}/../receipts/tests/fixtures/apple-sandbox-receipt-{n}.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `quintet apple-sim` on a free port; killed on drop.
struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(BIN)
            .args(["apple-sim", "--addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apple-sim");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "apple-sim did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Receives from `queue` until `count` messages arrived (deleting them) or 30 s passed.
async fn drain(server: &TestServer, queue: &str, count: usize) -> Vec<Value> {
    let client = http();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < count && Instant::now() < deadline {
        let response = client
            .post(format!(
                "{}/queues/{queue}/receive?max=10&wait_ms=1000",
                server.url
            ))
            .send()
            .await
            .expect("receive");
        assert_eq!(response.status(), StatusCode::OK, "{}", server.logs());
        let received: Value = response.json().await.expect("json");
        let messages = received["messages"].as_array().cloned().unwrap_or_default();
        let handles: Vec<Value> = messages.iter().map(|m| m["handle"].clone()).collect();
        if !handles.is_empty() {
            let deleted = client
                .post(format!("{}/queues/{queue}/delete", server.url))
                .json(&json!({ "handles": handles }))
                .send()
                .await
                .expect("delete");
            assert_eq!(deleted.status(), StatusCode::OK);
        }
        got.extend(messages);
    }
    got
}

fn bodies(messages: &[Value]) -> Vec<Value> {
    let mut bodies: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().expect("body")).expect("JSON body"))
        .collect();
    bodies.sort_by_key(|b| b["user_id"].as_i64());
    bodies
}

async fn submit(server: &TestServer, receipt: &str, user_id: i64, post_queue: &str) {
    let status = http()
        .post(format!("{}/receipts/jobs", server.url))
        .json(&json!({ "receipt": receipt, "user_id": user_id, "post_queue": post_queue }))
        .send()
        .await
        .expect("submit")
        .status();
    assert_eq!(status, StatusCode::ACCEPTED, "{}", server.logs());
}

#[tokio::test]
async fn sqs_and_dynamodb_selected_from_serve_validate_once_then_refuse_the_same_transaction() {
    let endpoint = moto_endpoint().await;
    let table = unique_name("e2e-ledger");
    let (input, dead, results) = (
        unique_name("e2e-jobs"),
        unique_name("e2e-dlq"),
        unique_name("e2e-results"),
    );
    let queue_url = format!("sqs://?endpoint={endpoint}&create=true");
    let ledger_url = format!("dynamodb://{table}?endpoint={endpoint}&create=true");
    let sim = Sim::start();
    let production = format!("{}/verifyReceipt", sim.url);
    let sandbox = format!("{}/sandbox/verifyReceipt", sim.url);
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "receipts",
            "--apple-production-url",
            &production,
            "--apple-sandbox-url",
            &sandbox,
            "--receipts-queue",
            &queue_url,
            "--receipts-ledger",
            &ledger_url,
            "--receipts-input-queue",
            &input,
            "--receipts-dead-letter-queue",
            &dead,
        ],
        env: AWS_ENV.to_vec(),
        data_dir: None,
    });
    assert_eq!(
        server.log_field("receipts queue and ledger", "queue"),
        Some("sqs (default region)".to_owned()),
        "{}",
        server.logs()
    );
    assert_eq!(
        server.log_field("receipts queue and ledger", "ledger"),
        Some(format!("dynamodb (table {table})")),
    );

    submit(&server, &fixture(1), 42, &results).await;
    submit(&server, &fixture(2), 43, &results).await;
    let got = bodies(&drain(&server, &results, 2).await);
    assert_eq!(
        got,
        vec![
            json!({"user_id": 42, "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": 43, "transaction_id": TX_2, "status": "OK"}),
        ],
        "{}",
        server.logs()
    );

    // The same receipt in another job: its transaction is in the ledger.
    submit(&server, &fixture(1), 44, &results).await;
    let again = bodies(&drain(&server, &results, 1).await);
    assert_eq!(again.len(), 1, "{}", server.logs());
    assert_eq!(again[0]["status"], "INVALID");
    assert_eq!(again[0]["transaction_id"], TX_1);
    assert_eq!(again[0]["user_id"], 44);

    // Nothing went to the embedded queue or ledger.
    let files: Vec<String> = std::fs::read_dir(&server.data_dir)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.starts_with("receipts")),
        "{files:?}"
    );
    server.stop();

    // The claim is an item in the DynamoDB table, in the seed's shape.
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(&AwsSettings::moto(&endpoint)).await);
    let item = dynamo
        .get_item()
        .table_name(&table)
        .key("TransactionId", AttributeValue::S(TX_1.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the claim is stored in DynamoDB");
    assert_eq!(item.get("UserId"), Some(&AttributeValue::N("42".into())));
    assert!(
        matches!(item.get("JobId"), Some(AttributeValue::S(job)) if !job.is_empty()),
        "{item:?}"
    );
}

#[tokio::test]
async fn bad_receipts_queue_or_ledger_urls_exit_2_naming_the_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let cases: [(&str, &str, &str); 4] = [
        ("--receipts-queue", "kafka://broker", "--receipts-queue"),
        ("--receipts-queue", "sqs://jobs", "--receipts-queue"),
        (
            "--receipts-ledger",
            "dynamodb://t?create=maybe",
            "--receipts-ledger",
        ),
        (
            "--receipts-ledger",
            "dynamodb://t?secret_key=hunter2",
            "--receipts-ledger",
        ),
    ];
    for (option, value, named) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", data])
            .args(["--services", "receipts", option, value])
            .envs(AWS_ENV)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(named), "{option} {value}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
