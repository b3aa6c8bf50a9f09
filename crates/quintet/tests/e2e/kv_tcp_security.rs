//! kv's raw-TCP port under attack and under policy: the real binary on port
//! 0, real TCP (and TLS) clients. The seed protocol carries no credential, so
//! the port's identity is mutual TLS, its reach an allowlist, and its bounds
//! a connection cap, deadlines, a shared byte budget and a per-IP rate.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kv::proto::seed::{Data, GetRequest, ReqEnvelope, SetRequest, req_envelope};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BIN, Start, TestServer, http, private_tempdir};

/// How long a reply or a close may take before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);

/// The raw-TCP address the server logged, dialled on loopback.
fn tcp_addr(server: &TestServer) -> String {
    let logged = server
        .log_field("kv tcp listening", "addr")
        .expect("tcp addr logged");
    let port = logged.rsplit(':').next().expect("port");
    format!("127.0.0.1:{port}")
}

fn set_request(key: &str, value: &str) -> Vec<u8> {
    ReqEnvelope {
        r#type: req_envelope::MsgType::SetRequestT as i32,
        set_req: Some(SetRequest {
            req: Data {
                key: key.into(),
                value: value.into(),
            },
        }),
        ..ReqEnvelope::default()
    }
    .encode_to_vec()
}

fn get_request(key: &str) -> Vec<u8> {
    ReqEnvelope {
        r#type: req_envelope::MsgType::GetRequestT as i32,
        get_req: Some(GetRequest { key: key.into() }),
        ..ReqEnvelope::default()
    }
    .encode_to_vec()
}

/// What came back for one request.
#[derive(Debug, PartialEq)]
enum Reply {
    /// `set_response` error code (1 ok, 2 internal).
    Set(i32),
    /// `get_response` error code (1 ok, 2 not found, 3 internal) and value.
    Get(i32, String),
    /// The connection closed (or failed) before a whole reply.
    Closed,
}

/// Sends one request and reads its reply (replies have no length prefix:
/// read until a whole envelope decodes).
async fn call<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Reply {
    if stream.write_all(request).await.is_err() {
        return Reply::Closed;
    }
    read_reply(stream).await
}

async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> Reply {
    let mut reply = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a reply or a close in time")
        {
            Ok(0) | Err(_) => return Reply::Closed,
            Ok(n) => n,
        };
        reply.extend_from_slice(&buf[..n]);
        if let Ok(envelope) = ReqEnvelope::decode(&reply[..]) {
            if let Some(resp) = envelope.set_resp {
                return Reply::Set(resp.error);
            }
            if let Some(resp) = envelope.get_resp {
                return Reply::Get(resp.error, resp.req.map(|d| d.value).unwrap_or_default());
            }
        }
    }
}

/// True once the server closes `stream` (EOF or reset) with nothing sent.
async fn closed_without_reply<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn kv_server(args: &[&str]) -> TestServer {
    let mut all = vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    TestServer::start(&all)
}

#[test]
fn tokens_with_the_tcp_port_beyond_loopback_and_no_client_certificates_refuse_to_start() {
    let dir = private_tempdir();
    let out = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--services", "kv"])
        .args(["--kv-tcp-addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("QUINTET_TOKENS", "some-token")
        .env_remove("PORT")
        .output()
        .expect("run quintet serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    for choice in [
        "invalid value for --kv-tcp-addr",
        "0.0.0.0:0",
        "--kv-tcp-client-ca",
        "--kv-tcp-addr 127.0.0.1",
        "--kv-tcp-insecure-no-auth",
    ] {
        assert!(stderr.contains(choice), "{choice:?} missing from: {stderr}");
    }
    // Nothing was created: the check runs before any store opens.
    assert!(
        !dir.path().join("kv-keys").exists(),
        "refused before the key provider"
    );
}

#[tokio::test]
async fn the_acknowledgement_flag_starts_beyond_loopback_with_a_warning() {
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "kv",
            "--kv-tcp-addr",
            "0.0.0.0:0",
            "--kv-tcp-insecure-no-auth",
        ],
        env: vec![("QUINTET_TOKENS", "some-token")],
        ..Start::default()
    });
    let warning = server
        .logs()
        .lines()
        .find(|l| l.contains("requires no credential"))
        .map(str::to_owned)
        .expect("a warning that the port needs no credential");
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    // Acknowledged, so open: as it was, without a credential.
    let mut stream = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    assert_eq!(
        call(&mut stream, &set_request("k", "v")).await,
        Reply::Set(1)
    );
    assert_eq!(
        call(&mut stream, &get_request("k")).await,
        Reply::Get(1, "v".into())
    );
}

