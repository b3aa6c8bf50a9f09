//! kv as a drop-in for the original services: items written into
//! `key_value_table` by the originals' own layouts — laid out by boto3 and
//! Python's `cryptography` in `seed_kv.py`, code quintet did not write —
//! are served over REST, gRPC and the raw-TCP protocol and survive
//! rotation in their own layout; items quintet writes in the seed format
//! are read back by that Python side the PHP twin's way.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kv::adapters::aws::{AwsSettings, sdk_config};
use prost::Message as _;
use reqwest::StatusCode;
use testkit::moto::{moto_endpoint, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{BIN, MOTO_AWS_ENV, Start, TestServer, cli, http};

/// The alias the Erlang server encrypts under.
const SEED_ALIAS: &str = "alias/key_value_table_kms";
const SEED_WRITER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/seed_kv.py");
/// The seed's TCP protocol, which `seed_kv.py` compiles with protoc.
const SEED_PROTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../proto/seed/key_value.proto"
);
const BIG_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kv/tests/fixtures/big_content_value.txt"
);

/// Runs `seed_kv.py` with moto's credentials; its stdout, or a panic with its stderr.
fn python(args: &[&str]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(SEED_WRITER)
        .args(args)
        .envs(MOTO_AWS_ENV)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "seed_kv.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The seed's KMS alias on moto, pointing at a key (made once per moto server).
async fn seed_alias(endpoint: &str) {
    let kms = aws_sdk_kms::Client::new(&sdk_config(&AwsSettings::moto(endpoint)).await);
    let listed = kms.list_aliases().send().await.expect("ListAliases");
    if listed
        .aliases()
        .iter()
        .any(|a| a.alias_name() == Some(SEED_ALIAS))
    {
        return;
    }
    let key = kms
        .create_key()
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("metadata")
        .key_id;
    if let Err(e) = kms
        .create_alias()
        .alias_name(SEED_ALIAS)
        .target_key_id(key)
        .send()
        .await
    {
        // Another test of this process made it first.
        let text = format!("{e:?}");
        assert!(text.contains("AlreadyExists"), "CreateAlias: {text}");
    }
}

fn start(data_dir: &Path, store: &str, provider: &str, extra: &[&str]) -> TestServer {
    let mut args = vec![
        "--services",
        "kv",
        "--kv-tcp-addr",
        "127.0.0.1:0",
        "--kv-store",
        store,
        "--kv-key-provider",
        provider,
    ];
    args.extend_from_slice(extra);
    TestServer::launch(Start {
        args,
        env: MOTO_AWS_ENV.to_vec(),
        data_dir: Some(data_dir),
    })
}

/// A get over the seed's raw-TCP protocol: (error code, value).
async fn tcp_get(server: &TestServer, key: &str) -> (i32, String) {
    use kv::proto::seed::{GetRequest, ReqEnvelope, req_envelope};
    let addr = server
        .log_field("kv tcp listening", "addr")
        .expect("tcp addr logged");
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = ReqEnvelope {
        r#type: req_envelope::MsgType::GetRequestT as i32,
        get_req: Some(GetRequest { key: key.into() }),
        ..ReqEnvelope::default()
    };
    stream
        .write_all(&request.encode_to_vec())
        .await
        .expect("write");
    // No length prefix: read until a whole envelope decodes.
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "connection closed before a whole reply");
        reply.extend_from_slice(&buf[..n]);
        if let Ok(envelope) = ReqEnvelope::decode(&reply[..])
            && let Some(resp) = envelope.get_resp
        {
            return (resp.error, resp.req.map(|d| d.value).unwrap_or_default());
        }
    }
}

async fn grpc_get(server: &TestServer, key: &str) -> Result<Vec<u8>, tonic::Status> {
    use kv::proto::v1::GetRequest;
    use kv::proto::v1::key_value_client::KeyValueClient;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    KeyValueClient::new(channel)
        .get(GetRequest { key: key.into() })
        .await
        .map(|r| r.into_inner().value)
}

