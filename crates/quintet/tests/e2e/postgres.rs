//! The server on `PostgreSQL`: same behaviour, shared by replicas, and an
//! integrity check that refuses tampered rows.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, drop_schema, http, postgres_schema, postgres_url, sha256_hex};

#[tokio::test]
async fn two_replicas_on_one_database_see_each_others_messages() {
    let (schema, store) = postgres_schema().await;
    let a = TestServer::start(&["--store", &store]);
    let b = TestServer::start(&["--store", &store]);
    let response = http()
        .post(format!("{}/messages", a.url))
        .json(&json!({"message": "shared"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    let again = http()
        .post(format!("{}/messages", b.url))
        .json(&json!({"message": "shared"}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "the second replica sees it already stored"
    );
    let body: Value = http()
        .get(format!("{}/messages/{}", b.url, sha256_hex("shared")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["message"], "shared");
    let ready: Value = http()
        .get(format!("{}/readyz", a.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    assert!(!a.logs().contains(&store), "the store URL is not logged");
    drop(a);
    drop(b);
    drop_schema(&schema).await;
}

#[tokio::test]
async fn a_tampered_row_is_a_500_naming_the_digest_in_the_log_never_wrong_content() {
    let (schema, store) = postgres_schema().await;
    let server = TestServer::start(&["--store", &store]);
    http()
        .post(format!("{}/messages", server.url))
        .json(&json!({"message": "original"}))
        .send()
        .await
        .expect("post");
    let digest = sha256_hex("original");

    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("connect");
    let updated = sqlx::query(&format!(
        "UPDATE {schema}.messages SET body = convert_to('tampered', 'UTF8')"
    ))
    .execute(&admin)
    .await
    .expect("tamper");
    assert_eq!(updated.rows_affected(), 1);
    admin.close().await;

    let response = http()
        .get(format!("{}/messages/{digest}", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.expect("text");
    assert!(
        !text.contains("tampered"),
        "wrong content never served: {text}"
    );
    let list = http()
        .get(format!("{}/messages", server.url))
        .send()
        .await
        .expect("list");
    // The page is served without it, and names it.
    assert_eq!(list.status(), StatusCode::OK);
    let page: Value = list.json().await.expect("page");
    assert_eq!(page["corrupt"], json!([digest]), "{page}");
    assert!(!page.to_string().contains("tampered"), "{page}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"ERROR\"") && l.contains(&digest) && l.contains("integrity")),
        "an error log names the digest:\n{logs}"
    );
    drop(server);
    drop_schema(&schema).await;
}

#[tokio::test]
async fn an_unreachable_database_fails_start_with_a_clear_error() {
    let out = std::process::Command::new(crate::support::BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--store",
            "postgres://postgres:hunter2@127.0.0.1:1/test",
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("messages store from --store (QUINTET_STORE)")
            && stderr.contains("cannot reach PostgreSQL at 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
