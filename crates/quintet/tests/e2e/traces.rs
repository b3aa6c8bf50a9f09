//! Traces: a caller's W3C `traceparent` parents the server span of an HTTP
//! request and of a gRPC call, and a receipts job's trace runs from the
//! request that submitted it through the job to its Apple calls and its
//! posted result. The spans are read from a real OTLP/gRPC receiver
//! (`testkit::otlp`: the OpenTelemetry collector's trace service, generated
//! from the OpenTelemetry protocol's definitions and served by tonic in the
//! test), where the server exports them with `--otlp-endpoint`.

use std::time::{Duration, Instant};

use calc::proto::v1::AddRequest;
use calc::proto::v1::calculator_client::CalculatorClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use reqwest::StatusCode;
use serde_json::json;
use testkit::otlp::Receiver;

use crate::common::http;
use crate::receipts::{Sim, drain, fixture};
use crate::support::{Start, TestServer, cli};

/// The spans of trace `trace_id` once `count` have arrived (within 20 s).
async fn trace(receiver: &Receiver, trace_id: &str, count: usize) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans: Vec<Span> = receiver
            .spans()
            .into_iter()
            .filter(|(_, s)| hex(&s.trace_id) == trace_id)
            .map(|(_, s)| s)
            .collect();
        if spans.len() >= count || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    Some(match value.value.as_ref()? {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// A fresh caller context: (trace id, span id, `traceparent`).
fn caller() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    (trace_id, span_id, traceparent)
}

/// Posts `text` to messages as a caller in trace `traceparent`; it is stored.
async fn post_traced(server: &TestServer, text: &str, traceparent: &str) {
    let response = http()
        .post(format!("{}/messages", server.url))
        .header("traceparent", traceparent)
        .json(&json!({ "message": text }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Spans export in batches; a short delay keeps the test short.
const FAST_BATCHES: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} span {} parent {} kind {}",
                s.name,
                hex(&s.span_id),
                hex(&s.parent_span_id),
                s.kind
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_callers_traceparent_parents_the_server_span_over_http_and_grpc() {
    let (receiver, endpoint) = Receiver::start().await;
    let server = TestServer::launch(Start {
        args: vec!["--services", "messages,calc", "--otlp-endpoint", &endpoint],
        env: vec![FAST_BATCHES],
        ..Start::default()
    });

    // HTTP.
    let (trace_id, parent, traceparent) = caller();
    post_traced(&server, "traced", &traceparent).await;
    let spans = trace(&receiver, &trace_id, 1).await;
    let span = spans
        .iter()
        .find(|s| s.name == "POST /messages")
        .unwrap_or_else(|| panic!("no server span in trace {trace_id}:\n{}", describe(&spans)));
    assert_eq!(hex(&span.parent_span_id), parent, "{}", describe(&spans));
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(attribute(span, "http.route").as_deref(), Some("/messages"));
    assert_eq!(
        attribute(span, "http.response.status_code").as_deref(),
        Some("201")
    );

    // gRPC: the header travels as call metadata.
    let (trace_id, parent, traceparent) = caller();
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut request = tonic::Request::new(AddRequest { a: 2, b: 3 });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("metadata"));
    let answer = CalculatorClient::new(channel)
        .add(request)
        .await
        .expect("add")
        .into_inner();
    assert_eq!(answer.result, 5);
    let spans = trace(&receiver, &trace_id, 1).await;
    let span = spans
        .iter()
        .find(|s| s.name == "quintet.calc.v1.Calculator/Add")
        .unwrap_or_else(|| panic!("no gRPC span in trace {trace_id}:\n{}", describe(&spans)));
    assert_eq!(hex(&span.parent_span_id), parent);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(attribute(span, "rpc.system").as_deref(), Some("grpc"));

    // Without a traceparent a request starts its own trace.
    let response = http()
        .get(format!("{}/messages", server.url))
        .send()
        .await
        .expect("list");
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    let root = loop {
        let found = receiver
            .spans()
            .into_iter()
            .find(|(_, s)| s.name == "GET /messages")
            .map(|(_, s)| s);
        if let Some(span) = found {
            break span;
        }
        assert!(Instant::now() < deadline, "no span for GET /messages");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(root.parent_span_id.is_empty(), "a root span");
    assert_eq!(root.trace_id.len(), 16);
    assert!(
        receiver
            .spans()
            .iter()
            .all(|(service, _)| service == "quintet")
    );
    // Ops routes are not traced (a scrape every few seconds is noise).
    let _ = server.metrics().await;
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|(_, s)| s.name.contains("/metrics") || s.name.contains("/readyz"))
    );
    let exported = metric(
        &server.metrics().await,
        "quintet_trace_spans_exported_total",
    );
    assert!(exported >= 3.0, "spans exported: {exported}");
}

/// A counter's value in Prometheus text (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name) && !line.starts_with('#'))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_collector_that_is_down_loses_spans_not_requests() {
    // A port nothing listens on.
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let endpoint = format!("http://{closed}");
    let server = TestServer::launch(Start {
        args: vec!["--services", "messages", "--otlp-endpoint", &endpoint],
        env: vec![FAST_BATCHES],
        ..Start::default()
    });
    for i in 0..5 {
        let response = http()
            .post(format!("{}/messages", server.url))
            .json(&json!({ "message": format!("untraced {i}") }))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::CREATED);
        // Batches go every 100 ms: one per request.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(
        &server.metrics().await,
        "quintet_trace_export_failures_total",
    ) < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "export failures not counted:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warned = server
        .logs()
        .lines()
        .filter(|l| l.contains("trace export to the OTLP collector failed"))
        .count();
    assert_eq!(warned, 1, "one line, not one per batch:\n{}", server.logs());
    let exported = metric(
        &server.metrics().await,
        "quintet_trace_spans_exported_total",
    );
    assert!(exported < 1.0, "nothing exported: {exported}");
}

