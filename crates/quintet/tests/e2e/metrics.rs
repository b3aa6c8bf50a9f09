//! `/metrics` describes itself: after traffic through all five services,
//! every metric family has `# HELP` and `# TYPE`, and Prometheus' own
//! linter (`promtool check metrics`, Debian package `prometheus`) accepts
//! the page.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;

use crate::receipts::{Sim, drain, fixture, submit};
use crate::support::{TestServer, http};

/// Families named by `# HELP` and `# TYPE` lines, and the family of each
/// sample (a histogram's `_bucket`, `_sum` and `_count` are its family's).
struct Exposition {
    help: BTreeSet<String>,
    types: BTreeMap<String, String>,
    sampled: BTreeSet<String>,
}

fn parse(text: &str) -> Exposition {
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().expect("HELP names a family");
            help.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let name = words.next().expect("TYPE names a family");
            let kind = words.next().expect("TYPE names a kind");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let series = line.split(['{', ' ']).next().expect("a sample's name");
            sampled.insert(series.to_owned());
        }
    }
    // A sample belongs to the family whose TYPE line declares it: its own
    // name, or a histogram's or summary's name before the suffix.
    let sampled = sampled
        .into_iter()
        .map(|series| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    series
                        .strip_suffix(suffix)
                        .filter(|family| {
                            matches!(
                                types.get(*family).map(String::as_str),
                                Some("histogram" | "summary")
                            )
                        })
                        .map(str::to_owned)
                })
                .unwrap_or(series)
        })
        .collect();
    Exposition {
        help,
        types,
        sampled,
    }
}

