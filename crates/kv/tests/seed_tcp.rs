//! A client speaking the seed's envelope protocol over a raw socket, against
//! the real TCP server on port 0 with the local key provider and redb.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kv::adapters::local_keys::LocalKeyProvider;
use kv::adapters::redb::RedbKvStore;
use kv::domain::Namespace;
use kv::engine::vault::{CacheLimits, Vault};
use kv::proto::seed::{
    Data, GetRequest, ReqEnvelope, SetRequest, get_response, req_envelope, set_response,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Server {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = LocalKeyProvider::open_dir(&dir.path().join("keys")).expect("keys");
    let store = RedbKvStore::open(&dir.path().join("kv.redb")).expect("store");
    let vault = Vault::new(
        Arc::new(store),
        Arc::new(provider),
        Namespace::default(),
        4 << 20,
        CacheLimits {
            max_age: Duration::from_mins(5),
            max_uses: 1000,
            max_bytes: 1 << 30,
            max_entries: 100,
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let limits = kv::api::seed_tcp::Limits {
        max_request: (4 << 20) + kv::api::seed_tcp::REQUEST_OVERHEAD,
        max_connections: 16,
        idle_timeout: Duration::from_mins(1),
        frame_timeout: Duration::from_secs(30),
        buffer_bytes: 16 << 20,
        budget_wait: Duration::from_secs(5),
        rate: None,
        allow: Vec::new(),
    };
    tokio::spawn(kv::api::seed_tcp::serve(
        listener,
        Arc::new(vault),
        limits,
        None,
        stop.clone(),
    ));
    Server {
        addr,
        stop,
        _dir: dir,
    }
}

/// Sends one envelope and reads one back (the reply is complete when it decodes
/// with its type and body, as the seed's client reads it).
async fn call(stream: &mut TcpStream, request: &ReqEnvelope) -> ReqEnvelope {
    stream
        .write_all(&request.encode_to_vec())
        .await
        .expect("write");
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if let Ok(reply) = ReqEnvelope::decode(&buf[..])
            && (reply.set_resp.is_some() || reply.get_resp.is_some())
        {
            return reply;
        }
    }
}

fn set(key: &str, value: &str) -> ReqEnvelope {
    ReqEnvelope {
        r#type: req_envelope::MsgType::SetRequestT as i32,
        set_req: Some(SetRequest {
            req: Data {
                key: key.into(),
                value: value.into(),
            },
        }),
        ..Default::default()
    }
}

fn get(key: &str) -> ReqEnvelope {
    ReqEnvelope {
        r#type: req_envelope::MsgType::GetRequestT as i32,
        get_req: Some(GetRequest { key: key.into() }),
        ..Default::default()
    }
}

#[tokio::test]
async fn set_and_get_small_and_big_values_on_one_connection() {
    let server = start().await;
    let big = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/big_content_value.txt"
    ))
    .expect("fixture");
    assert!(big.len() > 4096);
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    for (key, value) in [("key", "value"), ("big", big.as_str()), ("empty", "")] {
        let reply = call(&mut stream, &set(key, value)).await;
        assert_eq!(reply.r#type, req_envelope::MsgType::SetResponseT as i32);
        assert_eq!(
            reply.set_resp.expect("set_resp").error,
            set_response::ErrorT::Ok as i32
        );
        let reply = call(&mut stream, &get(key)).await;
        assert_eq!(reply.r#type, req_envelope::MsgType::GetResponseT as i32);
        let resp = reply.get_resp.expect("get_resp");
        assert_eq!(resp.error, get_response::ErrorT::Ok as i32);
        let data = resp.req.expect("data");
        assert_eq!((data.key.as_str(), data.value.as_str()), (key, value));
    }
    let reply = call(&mut stream, &get("missing")).await;
    assert_eq!(
        reply.get_resp.expect("get_resp").error,
        get_response::ErrorT::NotFound as i32
    );
    server.stop.cancel();
}

#[tokio::test]
async fn a_request_split_across_writes_is_answered_once_whole() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let bytes = set("split", &"x".repeat(10_000)).encode_to_vec();
    for chunk in bytes.chunks(1000) {
        stream.write_all(chunk).await.expect("write");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut reply = vec![0u8; 64];
    let n = stream.read(&mut reply).await.expect("read");
    let reply = ReqEnvelope::decode(&reply[..n]).expect("reply");
    assert_eq!(
        reply.set_resp.expect("set_resp").error,
        set_response::ErrorT::Ok as i32
    );
    server.stop.cancel();
}

#[tokio::test]
async fn garbage_gets_internal_and_a_closed_connection_and_the_server_lives_on() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("read");
    let reply = ReqEnvelope::decode(&buf[..]).expect("an envelope");
    assert_eq!(
        reply.get_resp.expect("get_resp").error,
        get_response::ErrorT::Internal as i32
    );
    let oversized_key = "k".repeat(2000);
    let mut fresh = TcpStream::connect(server.addr)
        .await
        .expect("connect again");
    let reply = call(&mut fresh, &set(&oversized_key, "v")).await;
    assert_eq!(
        reply.set_resp.expect("set_resp").error,
        set_response::ErrorT::Internal as i32
    );
    let reply = call(&mut fresh, &get("nothing")).await;
    assert_eq!(
        reply.get_resp.expect("get_resp").error,
        get_response::ErrorT::NotFound as i32
    );
    server.stop.cancel();
}