#[tokio::test]
async fn a_receipts_job_is_one_trace_from_submission_through_apple_to_its_result() {
    let sim = Sim::start();
    let (receiver, endpoint) = Receiver::start().await;
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
            "--otlp-endpoint",
            &endpoint,
        ],
        env: vec![FAST_BATCHES],
        ..Start::default()
    });

    let (trace_id, parent, traceparent) = caller();
    let submitted = http()
        .post(format!("{}/receipts/jobs", server.url))
        .header("traceparent", &traceparent)
        .json(&json!({"receipt": fixture(1), "user_id": 42, "post_queue": "results"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(submitted.status(), StatusCode::ACCEPTED);
    let results = drain(&server, "results", 1).await;
    assert_eq!(results.len(), 1, "{}", server.logs());

    // request → job → Apple (production answers 21007, then sandbox).
    let spans = trace(&receiver, &trace_id, 4).await;
    let all = describe(&spans);
    let request = spans
        .iter()
        .find(|s| s.name == "POST /receipts/jobs")
        .unwrap_or_else(|| panic!("no request span:\n{all}"));
    assert_eq!(hex(&request.parent_span_id), parent, "{all}");
    let job = spans
        .iter()
        .find(|s| s.name == "receipts job")
        .unwrap_or_else(|| panic!("no job span:\n{all}"));
    assert_eq!(job.parent_span_id, request.span_id, "{all}");
    assert_eq!(job.kind, SpanKind::Consumer as i32);
    let apple: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "apple verifyReceipt")
        .collect();
    assert!(apple.len() >= 2, "production, then sandbox:\n{all}");
    for call in &apple {
        assert_eq!(call.parent_span_id, job.span_id, "{all}");
        assert_eq!(call.kind, SpanKind::Client as i32);
        assert_eq!(
            attribute(call, "http.response.status_code").as_deref(),
            Some("200")
        );
    }
    let environments: Vec<String> = apple
        .iter()
        .filter_map(|s| attribute(s, "apple.environment"))
        .collect();
    assert!(
        environments.contains(&"sandbox".to_owned()),
        "{environments:?}"
    );

    // The result carries the job's context, for its consumer to continue.
    let result_context = results[0]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the result has a traceparent: {}", results[0]));
    assert_eq!(
        result_context,
        format!("00-{trace_id}-{}-01", hex(&job.span_id)),
        "{all}"
    );
}

#[test]
fn an_endpoint_that_is_not_a_url_is_refused_before_anything_starts() {
    let dir = crate::common::private_tempdir();
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (code, _out, err) = cli(
        &[
            "serve",
            "--data-dir",
            data_dir,
            "--addr",
            "127.0.0.1:0",
            "--otlp-endpoint",
            "collector:4317",
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid value for --otlp-endpoint 'collector:4317'"),
        "{err}"
    );
    assert!(err.contains("http://otel-collector:4317"), "{err}");
}

/// The one span of `spans` named `name`, or a panic listing them all.
fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in:\n{}", describe(spans));
    found[0]
}

#[tokio::test]
async fn store_and_key_provider_calls_are_client_spans_under_the_request() {
    let (receiver, endpoint) = Receiver::start().await;
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "messages,kv",
            "--kv-tcp-addr",
            "127.0.0.1:0",
            "--otlp-endpoint",
            &endpoint,
        ],
        env: vec![FAST_BATCHES],
        ..Start::default()
    });

    // messages: the store's put, under the server span.
    let (trace_id, _, traceparent) = caller();
    post_traced(&server, "stored under a span", &traceparent).await;
    let spans = trace(&receiver, &trace_id, 2).await;
    let request = named(&spans, "POST /messages");
    let put = named(&spans, "fjall put");
    assert_eq!(put.parent_span_id, request.span_id, "{}", describe(&spans));
    assert_eq!(put.kind, SpanKind::Client as i32);
    assert_eq!(attribute(put, "db.system.name").as_deref(), Some("fjall"));
    assert_eq!(attribute(put, "db.operation.name").as_deref(), Some("put"));
    assert!(put.start_time_unix_nano >= request.start_time_unix_nano);
    assert!(put.end_time_unix_nano <= request.end_time_unix_nano);

    // kv: a first set asks the key provider for a data key, then stores.
    let (trace_id, _, traceparent) = caller();
    let response = http()
        .put(format!("{}/kv/traced", server.url))
        .header("traceparent", &traceparent)
        .body("a value")
        .send()
        .await
        .expect("set");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let spans = trace(&receiver, &trace_id, 3).await;
    let request = named(&spans, "PUT /kv/{*key}");
    for name in ["local generate", "fjall put"] {
        let span = named(&spans, name);
        assert_eq!(span.parent_span_id, request.span_id, "{}", describe(&spans));
        assert_eq!(span.kind, SpanKind::Client as i32);
    }
    assert_eq!(
        attribute(named(&spans, "local generate"), "peer.service").as_deref(),
        Some("local")
    );

    // A read of a key that is not there: the store's get, and a 404.
    let (trace_id, _, traceparent) = caller();
    let response = http()
        .get(format!("{}/kv/absent", server.url))
        .header("traceparent", &traceparent)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let spans = trace(&receiver, &trace_id, 2).await;
    let request = named(&spans, "GET /kv/{*key}");
    let get = named(&spans, "fjall get");
    assert_eq!(get.parent_span_id, request.span_id, "{}", describe(&spans));
}

