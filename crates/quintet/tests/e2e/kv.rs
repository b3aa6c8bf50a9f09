//! kv end to end: the real binary with `--services kv`, driven over REST, the
//! seed's REST twin and the seed's raw-TCP protocol.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{TestServer, http};

fn start(extra: &[&str]) -> TestServer {
    let mut args = vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    TestServer::start(&args)
}

#[tokio::test]
async fn rest_set_get_list_delete_round_trip_and_values_are_encrypted_at_rest() {
    let server = start(&[]);
    let client = http();
    let value: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let put = client
        .put(format!("{}/kv/users/alice", server.url))
        .body(value.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let got = client
        .get(format!("{}/kv/users/alice", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert_eq!(got.bytes().await.expect("body").as_ref(), &value[..]);

    let empty = client
        .put(format!("{}/kv/users/bob", server.url))
        .send()
        .await
        .expect("put");
    assert_eq!(empty.status(), StatusCode::NO_CONTENT);
    let list: serde_json::Value = client
        .get(format!("{}/kv?prefix=users/&limit=1", server.url))
        .send()
        .await
        .expect("list")
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

    // The plaintext is nowhere in the store file.
    let file = std::fs::read(server.data_dir.join("kv.redb")).expect("store file");
    assert!(!file.windows(64).any(|w| w == &value[1000..1064]));

    let del = client
        .delete(format!("{}/kv/users/alice", server.url))
        .send()
        .await
        .expect("del");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let again = client
        .delete(format!("{}/kv/users/alice", server.url))
        .send()
        .await
        .expect("del");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let gone = client
        .get(format!("{}/kv/users/alice", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_stores_nothing() {
    let server = start(&["--kv-max-value-bytes", "1000"]);
    let client = http();
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
    let missing = client
        .get(format!("{}/kv/k", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let long_key = "k".repeat(1025);
    let bad_key = client
        .put(format!("{}/kv/{long_key}", server.url))
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);
    let bad_limit = client
        .get(format!("{}/kv?limit=0", server.url))
        .send()
        .await
        .expect("list");
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
    let missing = client
        .get(format!("{}/api/get/k", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(
        missing.status(),
        StatusCode::NOT_FOUND,
        "nothing was stored"
    );
}

#[tokio::test]
async fn the_seed_rest_twin_and_tcp_protocol_share_the_store() {
    let server = start(&[]);
    let client = http();
    let saved = client
        .post(format!("{}/api/save", server.url))
        .json(&serde_json::json!({"key": "greeting", "value": "hello"}))
        .send()
        .await
        .expect("save");
    assert_eq!(saved.status(), StatusCode::CREATED);
    assert_eq!(
        saved.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"key": "greeting", "value": "hello"})
    );
    let got = client
        .get(format!("{}/api/get/greeting", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"key": "greeting", "value": "hello"})
    );
    let missing = client
        .get(format!("{}/api/get/nope", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"error": "not_found"})
    );

    // The same value over the seed's raw TCP protocol: a get_request envelope,
    // encoded by hand from key_value.proto (type = 3, get_req = { key }).
    let tcp = server
        .log_field("kv tcp listening", "addr")
        .expect("tcp addr logged");
    let mut stream = tokio::net::TcpStream::connect(&tcp).await.expect("connect");
    let key = b"greeting";
    let mut get_req = vec![0x0a, key.len() as u8];
    get_req.extend_from_slice(key);
    let mut request = vec![0x08, 0x03, 0x22, get_req.len() as u8];
    request.extend_from_slice(&get_req);
    stream.write_all(&request).await.expect("write");
    let mut reply = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("reply in time")
        .expect("read");
    // type = get_response_t (4); get_resp = { error = ok (1), req = { key, value } }.
    let expected = [
        &[0x08, 0x04, 0x2a, 21, 0x08, 0x01, 0x12, 17, 0x0a, 8][..],
        b"greeting",
        &[0x12, 5],
        b"hello",
    ]
    .concat();
    assert_eq!(&reply[..n], &expected[..]);
}

#[tokio::test]
async fn rotation_rewraps_under_a_new_master_key_and_values_survive_a_restart() {
    let dir = crate::support::private_tempdir();
    let args = ["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"];
    let server = TestServer::launch(crate::support::Start {
        args: args.to_vec(),
        data_dir: Some(dir.path()),
        ..Default::default()
    });
    let client = http();
    for i in 0..3 {
        client
            .put(format!("{}/kv/k{i}", server.url))
            .body(format!("v{i}"))
            .send()
            .await
            .expect("put")
            .error_for_status()
            .expect("stored");
    }
    let report: serde_json::Value = client
        .post(format!("{}/admin/kv/rotate", server.url))
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    assert_eq!(report["rewrapped"], 3, "{report}");
    assert_eq!(report["new_key"], true);
    assert!(
        report["key_id"]
            .as_str()
            .expect("id")
            .starts_with("local:v2:")
    );
    assert!(dir.path().join("kv-keys/master-v2.key").exists());
    server.stop();
    let server = TestServer::launch(crate::support::Start {
        args: args.to_vec(),
        data_dir: Some(dir.path()),
        ..Default::default()
    });
    for i in 0..3 {
        let got = client
            .get(format!("{}/kv/k{i}", server.url))
            .send()
            .await
            .expect("get");
        assert_eq!(got.text().await.expect("text"), format!("v{i}"));
    }
}

#[tokio::test]
async fn grpc_set_get_list_delete_with_proper_status_codes() {
    use kv::proto::v1::key_value_client::KeyValueClient;
    use kv::proto::v1::{DeleteRequest, GetRequest, ListRequest, SetRequest};

    let server = start(&["--kv-max-value-bytes", "5000000"]);
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

#[tokio::test]
async fn the_cli_sets_gets_lists_deletes_and_rotates() {
    let server = start(&[]);
    let url = server.url.as_str();
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), b"from a file\n").expect("write");
    let at_file = format!("@{}", file.path().display());
    let (code, _, err) =
        crate::support::cli(&["kv", "--url", url, "set", "dir/a", "plain text"], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = crate::support::cli(&["kv", "--url", url, "set", "dir/b", &at_file], None);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = crate::support::cli(
        &["kv", "--url", url, "set", "dir/c", "-"],
        Some("from stdin"),
    );
    assert_eq!(code, 0, "{err}");
    for (key, value) in [
        ("dir/a", "plain text"),
        ("dir/b", "from a file\n"),
        ("dir/c", "from stdin"),
    ] {
        let (code, out, err) = crate::support::cli(&["kv", "--url", url, "get", key], None);
        assert_eq!((code, out.as_str()), (0, value), "{err}");
    }
    let (code, out, _) =
        crate::support::cli(&["kv", "--url", url, "list", "--prefix", "dir/"], None);
    assert_eq!(code, 0);
    let page: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(page["items"].as_array().expect("items").len(), 3);
    let (code, out, _) = crate::support::cli(&["kv", "--url", url, "rotate"], None);
    assert_eq!(code, 0);
    assert!(out.contains("\"rewrapped\": 3"), "{out}");
    let (code, _, _) = crate::support::cli(&["kv", "--url", url, "del", "dir/a"], None);
    assert_eq!(code, 0);
    let (code, _, err) = crate::support::cli(&["kv", "--url", url, "get", "dir/a"], None);
    assert_ne!(code, 0);
    assert!(err.contains("404"), "{err}");
}
