//! kv on AWS end to end: the real binary with its store in `DynamoDB` and its
//! data keys from KMS, both on the moto server the tests start (see
//! `testkit::moto`), selected the way an operator would: `--kv-store
//! dynamodb://…` and `--kv-key-provider aws-kms://…`.

use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;
use kv::adapters::aws::{AwsSettings, sdk_config};
use reqwest::StatusCode;
use testkit::moto::{moto_endpoint, unique_name};

use crate::support::{BIN, MOTO_AWS_ENV, Start, TestServer, http};

async fn kms_key(endpoint: &str) -> String {
    let client = aws_sdk_kms::Client::new(&sdk_config(&AwsSettings::moto(endpoint)).await);
    client
        .create_key()
        .send()
        .await
        .expect("CreateKey on moto")
        .key_metadata
        .expect("metadata")
        .key_id
}

fn start_on_aws(data_dir: &std::path::Path, store: &str, provider: &str) -> TestServer {
    TestServer::launch(Start {
        args: vec![
            "--services",
            "kv",
            "--kv-tcp-addr",
            "127.0.0.1:0",
            "--kv-store",
            store,
            "--kv-key-provider",
            provider,
        ],
        env: MOTO_AWS_ENV.to_vec(),
        data_dir: Some(data_dir),
    })
}

#[tokio::test]
async fn dynamodb_and_kms_selected_from_serve_store_encrypted_values_that_survive_a_restart() {
    let endpoint = moto_endpoint().await;
    let table = unique_name("e2e");
    let key_id = kms_key(&endpoint).await;
    let store = format!("dynamodb://{table}?endpoint={endpoint}&create=true");
    let provider = format!("aws-kms://{key_id}?endpoint={endpoint}");
    let dir = crate::support::private_tempdir();
    let client = http();

    let server = start_on_aws(dir.path(), &store, &provider);
    let value = "a secret worth keeping ".repeat(300);
    let put = client
        .put(format!("{}/kv/users/alice", server.url))
        .body(value.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::NO_CONTENT, "{}", server.logs());
    let metrics = server.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("quintet_kv_provider_calls_total")
                && l.contains("provider=\"aws-kms\"")
                && l.contains("op=\"generate\"")),
        "KMS generated the data key: {metrics}"
    );
    assert!(
        server.logs().contains("dynamodb (table"),
        "{}",
        server.logs()
    );
    server.stop();

    // The item is in the table, sealed: no plaintext, a KMS key ARN beside it.
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk_config(&AwsSettings::moto(&endpoint)).await);
    let item = dynamo
        .get_item()
        .table_name(&table)
        .key("key", AttributeValue::S("users/alice".into()))
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the item is stored in DynamoDB");
    let dump = format!("{item:?}");
    assert!(!dump.contains("a secret worth keeping"), "{dump}");
    assert!(dump.contains("arn:aws:kms"), "{dump}");

    // A fresh process, same table and key: the value reads back.
    let server = start_on_aws(dir.path(), &store, &provider);
    let got = client
        .get(format!("{}/kv/users/alice", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), StatusCode::OK, "{}", server.logs());
    assert_eq!(got.text().await.expect("body"), value);
    let twin: serde_json::Value = client
        .get(format!("{}/api/get/users/alice", server.url))
        .send()
        .await
        .expect("twin get")
        .json()
        .await
        .expect("json");
    assert_eq!(twin["value"], value.as_str());
}

#[tokio::test]
async fn dynamodb_misconfiguration_fails_the_start_naming_what_is_wrong() {
    let endpoint = moto_endpoint().await;
    let dir = crate::support::private_tempdir();
    let data = dir.path().to_str().expect("utf8");
    let missing_table = format!("dynamodb://{}?endpoint={endpoint}", unique_name("absent"));
    let missing_key = format!(
        "aws-kms://alias/{}?endpoint={endpoint}",
        unique_name("absent")
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // No create=true: a missing table is an error, not a surprise table.
        (
            vec!["--services", "kv", "--kv-store", &missing_table],
            "does not exist",
        ),
        (
            vec!["--services", "kv", "--kv-key-provider", &missing_key],
            "--kv-key-provider",
        ),
        // DynamoDB is kv's store only.
        (
            vec!["--services", "messages", "--store", &missing_table],
            "DynamoDB is for kv only",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", data])
            .args(["--kv-tcp-addr", "127.0.0.1:0"])
            .args(&args)
            .envs(MOTO_AWS_ENV)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}{stdout}");
        assert!(
            stderr.contains(expected) || stdout.contains(expected),
            "{args:?}: the error should say '{expected}': {stderr}{stdout}"
        );
    }
}
