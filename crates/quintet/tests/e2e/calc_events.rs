//! calc end to end, beyond the arithmetic: every calculation lands in the
//! event log (redb, `PostgreSQL`, NATS `JetStream`) and `quintet calc history`
//! replays it; the REST mapping; gRPC reflection; startup time; and SIGTERM
//! cutting an open stream at the drain deadline.
//!
//! Tests that stop a server run on a multi-threaded runtime: `stop()` blocks
//! its thread, and the client's connections must still see the server's
//! GOAWAY and close, as a real client's would.

use std::time::{Duration, Instant};

use calc::proto::v1::calculator_client::CalculatorClient;
use calc::proto::v1::{AddRequest, DivideRequest, PrimesRequest};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::support::{Start, TestServer, cli, http};

async fn client(server: &TestServer) -> CalculatorClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    CalculatorClient::new(channel)
}

/// `quintet calc history` against `server`, one JSON object per line.
fn history(server: &TestServer, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["calc", "--url", &server.url, "history"];
    args.extend_from_slice(extra);
    let (code, out, err) = cli(&args, None);
    assert_eq!(code, 0, "history failed: {err}");
    out.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Waits until the history holds `n` events (the log is written asynchronously).
async fn history_of(server: &TestServer, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events = history(server, &[]);
        if events.len() >= n || started.elapsed() > Duration::from_secs(15) {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drives three calculations (answered, refused, answered over REST) and
/// checks the history shows them in order with their outcomes.
async fn calculations_are_replayed(server: &TestServer) {
    let mut calc = client(server).await;
    calc.add(AddRequest { a: 1, b: 2 }).await.expect("add");
    let refused = calc.divide(DivideRequest { a: 1, b: 0 }).await;
    assert!(refused.is_err());
    let response = http()
        .post(format!("{}/calc/nth-primes", server.url))
        .header("x-request-id", "rest-call-1")
        .json(&json!({"n": [1, 10001]}))
        .send()
        .await
        .expect("REST call");
    assert_eq!(response.status(), 200);

    let events = history_of(server, 3).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0]["method"], "add");
    assert_eq!(events[0]["input"], json!({"a": 1, "b": 2}));
    assert_eq!(events[0]["result"], 3);
    assert_eq!(events[1]["method"], "divide");
    assert_eq!(events[1]["error"]["kind"], "division_by_zero");
    assert_eq!(events[2]["method"], "nth_primes");
    assert_eq!(events[2]["result"], json!([2, 104_743]));
    assert_eq!(events[2]["request_id"], "rest-call-1");
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Every gRPC call got a request id from the platform.
    assert!(!events[0]["request_id"].as_str().unwrap_or("").is_empty());
    // --since filters by time; --limit stops early.
    assert_eq!(
        history(server, &["--since", "2999-01-01T00:00:00Z"]).len(),
        0
    );
    assert_eq!(history(server, &["--since", "10m"]).len(), 3);
    assert_eq!(history(server, &["--limit", "2"]).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_calculation_lands_in_the_embedded_log_and_survives_a_restart() {
    let dir = crate::support::private_tempdir();
    let start = || {
        TestServer::launch(Start {
            args: vec!["--services", "calc"],
            data_dir: Some(dir.path()),
            ..Start::default()
        })
    };
    let server = start();
    calculations_are_replayed(&server).await;
    // Startup time is reported with the listening line.
    let logs = server.logs();
    let listening: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .expect("a listening line");
    let startup_ms = listening["startup_ms"].as_f64().expect("startup_ms");
    assert!(startup_ms > 0.0 && startup_ms < 10_000.0, "{startup_ms}");
    // Metrics count what was appended.
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("quintet_calc_events_appended_total{engine=\"redb\"} 3"),
        "{metrics}"
    );
    assert!(server.stop().success());
    // The log is in the data dir: a new process replays the same history.
    let server = start();
    assert_eq!(history(&server, &[]).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_postgres_and_to_nats_jetstream() {
    let (schema, url) = testkit::postgres_schema().await;
    let server = TestServer::start(&["--services", "calc", "--calc-events", &url]);
    calculations_are_replayed(&server).await;
    // The table is plain SQL too.
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let methods: Vec<String> = sqlx::query_scalar("SELECT method FROM calc_events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("select");
    assert_eq!(methods, vec!["add", "divide", "nth_primes"]);
    pool.close().await;
    assert!(server.stop().success());
    testkit::drop_schema(&schema).await;

    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("QT_E2E_{id}");
    let nats = format!("nats://127.0.0.1:4222?stream={stream}&subject=qt.e2e.{id}");
    let server = TestServer::start(&["--services", "calc", "--calc-events", &nats]);
    calculations_are_replayed(&server).await;
    assert!(server.stop().success());
    let client = async_nats::connect("127.0.0.1:4222").await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream_handle = js.get_stream(&stream).await.expect("the stream exists");
    let info = stream_handle.info().await.expect("info");
    assert_eq!(info.state.messages, 3);
    js.delete_stream(&stream).await.expect("delete");
}

#[tokio::test]
async fn without_an_event_log_history_says_so() {
    let server = TestServer::start(&["--services", "calc", "--calc-events", "none"]);
    let (code, out, err) = cli(&["calc", "--url", &server.url, "add", "2", "2"], None);
    assert_eq!((code, out.as_str()), (0, "4\n"), "{err}");
    let (code, _, err) = cli(&["calc", "--url", &server.url, "history"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("FailedPrecondition") && err.contains("none"),
        "{err}"
    );
    let response = http()
        .get(format!("{}/calc/history", server.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cuts_an_open_stream_at_the_drain_deadline() {
    let mut server = TestServer::start(&[
        "--services",
        "calc",
        "--shutdown-timeout",
        "2s",
        "--calc-max-range",
        "100000000000",
    ]);
    let mut calc = client(&server).await;
    // A range that takes minutes to stream; read one chunk and stall, as a
    // slow client does, so the stream stays open.
    let mut stream = calc
        .primes(PrimesRequest {
            from: 1,
            to: 50_000_000_000,
        })
        .await
        .expect("primes")
        .into_inner();
    let first = stream.message().await.expect("chunk").expect("a chunk");
    assert_eq!(first.primes[0], 2);
    let stopping = Instant::now();
    server.sigterm();
    let status = server.wait(Duration::from_secs(15));
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(8),
        "stopped after {took:?}; the drain deadline is 2 s"
    );
    assert!(
        took >= Duration::from_millis(1_500),
        "the stream got its drain time: {took:?}"
    );
    // The client sees the stream end (cut), not hang.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the stream ends");
    let _ = ended;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_turns_not_serving_while_draining() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let mut server = TestServer::start(&["--services", "calc", "--shutdown-delay", "2s"]);
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.to_owned(),
    };
    for service in ["", "quintet.calc.v1.Calculator"] {
        let status = health
            .check(check(service))
            .await
            .expect("check")
            .into_inner();
        assert_eq!(status.status, ServingStatus::Serving as i32, "{service:?}");
    }
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Still answering during --shutdown-delay, but no longer serving: the
    // Kubernetes readiness probe takes the pod out of the Service.
    for service in ["", "quintet.calc.v1.Calculator"] {
        let status = health
            .check(check(service))
            .await
            .expect("check")
            .into_inner();
        assert_eq!(
            status.status,
            ServingStatus::NotServing as i32,
            "{service:?}"
        );
    }
    assert_eq!(server.wait(Duration::from_secs(15)).code(), Some(0));
}

/// `nats-server` with `JetStream` on `port`, storing in `dir`; killed on drop.
struct NatsServer(std::process::Child);

impl NatsServer {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = std::process::Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn /usr/sbin/nats-server (Debian's nats-server package)");
        Self(child)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The gRPC health status of `service` (`""`: overall) on the server at `url`.
async fn grpc_health(url: &str, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_calc_starts_not_ready_and_turns_ready_once_nats_is_up() {
    const SERVING: i32 = 1;
    const NOT_SERVING: i32 = 2;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let nats = format!("nats://127.0.0.1:{port}?stream=QT_LATE_{id}&subject=qt.late.{id}");
    let server = TestServer::start(&["--services", "calc", "--calc-events", &nats]);
    let client = http();
    let readyz = || async {
        let response = client
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .expect("readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("json"))
    };

    // gRPC health for the Calculator follows readiness (Kubernetes' readiness
    // probe asks it); the overall status is liveness and stays SERVING.
    let calculator_health = || async {
        (
            grpc_health(&server.url, "").await,
            grpc_health(&server.url, "quintet.calc.v1.Calculator").await,
        )
    };
    let started = Instant::now();
    loop {
        let (overall, calculator) = calculator_health().await;
        assert_eq!(overall, SERVING, "liveness stays SERVING");
        if calculator == NOT_SERVING {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the Calculator should report NOT_SERVING while NATS is down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Up and answering, but not ready: the check names the log, the log
    // line names the server (the public /readyz body does not).
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    let check = body["checks"]["calc-event-log"].as_str().expect("a check");
    assert_eq!(check, "unavailable", "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    let reason = server
        .log_field("readiness check failed", "reason")
        .expect("the failure is logged");
    assert!(
        reason.contains(&format!("127.0.0.1:{port}")) && reason.contains("retrying"),
        "{reason}"
    );
    let added = client
        .post(format!("{}/calc/add", server.url))
        .json(&json!({"a": 20, "b": 22}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    assert_eq!(
        added.json::<Value>().await.expect("json"),
        json!({"result": 42})
    );
    let retrying = server.logs().lines().any(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| {
            v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("NATS unreachable"))
        })
    });
    assert!(retrying, "a warning says it retries:\n{}", server.logs());

    // NATS comes up on that port: calc turns ready and the buffered event arrives.
    let store = crate::support::private_tempdir();
    let _nats = NatsServer::start(port, store.path());
    let started = Instant::now();
    loop {
        let (status, body) = readyz().await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "still not ready: {body}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    while calculator_health().await.1 != SERVING {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the Calculator should report SERVING once ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let events = loop {
        let page: Value = client
            .get(format!("{}/calc/history", server.url))
            .send()
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() || started.elapsed() > Duration::from_secs(15) {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["method"], &events[0]["result"]),
        (&json!("add"), &json!(42))
    );
    assert!(server.stop().success());
}

#[tokio::test]
async fn with_appended_acks_an_answer_means_its_event_is_in_the_log_and_no_log_means_503() {
    // Up (NATS JetStream): each answer's event is already in the history.
    let stream = format!("ACK{}", std::process::id());
    let url = format!("nats://127.0.0.1:4222?stream={stream}&subject=ack.{stream}");
    let server = TestServer::start(&[
        "--services",
        "calc",
        "--calc-events",
        &url,
        "--calc-event-ack",
        "appended",
    ]);
    let mut calc = client(&server).await;
    for i in 0..5 {
        let answer = calc
            .add(AddRequest { a: i, b: 1 })
            .await
            .expect("add")
            .into_inner();
        assert_eq!(answer.result, i + 1);
        // No waiting: the answer came after the append.
        assert_eq!(history(&server, &[]).len(), usize::try_from(i + 1).unwrap());
    }
    drop(server);

    // Down (nothing listens there): calculations are refused with 503 and
    // say why and what to do, REST and gRPC alike.
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let server = TestServer::start(&[
        "--services",
        "calc",
        "--calc-events",
        &format!("nats://{closed}"),
        "--calc-event-ack",
        "appended",
    ]);
    let response = http()
        .post(format!("{}/calc/add", server.url))
        .json(&json!({"a": 1, "b": 2}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.contains("--calc-event-ack appended") && message.contains("retry"),
        "{message}"
    );
    let status = client(&server)
        .await
        .add(AddRequest { a: 1, b: 2 })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}
