//! kv's REST and gRPC APIs (`--services kv`): round trips, errors, and
//! values encrypted at rest.

use reqwest::StatusCode;

use crate::support::{TestApp, spawn_app};

async fn start(extra: &[&str]) -> TestApp {
    let mut args = vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_app(&args).await
}

#[tokio::test]
async fn rest_set_get_list_delete_round_trip_and_values_are_encrypted_at_rest() {
    let server = start(&[]).await;
    let client = server.client.clone();
    let value: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let put = client
        .put(format!("{}/kv/users/alice", server.url))
        .body(value.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let got = server.get("/kv/users/alice").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert_eq!(got.bytes().await.expect("body").as_ref(), &value[..]);

    let empty = client
        .put(format!("{}/kv/users/bob", server.url))
        .send()
        .await
        .expect("put");
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);
    let list: serde_json::Value = server
        .get("/kv?prefix=users/&limit=1")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"][0]["key"], "users/alice");
    assert_eq!(list["items"][0]["size"], 70_000);
    assert_eq!(list["next_cursor"], "users/alice");
    let rest: serde_json::Value = client
        .get(format!(
            "{}/kv?prefix=users/&limit=1&cursor=users/alice",
            server.url
        ))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(rest["items"][0]["key"], "users/bob");
    assert_eq!(rest["items"][0]["size"], 0);

    // The plaintext is nowhere in the store's files (journal, tables, blobs).
    let files = files_under(&server.data_dir.join("kv.fjall"));
    assert!(!files.is_empty(), "the store has files");
    for (path, bytes) in files {
        assert!(
            !bytes.windows(64).any(|w| w == &value[1000..1064]),
            "plaintext found in {}",
            path.display()
        );
    }

    let del = server.delete("/kv/users/alice").await;
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let again = server.delete("/kv/users/alice").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let gone = server.get("/kv/users/alice").await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let server = start(&["--kv-max-value-bytes", "1000"]).await;
    let client = server.client.clone();
    let too_big = client
        .put(format!("{}/kv/k", server.url))
        .body(vec![0u8; 1001])
        .send()
        .await
        .expect("put");
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = too_big.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("message").contains("1000"),
        "{body}"
    );
    let missing = server.get("/kv/k").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let long_key = "k".repeat(1025);
    let bad_key = client
        .put(format!("{}/kv/{long_key}", server.url))
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    let bad_limit = server.get("/kv?limit=0").await;
    assert_eq!(bad_limit.status(), StatusCode::BAD_REQUEST);
    let bad_json = client
        .post(format!("{}/api/save", server.url))
        .header("content-type", "application/json")
        .body(r#"{"key": "k"}"#)
        .send()
        .await
        .expect("save");
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    // The seed twin reads one UTF-8 JSON text, as every JSON body is read.
    for (content_type, body, status) in [
        (
            "application/json",
            &b"{\"key\": \"k\", \"value\": \"v\"} x"[..],
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            b"{\"key\": \"k\", \"value\": \"v\", \"note\": \"\xff\"}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            br#"{"key": "k", "value": "v"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let refused = client
            .post(format!("{}/api/save", server.url))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("save");
        assert_eq!(
            refused.status(),
            status,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let missing = server.get("/api/get/k").await;
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "nothing was stored"
    );
}

#[tokio::test]
async fn grpc_set_get_list_delete_with_proper_status_codes() {
    use kv::proto::v1::key_value_client::KeyValueClient;
    use kv::proto::v1::{DeleteRequest, GetRequest, ListRequest, SetRequest};

    let server = start(&["--kv-max-value-bytes", "5000000"]).await;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = KeyValueClient::new(channel)
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20);
    let big: Vec<u8> = (0..4_900_000u32).map(|i| (i % 253) as u8).collect();
    for (key, value) in [
        ("a/small", b"v".to_vec()),
        ("a/big", big),
        ("a/empty", vec![]),
    ] {
        client
            .set(SetRequest {
                key: key.into(),
                value: value.clone(),
            })
            .await
            .expect("set");
        let got = client
            .get(GetRequest { key: key.into() })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.value, value, "{key}");
    }
    let page = client
        .list(ListRequest {
            prefix: "a/".into(),
            cursor: String::new(),
            limit: 2,
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.next_cursor, page.entries[1].key);

    let missing = client
        .get(GetRequest { key: "nope".into() })
        .await
        .map(|_| ());
    assert_eq!(
        missing.expect_err("not found").code(),
        tonic::Code::NotFound
    );
    let bad = client
        .get(GetRequest { key: String::new() })
        .await
        .map(|_| ());
    assert_eq!(
        bad.expect_err("invalid").code(),
        tonic::Code::InvalidArgument
    );
    let too_big = client
        .set(SetRequest {
            key: "x".into(),
            value: vec![0; 5_000_001],
        })
        .await
        .map(|_| ());
    assert_eq!(
        too_big.expect_err("too big").code(),
        tonic::Code::ResourceExhausted
    );
    client
        .delete(DeleteRequest {
            key: "a/small".into(),
        })
        .await
        .expect("delete");
    let again = client
        .delete(DeleteRequest {
            key: "a/small".into(),
        })
        .await
        .map(|_| ());
    assert_eq!(again.expect_err("gone").code(), tonic::Code::NotFound);
}

/// Every file under `dir` with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("store directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            let bytes = std::fs::read(&path).expect("store file");
            files.push((path, bytes));
        }
    }
    files
}