/// Reads `key` over every edge and checks each answers `expected`.
async fn read_everywhere(server: &TestServer, key: &str, expected: &str) {
    let client = http();
    let twin = client
        .get(format!("{}/api/get/{key}", server.url))
        .send()
        .await
        .expect("GET /api/get");
    assert_eq!(twin.status(), StatusCode::OK, "{key}: {}", server.logs());
    let twin: serde_json::Value = twin.json().await.expect("json");
    assert_eq!(twin, serde_json::json!({"key": key, "value": expected}));
    let rest = client
        .get(format!("{}/kv/{key}", server.url))
        .send()
        .await
        .expect("GET /kv");
    assert_eq!(rest.status(), StatusCode::OK, "{key}");
    assert_eq!(rest.bytes().await.expect("body"), expected.as_bytes());
    let grpc = grpc_get(server, key).await.expect("gRPC Get");
    assert_eq!(grpc, expected.as_bytes(), "{key} over gRPC");
    // get_response error ok = 1.
    assert_eq!(
        tcp_get(server, key).await,
        (1, expected.to_owned()),
        "{key} over TCP"
    );
    // And by a client protoc generated from the seed's proto, not our build.
    let addr = server
        .log_field("kv tcp listening", "addr")
        .expect("tcp addr logged");
    let reply: serde_json::Value =
        serde_json::from_slice(&python(&["tcp-get", SEED_PROTO, &addr, key])).expect("json");
    assert_eq!(
        reply,
        serde_json::json!({"type": "get_response_t", "error": "ok", "value": expected}),
        "{key} over TCP from the protoc-generated client"
    );
}

fn values() -> Vec<(&'static str, String)> {
    let big = std::fs::read_to_string(BIG_FIXTURE).expect("fixture");
    assert!(big.len() > 4096, "the fixture is over KMS's 4 KB limit");
    vec![
        ("one", "x".to_owned()),
        ("hundred", "h".repeat(100)),
        ("big", big),
        ("unicode", "héllo wörld ✓ 日本語 🦀".to_owned()),
    ]
}

