//! receipts end to end: the real binary with `--services receipts` on the
//! embedded queue and ledger, Apple played by `quintet apple-sim` (started as
//! its own process), jobs in over REST and the CLI, results read back from
//! the results queue.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{BIN, Start, TestServer, cli, http};

pub(crate) const TX_1: &str = "1000000042928567";
pub(crate) const TX_2: &str = "1000000181492557";

pub(crate) fn fixture(n: u8) -> String {
    let path = format!(
        "{}/../receipts/tests/fixtures/apple-sandbox-receipt-{n}.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `quintet apple-sim` on a free port; killed on drop.
pub(crate) struct Sim {
    child: Child,
    pub(crate) url: String,
}

impl Sim {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(BIN)
            .args(["apple-sim", "--addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apple-sim");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "apple-sim did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }

    async fn stats(&self) -> Value {
        http()
            .get(format!("{}/sim/stats", self.url))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_args(sim: &Sim, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--services",
        "receipts",
        "--apple-production-url",
        &format!("{}/verifyReceipt", sim.url),
        "--apple-sandbox-url",
        &format!("{}/sandbox/verifyReceipt", sim.url),
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .collect();
    args.extend(extra.iter().map(std::string::ToString::to_string));
    args
}

fn start(sim: &Sim, extra: &[&str]) -> TestServer {
    let args = server_args(sim, extra);
    TestServer::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Receives from `queue` until `count` messages arrived (deleting them) or 20 s passed.
pub(crate) async fn drain(server: &TestServer, queue: &str, count: usize) -> Vec<Value> {
    let client = http();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < count && Instant::now() < deadline {
        let received: Value = client
            .post(format!(
                "{}/queues/{queue}/receive?max=10&wait_ms=1000",
                server.url
            ))
            .send()
            .await
            .expect("receive")
            .json()
            .await
            .expect("json");
        let messages = received["messages"].as_array().cloned().unwrap_or_default();
        let handles: Vec<Value> = messages.iter().map(|m| m["handle"].clone()).collect();
        if !handles.is_empty() {
            let deleted = client
                .post(format!("{}/queues/{queue}/delete", server.url))
                .json(&json!({ "handles": handles }))
                .send()
                .await
                .expect("delete");
            assert_eq!(deleted.status(), StatusCode::OK);
        }
        got.extend(messages);
    }
    got
}

pub(crate) fn bodies(messages: &[Value]) -> Vec<Value> {
    let mut bodies: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m["body"].as_str().expect("body")).expect("JSON body"))
        .collect();
    bodies.sort_by_key(|b| b["user_id"].as_i64());
    bodies
}

pub(crate) async fn submit(
    server: &TestServer,
    receipt: &str,
    user_id: impl Into<Value>,
    post_queue: &str,
) -> StatusCode {
    let user_id = user_id.into();
    http()
        .post(format!("{}/receipts/jobs", server.url))
        .json(&json!({ "receipt": receipt, "user_id": user_id, "post_queue": post_queue }))
        .send()
        .await
        .expect("submit")
        .status()
}

#[tokio::test]
async fn fixture_receipts_are_ok_once_then_invalid_and_a_malformed_one_is_dead_lettered() {
    let sim = Sim::start();
    let server = start(&sim, &[]);
    assert_eq!(
        submit(&server, &fixture(1), 42, "results").await,
        StatusCode::ACCEPTED
    );
    // The CLI way in, with the receipt from a file.
    let path = format!(
        "@{}/../receipts/tests/fixtures/apple-sandbox-receipt-2.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, out, err) = cli(
        &[
            "receipts",
            "--url",
            &server.url,
            "submit",
            "--receipt",
            &path,
            "--user-id",
            "43",
            "--post-queue",
            "results",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("message_id"), "{out}");

    let results = bodies(&drain(&server, "results", 2).await);
    assert_eq!(
        results,
        vec![
            json!({"user_id": 42, "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": 43, "transaction_id": TX_2, "status": "OK"}),
        ],
        "{}",
        server.logs()
    );
    // Production was asked first and answered 21007; the sandbox validated.
    let stats = sim.stats().await;
    assert!(stats["production"].as_u64() >= Some(2), "{stats}");
    assert!(stats["sandbox"].as_u64() >= Some(2), "{stats}");

    // The same receipt in another job: its transaction was validated before.
    assert_eq!(
        submit(&server, &fixture(1), 44, "results").await,
        StatusCode::ACCEPTED
    );
    let again = bodies(&drain(&server, "results", 1).await);
    assert_eq!(again.len(), 1, "{}", server.logs());
    assert_eq!(again[0]["status"], "INVALID");
    assert_eq!(again[0]["transaction_id"], TX_1);
    assert_eq!(again[0]["user_id"], 44);
    assert!(
        again[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("already")),
        "{again:?}"
    );

    // A receipt Apple calls malformed (21002) names no transaction: nothing
    // is posted, the job goes to the dead-letter queue with Apple's status.
    assert_eq!(
        submit(&server, "bm90IGEgcmVjZWlwdA==", 45, "results").await,
        StatusCode::ACCEPTED
    );
    // The CLI way out.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let (code, out, err) = cli(
            &[
                "queue",
                "--url",
                &server.url,
                "receive",
                "receipts-dlq",
                "--wait",
                "1s",
            ],
            None,
        );
        assert_eq!(code, 0, "{out}{err}");
        if out.contains("21002") || Instant::now() > deadline {
            break out;
        }
    };
    assert!(
        out.contains("\"user_id\": 45")
            && out.contains("the receipt names no transaction to report: 21002"),
        "{out}"
    );
    let nothing = http()
        .post(format!("{}/queues/results/receive?max=10", server.url))
        .send()
        .await
        .expect("receive")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(nothing["messages"], json!([]), "{nothing}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("quintet_receipts_dead_lettered_total{reason=\"no_transaction\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_jobs_are_refused_at_the_door_or_dead_lettered_with_the_reason() {
    let sim = Sim::start();
    let server = start(&sim, &[]);
    let client = http();
    // REST refuses what is not a job, naming the field; nothing is queued.
    let refused = client
        .post(format!("{}/receipts/jobs", server.url))
        .json(&json!({ "receipt": "x", "user_id": {"id": 42}, "post_queue": "results" }))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("user_id") && e.contains("an integer (64-bit) or a string")),
        "{body}"
    );

    let refused = client
        .post(format!("{}/receipts/jobs", server.url))
        .json(&json!({ "receipt": "x", "user_id": 1, "post_queue": "https://sqs.us-east-1.amazonaws.com/123456789012/" }))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("post_queue") && e.contains("ends in the queue's name")),
        "{body}"
    );

    // Raw bodies on the input queue: garbage, and a job whose post_queue does not exist.
    for raw in [
        "not json at all".to_owned(),
        json!({ "receipt": fixture(1), "user_id": 7, "post_queue": "nowhere" }).to_string(),
    ] {
        let sent = client
            .post(format!("{}/queues/receipts/messages", server.url))
            .body(raw)
            .send()
            .await
            .expect("send");
        assert_eq!(sent.status(), StatusCode::ACCEPTED);
    }
    let dead = drain(&server, "receipts-dlq", 2).await;
    assert_eq!(dead.len(), 2, "{}", server.logs());
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| m["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not a valid job")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("'nowhere' does not exist")),
        "{reasons:?}"
    );
    // Nothing was claimed for the dead-lettered job: the receipt is still OK for a real job.
    assert_eq!(
        submit(&server, &fixture(1), 8, "results").await,
        StatusCode::ACCEPTED
    );
    let results = bodies(&drain(&server, "results", 1).await);
    assert_eq!(results[0]["status"], "OK", "{results:?}");
}

