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
    let mut get_req = vec![0x0a, u8::try_from(key.len()).unwrap()];
    get_req.extend_from_slice(key);
    let mut request = vec![0x08, 0x03, 0x22, u8::try_from(get_req.len()).unwrap()];
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