#[tokio::test]
async fn spans_reach_an_otlp_http_collector_with_its_headers() {
    let (receiver, endpoint) = Receiver::start_http().await;
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "messages",
            "--otlp-endpoint",
            &endpoint,
            "--otlp-protocol",
            "http/protobuf",
        ],
        // A collector's credentials, as OpenTelemetry's variable carries them.
        env: vec![
            FAST_BATCHES,
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20c0llect0r",
            ),
        ],
        ..Start::default()
    });
    let (trace_id, parent, traceparent) = caller();
    post_traced(&server, "over OTLP/HTTP", &traceparent).await;
    let spans = trace(&receiver, &trace_id, 2).await;
    let request = named(&spans, "POST /messages");
    assert_eq!(hex(&request.parent_span_id), parent, "{}", describe(&spans));
    assert_eq!(
        named(&spans, "fjall put").parent_span_id,
        request.span_id,
        "{}",
        describe(&spans)
    );
    let headers = receiver.headers();
    assert!(!headers.is_empty());
    assert!(
        headers.iter().all(|h| h
            .get("authorization")
            .is_some_and(|v| v.as_bytes() == b"Bearer c0llect0r")),
        "every export carries the collector's credentials"
    );
    assert!(
        !server.logs().contains("c0llect0r"),
        "credentials never reach the log"
    );
    let exported = metric(
        &server.metrics().await,
        "quintet_trace_spans_exported_total",
    );
    assert!(exported >= 2.0, "spans exported: {exported}");
}

#[test]
fn a_protocol_quintet_does_not_speak_is_refused_with_the_ones_it_does() {
    let (code, _, stderr) = cli(
        &[
            "serve",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-protocol",
            "http/json",
        ],
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("grpc") && stderr.contains("http/protobuf"),
        "{stderr}"
    );
}
