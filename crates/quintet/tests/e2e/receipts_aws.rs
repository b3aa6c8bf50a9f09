//! receipts on AWS end to end: the real binary with its queues on SQS and
//! its ledger in `DynamoDB`, both on the moto server the tests start (see
//! `testkit::moto`), selected the way an operator would (`--receipts-queue
//! sqs://…`, `--receipts-ledger dynamodb://…`), Apple played by `quintet
//! apple-sim`. Queue and table names are unique per test, as moto is shared.

use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;
use platform::aws::{AwsSettings, sdk_config};
use reqwest::StatusCode;
use serde_json::json;
use testkit::moto::{moto_endpoint, unique_name};

use crate::receipts::{Sim, TX_1, TX_2, bodies, drain, fixture, submit};
use crate::support::{BIN, MOTO_AWS_ENV, Start, TestServer};

async fn submit_ok(
    server: &TestServer,
    receipt: &str,
    user_id: impl Into<serde_json::Value>,
    post_queue: &str,
) {
    let status = submit(server, receipt, user_id, post_queue).await;
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
        env: MOTO_AWS_ENV.to_vec(),
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

    submit_ok(&server, &fixture(1), 42, &results).await;
    submit_ok(&server, &fixture(2), "user-43", &results).await;
    let got = bodies(&drain(&server, &results, 2).await);
    // Each user_id comes back with its JSON type (bodies() puts strings first).
    assert_eq!(
        got,
        vec![
            json!({"user_id": "user-43", "transaction_id": TX_2, "status": "OK"}),
            json!({"user_id": 42, "transaction_id": TX_1, "status": "OK"}),
        ],
        "{}",
        server.logs()
    );

    // The same receipt in another job, whose post_queue is the results
    // queue's URL: its transaction is in the ledger.
    let results_url = format!("{endpoint}/123456789012/{results}");
    submit_ok(&server, &fixture(1), 44, &results_url).await;
    let again = bodies(&drain(&server, &results, 1).await);
    assert_eq!(again.len(), 1, "{}", server.logs());
    assert_eq!(again[0]["status"], "INVALID");
    assert_eq!(again[0]["transaction_id"], TX_1);
    assert_eq!(again[0]["user_id"], 44);

    // Nothing went to the embedded queue or ledger.
    let files: Vec<String> = std::fs::read_dir(&server.data_dir)
        .expect("data dir")
        .filter_map(std::result::Result::ok)
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
    let item = dynamo
        .get_item()
        .table_name(&table)
        .key("TransactionId", AttributeValue::S(TX_2.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the claim is stored in DynamoDB");
    assert_eq!(
        item.get("UserId"),
        Some(&AttributeValue::S("user-43".into()))
    );
}

#[tokio::test]
async fn bad_receipts_queue_or_ledger_urls_exit_2_naming_the_option() {
    let dir = crate::support::private_tempdir();
    let data = dir.path().to_str().expect("utf8");
    let cases: [(&str, &str, &str); 4] = [
        ("--receipts-queue", "kafka://broker", "--receipts-queue"),
        ("--receipts-queue", "sqs://jobs", "--receipts-queue"),
        (
            "--receipts-ledger",
            "dynamodb://ledger?create=maybe",
            "--receipts-ledger",
        ),
        (
            "--receipts-ledger",
            "dynamodb://ledger?secret_key=hunter2",
            "--receipts-ledger",
        ),
    ];
    for (option, value, named) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", data])
            .args(["--services", "receipts", option, value])
            .envs(MOTO_AWS_ENV)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {value}: {stderr}");
        assert!(stderr.contains(named), "{option} {value}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