#[tokio::test]
async fn string_user_ids_go_in_over_rest_and_the_cli_and_come_back_as_strings() {
    let sim = Sim::start();
    let server = start(&sim, &[]);
    assert_eq!(
        submit(&server, &fixture(1), "user-8", "results").await,
        StatusCode::ACCEPTED
    );
    let path = format!(
        "@{}/../receipts/tests/fixtures/apple-sandbox-receipt-2.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    // Digits in JSON quotes are a string, not the integer 43.
    let (code, out, err) = cli(
        &[
            "receipts",
            "--url",
            &server.url,
            "submit",
            "--receipt",
            &path,
            "--user-id",
            "\"43\"",
            "--post-queue",
            "results",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut results = bodies(&drain(&server, "results", 2).await);
    results.sort_by_key(|r| r["transaction_id"].as_str().map(str::to_owned));
    assert_eq!(
        results,
        vec![
            json!({"user_id": "user-8", "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": "43", "transaction_id": TX_2, "status": "OK"}),
        ],
        "{}",
        server.logs()
    );

    // The CLI refuses an integer out of range before sending anything.
    let (code, _, err) = cli(
        &[
            "receipts",
            "--url",
            &server.url,
            "submit",
            "--receipt",
            &path,
            "--user-id",
            "99999999999999999999",
            "--post-queue",
            "results",
        ],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--user-id") && err.contains("out of range"),
        "{err}"
    );

    // The OpenAPI document says what user_id accepts.
    let doc: Value = http()
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let user_id = &doc["components"]["schemas"]["receipts.JobBody"]["properties"]["user_id"];
    let types: Vec<&str> = user_id["oneOf"]
        .as_array()
        .map(|one_of| one_of.iter().filter_map(|s| s["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(types, vec!["integer", "string"], "{user_id}");
    assert_eq!(user_id["oneOf"][1]["maxLength"], 256, "{user_id}");
}

#[tokio::test]
async fn fields_the_worker_does_not_read_are_accepted_logged_at_debug_and_counted() {
    let sim = Sim::start();
    let args = server_args(&sim, &[]);
    let server = TestServer::launch(Start {
        args: args.iter().map(String::as_str).collect(),
        env: vec![("QUINTET_LOG", "info,receipts=debug")],
        ..Start::default()
    });
    let client = http();
    // Over REST, and straight onto the input queue as a producer would.
    let accepted = client
        .post(format!("{}/receipts/jobs", server.url))
        .json(&json!({ "receipt": fixture(1), "user_id": 8, "post_queue": "results", "source": "ios" }))
        .send()
        .await
        .expect("submit");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let sent = client
        .post(format!("{}/queues/receipts/messages", server.url))
        .body(
            json!({ "receipt": fixture(2), "user_id": 9, "post_queue": "results", "campaign": "spring", "device": {"os": "iOS 17"} })
                .to_string(),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let results = bodies(&drain(&server, "results", 2).await);
    assert_eq!(
        results,
        vec![
            json!({"user_id": 8, "transaction_id": TX_1, "status": "OK"}),
            json!({"user_id": 9, "transaction_id": TX_2, "status": "OK"}),
        ],
        "{}",
        server.logs()
    );
    assert!(drain_now(&server, "receipts-dlq").await.is_empty());

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("quintet_receipts_job_unknown_fields_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP quintet_receipts_job_unknown_fields_total "),
        "{metrics}"
    );
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("job fields ignored") && l.contains("source")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("job fields ignored")
            && l.contains("campaign")
            && l.contains("device")),
        "{logs}"
    );
}

/// What `queue` holds right now (received and deleted), without waiting.
async fn drain_now(server: &TestServer, queue: &str) -> Vec<Value> {
    let received: Value = http()
        .post(format!("{}/queues/{queue}/receive?max=10", server.url))
        .send()
        .await
        .expect("receive")
        .json()
        .await
        .expect("json");
    received["messages"].as_array().cloned().unwrap_or_default()
}

/// A legacy sandbox receipt, as `apple-sim` reads them, for transaction `id`.
fn synthetic_receipt(id: u64) -> String {
    use base64::Engine as _;
    let b64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let info = b64(format!(
        "{{\n\t\"transaction-id\" = \"{id}\";\n\t\"product-id\" = \"coins\";\n}}"
    ));
    b64(format!(
        "{{\n\t\"purchase-info\" = \"{info}\";\n\t\"environment\" = \"Sandbox\";\n}}"
    ))
}

#[tokio::test]
async fn kill_9_mid_load_leaves_every_acknowledged_job_with_its_ok_result() {
    let sim = Sim::start_with(&["--latency", "40ms"]);
    let dir = crate::support::private_tempdir();
    let args = server_args(&sim, &["--receipts-visibility", "2s"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let launch = || {
        TestServer::launch(Start {
            args: args.clone(),
            data_dir: Some(dir.path()),
            ..Start::default()
        })
    };
    let client = http();
    let mut acknowledged = std::collections::BTreeMap::new();
    let mut next_id = 3_000_000_000_000_000u64;
    for round in 0..3u64 {
        let server = launch();
        let sends: Vec<_> = (0..60)
            .map(|i| {
                next_id += 1;
                let (id, url, client) = (next_id, server.url.clone(), client.clone());
                let user_id = i64::try_from(round * 1000 + i).unwrap();
                tokio::spawn(async move {
                    let job = json!({ "receipt": synthetic_receipt(id), "user_id": user_id, "post_queue": "results" });
                    let sent = client.post(format!("{url}/receipts/jobs")).json(&job).send().await;
                    (id, user_id, sent.is_ok_and(|r| r.status() == StatusCode::ACCEPTED))
                })
            })
            .collect();
        // Kill it while jobs are being submitted and validated.
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        server.kill9();
        for send in sends {
            let (id, user_id, ok) = send.await.expect("task");
            if ok {
                acknowledged.insert(id.to_string(), user_id);
            }
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "some jobs were acknowledged before the kills"
    );

    // A last start finishes the work: every acknowledged job has its OK result.
    let server = launch();
    let mut results: std::collections::BTreeMap<String, Vec<Value>> =
        std::collections::BTreeMap::default();
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline && !acknowledged.keys().all(|id| results.contains_key(id)) {
        for body in bodies(&drain(&server, "results", 1).await) {
            let id = body["transaction_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            results.entry(id).or_default().push(body);
        }
    }
    let repeats = results.values().filter(|r| r.len() > 1).count();
    eprintln!(
        "kill -9: {} jobs acknowledged, {} transactions with results, {repeats} with repeated results",
        acknowledged.len(),
        results.len()
    );
    for (id, user_id) in &acknowledged {
        let got = results
            .get(id)
            .unwrap_or_else(|| panic!("no result for transaction {id}:\n{}", server.logs()));
        for result in got {
            // Redelivery may repeat a result; it never contradicts it.
            assert_eq!(
                result,
                &json!({"user_id": user_id, "transaction_id": id, "status": "OK"}),
                "transaction {id}"
            );
        }
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_jobs_finish_before_the_process_exits() {
    // Apple answers after 700 ms (two answers per sandbox receipt): jobs are in flight at SIGTERM.
    let sim = Sim::start_with(&["--latency", "700ms"]);
    let dir = crate::support::private_tempdir();
    let args = server_args(&sim, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let launch = || {
        TestServer::launch(Start {
            args: args.clone(),
            data_dir: Some(dir.path()),
            ..Start::default()
        })
    };
    let mut server = launch();
    let ids: Vec<u64> = (1..=5).map(|n| 5_000_000_000_000_000 + n).collect();
    for (user, id) in ids.iter().enumerate() {
        let status = submit(
            &server,
            &synthetic_receipt(*id),
            i64::try_from(user).unwrap(),
            "results",
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    let status = server.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    drop(server);

    // Everything was finished before exit: the results are there, each once.
    let server = launch();
    let results = bodies(&drain(&server, "results", ids.len()).await);
    let mut got: Vec<String> = results
        .iter()
        .map(|r| {
            assert_eq!(r["status"], "OK", "{r}");
            r["transaction_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    got.sort();
    let expected: Vec<String> = ids.iter().map(u64::to_string).collect();
    assert_eq!(got, expected, "{}", server.logs());
}

#[tokio::test]
async fn apple_sim_says_where_it_listens_and_that_it_is_not_apple() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["apple-sim", "--addr", "127.0.0.1:0"])
        .env_remove("QUINTET_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn apple-sim");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("apple-sim prints a line when it starts");
    let v: Value = serde_json::from_str(&line).expect("a JSON log line");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("simulator of Apple's legacy verifyReceipt")
            && message.contains("not Apple"),
        "{line}"
    );
    let production = v["production_url"].as_str().expect("production_url");
    assert!(
        production.starts_with("http://127.0.0.1:")
            && !production.starts_with("http://127.0.0.1:0/")
            && production.ends_with("/verifyReceipt"),
        "{line}"
    );
    assert!(
        message.contains(
            production
                .trim_start_matches("http://")
                .trim_end_matches("/verifyReceipt")
        ),
        "{line}"
    );
    assert!(
        v["sandbox_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/sandbox/verifyReceipt")),
        "{line}"
    );
}