/// A CA, and certificates it signs, as PEM files in `dir`.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("CA");
        Self { ca, ca_key }
    }

    /// (certificate PEM, key PEM) for `names`, for a server or a client.
    fn issue(&self, names: &[&str], client: bool) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(
            names
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .expect("params");
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pem");
    path.to_str().expect("utf-8 path").to_owned()
}

/// A TLS client trusting `ca`, presenting `identity` if given.
fn tls_client(
    ca: &rcgen::Certificate,
    identity: Option<(String, String)>,
) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("trust the CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A set over TLS with `connector`: the reply, or `Closed` when the server refused.
async fn tls_set(connector: &tokio_rustls::TlsConnector, addr: &str, key: &str) -> Reply {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    // With TLS 1.3 the client may finish before the server has checked its
    // certificate: the refusal then shows on the first read.
    let Ok(mut stream) = connector.connect(name, tcp).await else {
        return Reply::Closed;
    };
    call(&mut stream, &set_request(key, "over mutual TLS")).await
}

#[tokio::test]
async fn mutual_tls_admits_clients_the_ca_signed_and_refuses_the_rest() {
    let dir = private_tempdir();
    let ours = Pki::new("kv clients");
    let theirs = Pki::new("another CA");
    let (server_cert, server_key) = ours.issue(&["localhost"], false);
    let cert = write(dir.path(), "server.pem", &server_cert);
    let key = write(dir.path(), "server-key.pem", &server_key);
    let ca = write(dir.path(), "ca.pem", &ours.ca.pem());
    let data = dir.path().join("data");
    // Beyond loopback with tokens: mutual TLS satisfies the start-up policy.
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "kv",
            "--kv-tcp-addr",
            "0.0.0.0:0",
            "--kv-tcp-tls-cert",
            &cert,
            "--kv-tcp-tls-key",
            &key,
            "--kv-tcp-client-ca",
            &ca,
        ],
        env: vec![("QUINTET_TOKENS", "some-token")],
        data_dir: Some(&data),
    });
    assert!(
        !server.logs().contains("requires no credential"),
        "no warning with client certificates:\n{}",
        server.logs()
    );
    let addr = tcp_addr(&server);

    let signed = tls_client(&ours.ca, Some(ours.issue(&["client-a"], true)));
    assert_eq!(tls_set(&signed, &addr, "mtls").await, Reply::Set(1));
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    let mut stream = signed
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake with a signed certificate");
    assert_eq!(
        call(&mut stream, &get_request("mtls")).await,
        Reply::Get(1, "over mutual TLS".into())
    );

    let anonymous = tls_client(&ours.ca, None);
    assert_eq!(tls_set(&anonymous, &addr, "anon").await, Reply::Closed);
    let foreign = tls_client(&ours.ca, Some(theirs.issue(&["client-b"], true)));
    assert_eq!(tls_set(&foreign, &addr, "foreign").await, Reply::Closed);
    // Plain TCP on a TLS port is not a request either.
    let mut plain = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(
        call(&mut plain, &set_request("plain", "v")).await,
        Reply::Closed
    );

    // Nothing the refused clients sent was stored.
    let client = http();
    for key in ["anon", "foreign", "plain"] {
        let got = client
            .get(format!("{}/kv/{key}", server.url))
            .bearer_auth("some-token")
            .send()
            .await
            .expect("get");
        assert_eq!(got.status(), reqwest::StatusCode::NOT_FOUND, "{key}");
    }
    let metrics = server.metrics().await;
    let refused = metric(
        &metrics,
        "quintet_kv_tcp_connections_refused_total",
        &["reason=\"tls\""],
    )
    .expect("tls refusals counted");
    assert!(refused >= 3.0, "{refused}");
}