#[tokio::test]
async fn every_family_is_described_and_promtool_accepts_the_page() {
    let sim = Sim::start();
    let production = format!("{}/verifyReceipt", sim.url);
    let sandbox = format!("{}/sandbox/verifyReceipt", sim.url);
    let server = TestServer::start(&[
        "--services",
        "messages,counters,calc,kv,receipts",
        "--kv-tcp-addr",
        "127.0.0.1:0",
        "--apple-production-url",
        &production,
        "--apple-sandbox-url",
        &sandbox,
    ]);
    let client = http();
    let url = &server.url;

    // Traffic through every service, answered and refused.
    let posted = client
        .post(format!("{url}/messages"))
        .json(&json!({"message": "described"}))
        .send()
        .await
        .expect("post message");
    assert_eq!(posted.status(), StatusCode::CREATED, "{}", server.logs());
    let refused = client
        .post(format!("{url}/messages"))
        .body("not json")
        .send()
        .await
        .expect("post garbage");
    assert!(refused.status().is_client_error());
    let incremented = client
        .post(format!("{url}/increment"))
        .json(&json!({"key": "described", "value": 1}))
        .send()
        .await
        .expect("increment");
    assert_eq!(incremented.status(), StatusCode::OK);
    let added = client
        .post(format!("{url}/calc/add"))
        .json(&json!({"a": 1, "b": 2}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), StatusCode::OK);
    let primes = client
        .post(format!("{url}/calc/nth-primes"))
        .json(&json!({"n": [10]}))
        .send()
        .await
        .expect("primes");
    assert_eq!(primes.status(), StatusCode::OK);
    let put = client
        .put(format!("{url}/kv/described"))
        .body("value")
        .send()
        .await
        .expect("kv put");
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let got = client
        .get(format!("{url}/kv/described"))
        .send()
        .await
        .expect("kv get");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        submit(&server, &fixture(1), 7, "results").await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        drain(&server, "results", 1).await.len(),
        1,
        "{}",
        server.logs()
    );
    let missing = client
        .get(format!("{url}/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let page = server.metrics().await;
    let exposition = parse(&page);
    assert!(
        exposition.types.len() > 30,
        "every service's families are on the page: {page}"
    );
    for family in &exposition.sampled {
        assert!(
            exposition.types.contains_key(family),
            "{family} has samples but no # TYPE:\n{page}"
        );
    }
    let undescribed: Vec<&String> = exposition
        .types
        .keys()
        .filter(|family| !exposition.help.contains(*family))
        .collect();
    assert!(
        undescribed.is_empty(),
        "families without # HELP: {undescribed:?}"
    );
    // Each service's own families are there (the page is not just platform's).
    for prefix in [
        "quintet_http_",
        "quintet_messages_",
        "quintet_counters_",
        "quintet_calc_",
        "quintet_kv_",
        "quintet_receipts_",
    ] {
        assert!(
            exposition.types.keys().any(|f| f.starts_with(prefix)),
            "no {prefix}* family on the page:\n{page}"
        );
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("page to promtool");
    let checked = promtool.wait_with_output().expect("promtool ran");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// The value of the sample `series` (name and labels as printed) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn readiness_is_a_gauge_per_process_and_per_check() {
    // Ready: its store answers.
    let server = TestServer::start(&["--services", "messages"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let text = server.metrics().await;
        if sample(&text, "quintet_ready").is_some() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no quintet_ready:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(sample(&text, "quintet_ready"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "quintet_readiness_check_up{check=\"messages-store\"}"
        ),
        Some(1.0),
        "{text}"
    );
    drop(server);

    // Not ready: calc's event log is a NATS server nobody runs.
    let closed = format!("127.0.0.1:{}", crate::support::free_port());
    let server = TestServer::start(&[
        "--services",
        "calc",
        "--calc-events",
        &format!("nats://{closed}"),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = server.metrics().await;
        if sample(&text, "quintet_ready") == Some(0.0) {
            assert_eq!(
                sample(
                    &text,
                    "quintet_readiness_check_up{check=\"calc-event-log\"}"
                ),
                Some(0.0),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never not ready:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_grpc_failure_counts_under_the_http_status_its_code_maps_to() {
    use calc::proto::v1::{AddRequest, DivideRequest};

    let server = TestServer::start(&["--services", "calc"]);
    let mut calc = calc_client(&server).await;
    calc.add(AddRequest { a: 1, b: 2 }).await.expect("add");
    let refused = calc
        .divide(DivideRequest { a: 1, b: 0 })
        .await
        .expect_err("division by zero");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let text = server.metrics().await;
    let count = |status: &str| {
        labelled(
            &text,
            "quintet_calc_http_requests_total",
            &[&format!("status=\"{status}\"")],
        )
    };
    assert!((count("200") - 1.0).abs() < f64::EPSILON, "{text}");
    assert!((count("400") - 1.0).abs() < f64::EPSILON, "{text}");
}

#[tokio::test]
async fn each_grpc_method_has_its_own_route_and_an_unknown_one_shares_the_catch_all() {
    use calc::proto::v1::{AddRequest, PrimesRequest};

    let server = TestServer::start(&["--services", "calc"]);
    let mut calc = calc_client(&server).await;
    calc.add(AddRequest { a: 1, b: 2 }).await.expect("add");
    let mut stream = calc
        .primes(PrimesRequest { from: 1, to: 100 })
        .await
        .expect("primes")
        .into_inner();
    while stream.message().await.expect("a chunk").is_some() {}

    // Methods the service does not have, as a client may send them: tonic
    // answers UNIMPLEMENTED, and they share one route label.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    for method in ["Nope", "Add2", &"x".repeat(500)] {
        let response = h2
            .post(format!(
                "{}/quintet.calc.v1.Calculator/{method}",
                server.url
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8; 5])
            .send()
            .await
            .expect("an unknown method is answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("grpc-status")
                .map(reqwest::header::HeaderValue::as_bytes),
            Some(&b"12"[..]),
            "UNIMPLEMENTED for {method:.20}"
        );
    }

    let text = server.metrics().await;
    let routes: BTreeMap<String, f64> = text
        .lines()
        .filter(|l| l.starts_with("quintet_calc_http_requests_total{"))
        .filter_map(|l| {
            let route = l.split("route=\"").nth(1)?.split('"').next()?;
            Some((route.to_owned(), l.rsplit(' ').next()?.parse::<f64>().ok()?))
        })
        .fold(BTreeMap::new(), |mut m, (route, n)| {
            *m.entry(route).or_default() += n;
            m
        });
    let expected: BTreeMap<String, f64> = [
        ("/quintet.calc.v1.Calculator/Add", 1.0),
        ("/quintet.calc.v1.Calculator/Primes", 1.0),
        ("/quintet.calc.v1.Calculator/{*rest}", 3.0),
    ]
    .into_iter()
    .map(|(r, n)| (r.to_owned(), n))
    .collect();
    assert_eq!(routes, expected, "{text}");
}

/// A gRPC client of the server's calc service.
async fn calc_client(
    server: &TestServer,
) -> calc::proto::v1::calculator_client::CalculatorClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    calc::proto::v1::calculator_client::CalculatorClient::new(channel)
}

/// The sum of the samples of `family` whose labels contain every one of
/// `labels` (0 when there is none).
fn labelled(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_grpc_stream_is_counted_when_it_ends_under_its_final_status() {
    use calc::proto::v1::PrimesRequest;

    const ROUTE: &str = "route=\"/quintet.calc.v1.Calculator/Primes\"";
    let server = TestServer::start(&["--services", "calc"]);
    let mut calc = calc_client(&server).await;

    // A long stream, read one chunk: in flight until it ends, not yet counted.
    let mut stream = calc
        .primes(PrimesRequest {
            from: 1,
            to: 900_000_000,
        })
        .await
        .expect("primes")
        .into_inner();
    assert!(stream.message().await.expect("a chunk").is_some());
    let text = server.metrics().await;
    let in_flight = "quintet_calc_http_requests_in_flight";
    assert!(
        (labelled(&text, in_flight, &[ROUTE]) - 1.0).abs() < f64::EPSILON,
        "{text}"
    );
    assert!(
        labelled(&text, "quintet_calc_http_requests_total", &[ROUTE]) < 0.5,
        "{text}"
    );

    // The client goes away mid-stream: 499, and out of flight.
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = server.metrics().await;
        let cancelled = labelled(
            &text,
            "quintet_calc_http_requests_total",
            &[ROUTE, "status=\"499\""],
        );
        if (cancelled - 1.0).abs() < f64::EPSILON {
            assert!(
                labelled(&text, in_flight, &[ROUTE]).abs() < f64::EPSILON,
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 499 for the dropped stream:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A whole stream: 200 once it has ended.
    let mut stream = calc
        .primes(PrimesRequest { from: 1, to: 1000 })
        .await
        .expect("primes")
        .into_inner();
    while stream.message().await.expect("a chunk").is_some() {}
    let text = server.metrics().await;
    let ok = labelled(
        &text,
        "quintet_calc_http_requests_total",
        &[ROUTE, "status=\"200\""],
    );
    assert!((ok - 1.0).abs() < f64::EPSILON, "{text}");
    assert!(
        labelled(&text, in_flight, &[ROUTE]).abs() < f64::EPSILON,
        "{text}"
    );
}