fn metric(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn kv_seed_items_written_by_either_original_are_served_everywhere_and_survive_rotation() {
    let endpoint = moto_endpoint().await;
    seed_alias(&endpoint).await;
    let table = unique_name("seed");
    let store = format!("dynamodb://{table}?endpoint={endpoint}&create=true");
    let provider = format!("aws-kms://{SEED_ALIAS}?endpoint={endpoint}");
    let dir = crate::support::private_tempdir();
    let server = start(dir.path(), &store, &provider, &[]);

    let mut written = Vec::new();
    for layout in ["php", "erlang"] {
        for (name, value) in values() {
            let key = format!("{layout}/{name}");
            let file = dir.path().join(format!("{layout}-{name}.txt"));
            std::fs::write(&file, &value).expect("value file");
            python(&[
                "write",
                &endpoint,
                &table,
                SEED_ALIAS,
                layout,
                &key,
                file.to_str().expect("utf8"),
            ]);
            written.push((layout, key, value));
        }
    }
    for (_, key, value) in &written {
        read_everywhere(&server, key, value).await;
    }
    // Each reading was the right one the first time: no Decrypt was refused.
    let metrics = server.metrics().await;
    let refused = metric(
        &metrics,
        "quintet_kv_provider_calls_total",
        &["op=\"unwrap\"", "outcome=\"refused\""],
    );
    // A count: zero, whatever the sign an empty float sum has.
    assert!(
        refused.abs() < f64::EPSILON,
        "{refused} refused:\n{metrics}"
    );

    // Rotation rewraps every item in its own layout: the originals can still read them.
    let (code, out, err) = cli(&["kv", "--url", &server.url, "rotate"], None);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(report["rewrapped"], written.len(), "{report}");
    assert_eq!(report["converted"], 0, "{report}");
    for (layout, key, value) in &written {
        let attributes: serde_json::Value =
            serde_json::from_slice(&python(&["layout", &endpoint, &table, key])).expect("json");
        let data_key_type = if *layout == "php" { "B" } else { "S" };
        assert_eq!(attributes["data_key"], data_key_type, "{key}: {attributes}");
        assert_eq!(attributes["value"], "S", "{key}");
        assert!(attributes.get("format").is_none(), "{key}: {attributes}");
        let read_back = python(&["read", layout, &endpoint, &table, key]);
        assert_eq!(String::from_utf8(read_back).expect("utf8"), *value, "{key}");
    }
    // A second rotation finds them current.
    let (code, out, err) = cli(&["kv", "--url", &server.url, "rotate"], None);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(report["current"], written.len(), "{report}");
    server.stop();

    // A fresh process (no cached data keys) reads the rotated items.
    let server = start(dir.path(), &store, &provider, &[]);
    for (_, key, value) in &written {
        read_everywhere(&server, key, value).await;
    }

    // A value set by the protoc-generated client reads everywhere.
    let file = dir.path().join("tcp-set.txt");
    std::fs::write(&file, "set over the seed's protocol ✓").expect("value file");
    let addr = server
        .log_field("kv tcp listening", "addr")
        .expect("tcp addr logged");
    let reply: serde_json::Value = serde_json::from_slice(&python(&[
        "tcp-set",
        SEED_PROTO,
        &addr,
        "tcp/set",
        file.to_str().expect("utf8"),
    ]))
    .expect("json");
    assert_eq!(
        reply,
        serde_json::json!({"type": "set_response_t", "error": "ok"})
    );
    read_everywhere(&server, "tcp/set", "set over the seed's protocol ✓").await;

    // A flipped ciphertext byte is detected and named, never served.
    python(&["flip", &endpoint, &table, "php/hundred"]);
    let got = http()
        .get(format!("{}/api/get/php/hundred", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = got.text().await.expect("body");
    assert!(body.contains("php/hundred"), "{body}");
    assert!(!body.contains(&"h".repeat(100)), "{body}");
    let status = grpc_get(&server, "php/hundred").await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::DataLoss);
    // get_response error internal = 3.
    assert_eq!(tcp_get(&server, "php/hundred").await.0, 3);
}

#[tokio::test]
async fn kv_seed_write_format_is_read_by_python_the_php_way_and_converts_both_ways() {
    let endpoint = moto_endpoint().await;
    seed_alias(&endpoint).await;
    let table = unique_name("seedfmt");
    let store = format!("dynamodb://{table}?endpoint={endpoint}&create=true");
    let provider = format!("aws-kms://{SEED_ALIAS}?endpoint={endpoint}");
    let dir = crate::support::private_tempdir();
    let server = start(
        dir.path(),
        &store,
        &provider,
        &["--kv-write-format", "seed"],
    );
    assert!(
        server.logs().contains("binds no associated data"),
        "a start-up warning: {}",
        server.logs()
    );
    let client = http();
    let value = "written by quintet, read by the original ✓";
    let put = client
        .put(format!("{}/kv/mig/a", server.url))
        .body(value)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), StatusCode::NO_CONTENT, "{}", server.logs());
    let attributes: serde_json::Value =
        serde_json::from_slice(&python(&["layout", &endpoint, &table, "mig/a"])).expect("json");
    assert_eq!(attributes["data_key"], "B", "{attributes}");
    assert_eq!(attributes["value"], "S", "{attributes}");
    assert!(attributes.get("format").is_none(), "{attributes}");
    let opened = python(&["read", "php", &endpoint, &table, "mig/a"]);
    assert_eq!(String::from_utf8(opened).expect("utf8"), value);
    read_everywhere(&server, "mig/a", value).await;

    // Converted to quintet's layout: the originals can no longer read it, quintet can.
    let (code, out, err) = cli(
        &["kv", "--url", &server.url, "rotate", "--convert", "quintet"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(report["converted"], 1, "{report}");
    assert_eq!(report["converted_to"], "quintet", "{report}");
    let attributes: serde_json::Value =
        serde_json::from_slice(&python(&["layout", &endpoint, &table, "mig/a"])).expect("json");
    assert_eq!(attributes["format"], "N", "{attributes}");
    read_everywhere(&server, "mig/a", value).await;

    // And back, for a migration that is rolled back.
    let (code, out, err) = cli(
        &["kv", "--url", &server.url, "rotate", "--convert", "seed"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(report["converted"], 1, "{report}");
    let opened = python(&["read", "php", &endpoint, &table, "mig/a"]);
    assert_eq!(String::from_utf8(opened).expect("utf8"), value);

    // An unknown layout is a 400 naming it.
    let bad = client
        .post(format!("{}/admin/kv/rotate?convert=xml", server.url))
        .send()
        .await
        .expect("rotate");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.expect("body").contains("xml"));
}

#[test]
fn kv_seed_write_format_without_dynamodb_exits_2_naming_the_option() {
    let dir = crate::support::private_tempdir();
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--services", "kv"])
        .args(["--kv-tcp-addr", "127.0.0.1:0", "--kv-write-format", "seed"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--kv-write-format"), "{stderr}");
    assert!(stderr.contains("dynamodb://"), "{stderr}");
    // Nothing was created: the check comes before any store opens.
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the data dir stays empty"
    );
}