#[tokio::test]
async fn clients_outside_the_allowlist_are_closed_at_accept() {
    let outside = kv_server(&["--kv-tcp-allow", "10.0.0.0/8,fd00::/8"]);
    let mut stream = TcpStream::connect(tcp_addr(&outside))
        .await
        .expect("the kernel accepts before the server looks");
    assert_eq!(call(&mut stream, &get_request("k")).await, Reply::Closed);
    let metrics = outside.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_connections_refused_total",
            &["reason=\"allowlist\""]
        ),
        Some(1.0)
    );

    let inside = kv_server(&["--kv-tcp-allow", "10.0.0.0/8,127.0.0.1"]);
    let mut stream = TcpStream::connect(tcp_addr(&inside))
        .await
        .expect("connect");
    assert_eq!(
        call(&mut stream, &get_request("k")).await,
        Reply::Get(2, String::new())
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_counted() {
    let server = kv_server(&["--kv-tcp-max-connections", "2"]);
    let addr = tcp_addr(&server);
    let mut first = TcpStream::connect(&addr).await.expect("connect");
    let mut second = TcpStream::connect(&addr).await.expect("connect");
    // Served, so both hold their slot.
    assert_eq!(
        call(&mut first, &get_request("k")).await,
        Reply::Get(2, String::new())
    );
    assert_eq!(
        call(&mut second, &get_request("k")).await,
        Reply::Get(2, String::new())
    );
    let mut third = TcpStream::connect(&addr).await.expect("connect");
    assert!(closed_without_reply(&mut third).await);
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_connections_refused_total",
            &["reason=\"cap\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "quintet_kv_tcp_connections_open", &[]),
        Some(2.0)
    );
    // A slot comes back when a connection ends.
    drop(first);
    let mut slot_freed = false;
    for _ in 0..50 {
        let mut again = TcpStream::connect(&addr).await.expect("connect");
        if call(&mut again, &get_request("k")).await == Reply::Get(2, String::new()) {
            slot_freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(slot_freed, "a freed slot serves a new connection");
}

#[tokio::test]
async fn a_request_sent_a_byte_at_a_time_is_closed_at_the_frame_deadline() {
    // The idle timeout is far away: only the whole-request deadline can close it.
    let server = kv_server(&[
        "--kv-tcp-frame-timeout",
        "2s",
        "--kv-tcp-idle-timeout",
        "1h",
    ]);
    let mut stream = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    let request = set_request("slow", &"v".repeat(200));
    let mut sent = 0;
    for byte in &request {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut probe = [0u8; 64];
        // A closed connection reads EOF (or a reset) at once; an open one has nothing to read.
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            assert!(matches!(read, Ok(0) | Err(_)), "no reply to half a request");
            break;
        }
    }
    assert!(
        sent < request.len(),
        "the connection outlived a {}-byte request sent at 4 bytes/s",
        request.len()
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_timeouts_total",
            &["stage=\"frame\""]
        ),
        Some(1.0)
    );
    let got = http()
        .get(format!("{}/kv/slow", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_connection_quiet_between_requests_is_closed_at_the_idle_timeout() {
    let server = kv_server(&["--kv-tcp-idle-timeout", "1s"]);
    let mut stream = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    assert_eq!(
        call(&mut stream, &get_request("k")).await,
        Reply::Get(2, String::new())
    );
    assert!(closed_without_reply(&mut stream).await, "closed when idle");
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_timeouts_total",
            &["stage=\"idle\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "quintet_kv_tcp_connections_open", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn many_partial_large_requests_stay_within_the_byte_budget() {
    const BUDGET: usize = 16 * 1024 * 1024;
    const CONNECTIONS: usize = 30;
    let budget = BUDGET.to_string();
    let server = kv_server(&[
        "--kv-tcp-buffer-bytes",
        &budget,
        "--kv-tcp-budget-wait",
        "1s",
        "--kv-tcp-frame-timeout",
        "1m",
    ]);
    let addr = tcp_addr(&server);
    let before = crate::support::vm_rss_kib(server.pid());
    // Each announces a value of 4 MiB - 1 (under the limit) and sends all but its last byte:
    // 120 MiB that the finding saw held in memory.
    let whole = set_request("big", &"v".repeat(4 * 1024 * 1024 - 1));
    let partial = Arc::new(whole[..whole.len() - 1].to_vec());
    let mut writers = Vec::new();
    for _ in 0..CONNECTIONS {
        let partial = partial.clone();
        let addr = addr.clone();
        writers.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            // Stalls once the server stops reading; the stream is kept open until the test ends.
            let _ = tokio::time::timeout(Duration::from_secs(6), stream.write_all(&partial)).await;
            stream
        }));
    }
    let mut peak_buffered = 0.0f64;
    let mut peak_rss = before;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = server.metrics().await;
        let buffered =
            metric(&metrics, "quintet_kv_tcp_buffered_bytes", &[]).expect("buffered gauge");
        peak_buffered = peak_buffered.max(buffered);
        peak_rss = peak_rss.max(crate::support::vm_rss_kib(server.pid()));
    }
    let mut streams = Vec::new();
    for writer in writers {
        streams.push(writer.await.expect("writer"));
    }
    // The budget (16 MiB) plus allocator slack: under 64 MiB, where the 120 MiB
    // sent held without a budget grows it by over 200 MiB.
    let grown_mib = (peak_rss.saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 64,
        "RSS grew {grown_mib} MiB (from {before} KiB)"
    );
    let metrics = server.metrics().await;
    assert!(peak_buffered > 0.0, "a request was being received");
    assert!(
        peak_buffered <= f64::from(u32::try_from(BUDGET).unwrap()),
        "buffered {peak_buffered} bytes, over the {BUDGET}-byte budget"
    );
    // Those that found no room waited their second and were closed.
    let closed = metric(
        &metrics,
        "quintet_kv_tcp_timeouts_total",
        &["stage=\"budget\""],
    )
    .expect("budget closes counted");
    assert!(
        closed >= f64::from(u32::try_from(CONNECTIONS - BUDGET / partial.len()).unwrap()) / 2.0,
        "{closed}"
    );
    drop(streams);
}

#[tokio::test]
async fn each_client_ip_is_held_to_its_request_rate() {
    let server = kv_server(&["--kv-tcp-rate-limit", "1", "--kv-tcp-rate-limit-burst", "3"]);
    let mut stream = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    let mut replies = Vec::new();
    for _ in 0..8 {
        replies.push(call(&mut stream, &get_request("k")).await);
    }
    // The burst is served; past it, `internal` (the seed protocol's only other answer).
    assert_eq!(
        replies[..3],
        [
            Reply::Get(2, String::new()),
            Reply::Get(2, String::new()),
            Reply::Get(2, String::new())
        ]
    );
    let limited = replies
        .iter()
        .filter(|r| **r == Reply::Get(3, String::new()))
        .count();
    assert!(limited >= 3, "{replies:?}");
    // Another connection from the same address shares the bucket.
    let mut other = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    let _ = call(&mut other, &get_request("k")).await;
    let metrics = server.metrics().await;
    let counted = metric(
        &metrics,
        "quintet_kv_tcp_requests_total",
        &["outcome=\"rate_limited\"", "type=\"get\""],
    )
    .expect("rate-limited requests counted");
    assert!(
        counted >= f64::from(u32::try_from(limited).unwrap()),
        "{counted} < {limited}"
    );
}

#[tokio::test]
async fn metrics_count_connections_requests_and_garbage_and_garbage_is_logged_once() {
    let server = kv_server(&[]);
    let addr = tcp_addr(&server);
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(
        call(&mut stream, &set_request("m", "1")).await,
        Reply::Set(1)
    );
    assert_eq!(
        call(&mut stream, &get_request("nope")).await,
        Reply::Get(2, String::new())
    );
    for _ in 0..5 {
        let mut junk = TcpStream::connect(&addr).await.expect("connect");
        junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        // `internal`, then the close.
        assert_eq!(read_reply(&mut junk).await, Reply::Get(3, String::new()));
        assert!(closed_without_reply(&mut junk).await);
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "quintet_kv_tcp_garbage_connections_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_requests_total",
            &["type=\"set\"", "outcome=\"ok\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_requests_total",
            &["type=\"get\"", "outcome=\"not_found\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "quintet_kv_tcp_connections_total", &[]),
        Some(6.0)
    );
    assert_eq!(
        metric(&metrics, "quintet_kv_tcp_connections_open", &[]),
        Some(1.0)
    );
    assert!(
        metrics.contains("quintet_kv_tcp_buffered_bytes"),
        "{metrics}"
    );
    let warnings = server
        .logs()
        .lines()
        .filter(|l| l.contains("not a request"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one WARN per 10 s for garbage:\n{}",
        server.logs()
    );
}

#[tokio::test]
async fn sigterm_closes_idle_and_half_sent_tcp_connections_at_once() {
    // Deadlines an hour away: only the shutdown can close these connections.
    let server = kv_server(&[
        "--kv-tcp-idle-timeout",
        "1h",
        "--kv-tcp-frame-timeout",
        "1h",
    ]);
    let addr = tcp_addr(&server);
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    assert_eq!(
        call(&mut idle, &get_request("k")).await,
        Reply::Get(2, String::new())
    );
    let mut half = TcpStream::connect(&addr).await.expect("connect");
    let request = set_request("half", "value");
    half.write_all(&request[..request.len() / 2])
        .await
        .expect("write half");
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.sigterm();
    assert!(
        closed_without_reply(&mut idle).await,
        "idle connection closed on SIGTERM"
    );
    assert!(
        closed_without_reply(&mut half).await,
        "half-sent request closed on SIGTERM"
    );
    let status = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.wait(PATIENCE)
    })
    .await
    .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_nul_byte_in_a_key_is_refused_on_rest_grpc_and_tcp() {
    use kv::proto::v1::SetRequest as GrpcSet;
    use kv::proto::v1::key_value_client::KeyValueClient;
    let server = kv_server(&[]);
    let client = http();
    let rest = client
        .put(format!("{}/kv/a%00b", server.url))
        .body("v")
        .send()
        .await
        .expect("put");
    assert_eq!(rest.status(), reqwest::StatusCode::BAD_REQUEST);
    let body = rest.text().await.expect("body");
    assert!(body.contains("NUL"), "{body}");
    let twin = client
        .post(format!("{}/api/save", server.url))
        .json(&serde_json::json!({"key": "a\u{0}b", "value": "v"}))
        .send()
        .await
        .expect("save");
    assert_eq!(twin.status(), reqwest::StatusCode::BAD_REQUEST);

    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let refused = KeyValueClient::new(channel)
        .set(GrpcSet {
            key: "a\0b".into(),
            value: b"v".to_vec(),
        })
        .await
        .expect_err("NUL refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("NUL"), "{}", refused.message());

    let mut stream = TcpStream::connect(tcp_addr(&server))
        .await
        .expect("connect");
    assert_eq!(
        call(&mut stream, &set_request("a\0b", "v")).await,
        Reply::Set(2)
    );
    assert_eq!(
        call(&mut stream, &get_request("a\0b")).await,
        Reply::Get(3, String::new())
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "quintet_kv_tcp_requests_total",
            &["type=\"set\"", "outcome=\"invalid_argument\""]
        ),
        Some(1.0)
    );
    let listed: serde_json::Value = client
        .get(format!("{}/kv", server.url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], serde_json::json!([]), "nothing stored");
}
