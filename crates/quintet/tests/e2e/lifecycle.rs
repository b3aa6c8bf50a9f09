//! Start, stop, restart and bad configuration.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BIN, Start, TestServer, http, sha256_hex};

#[tokio::test]
async fn messages_survive_a_restart() {
    let dir = crate::support::private_tempdir();
    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let response = http()
        .post(format!("{}/messages", server.url))
        .json(&json!({"message": "durable"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(server.stop().success());

    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let digest = sha256_hex("durable");
    let body: Value = http()
        .get(format!("{}/messages/{digest}", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(body["message"], "durable");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let mut server = TestServer::start(&[]);
    // A slow client: headers and half the body now, the rest after SIGTERM.
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(
        b"POST /messages HTTP/1.1\r\nHost: quintet\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello",
    )
    .await
    .expect("write head");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();

    let started = Instant::now();
    loop {
        match TcpStream::connect(server.addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "still accepting after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    slow.write_all(b"world").await.expect("write rest");
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).await.expect("read answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "in-flight request completed: {answer}"
    );
    assert!(answer.contains(&sha256_hex("helloworld")));

    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    assert!(server.logs().contains("all connections drained"));
}

#[tokio::test]
async fn readiness_turns_false_before_the_listener_closes() {
    let mut server = TestServer::start(&["--shutdown-delay", "2s"]);
    let ready = http()
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status(), StatusCode::OK);
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = http()
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("still accepting");
    assert_eq!(draining.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        draining.json::<Value>().await.expect("json")["status"],
        "draining"
    );
    // Requests are still served during the delay.
    let response = http()
        .get(format!("{}/messages", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test]
async fn the_port_env_var_sets_the_port() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        probe.local_addr().expect("addr").port()
    };
    let dir = crate::support::private_tempdir();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("PORT", port.to_string())
        .env_remove("QUINTET_ADDR")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let mut ok = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = http()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            ok = r.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert!(ok, "server answered on PORT {port}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn invalid_configuration_exits_2_naming_the_option() {
    /// (flags, environment, the option the error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let dir = crate::support::private_tempdir();
    let data = dir.path().to_str().expect("utf8");
    let cases: Vec<Case> = vec![
        (vec!["--max-connections", "0"], vec![], "--max-connections"),
        (vec!["--worker-threads", "0"], vec![], "--worker-threads"),
        (
            vec!["--worker-threads", "100000"],
            vec![],
            "--worker-threads",
        ),
        (vec!["--addr", "not-an-address"], vec![], "--addr"),
        (
            vec!["--request-timeout", "soon"],
            vec![],
            "--request-timeout",
        ),
        (vec!["--store", "mysql://u:hunter2@db/x"], vec![], "--store"),
        (vec!["--tls", "sometimes"], vec![], "--tls"),
        (
            vec!["--kv-store", "dynamodb://t?secret=hunter2"],
            vec![],
            "--kv-store",
        ),
        (vec![], vec![("PORT", "eighty")], "PORT"),
        (
            vec![],
            vec![("QUINTET_MAX_MESSAGE_BYTES", "-1")],
            "--max-message-bytes",
        ),
        (
            vec!["--tokens-file", "/nonexistent/tokens"],
            vec![],
            "--tokens-file",
        ),
    ];
    for (args, env, option) in cases {
        let out = Command::new(BIN)
            .args(["serve", "--data-dir", data])
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(option),
            "{args:?}: stderr should name {option}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "no password echoed: {stderr}");
    }
    // Nothing bound, nothing created: validation happens first.
    assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none());
}

#[test]
fn serve_help_documents_every_option_with_its_env_var() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "QUINTET_ADDR",
        "QUINTET_DATA_DIR",
        "QUINTET_TLS",
        "QUINTET_TLS_CERT",
        "QUINTET_TLS_KEY",
        "QUINTET_TOKENS",
        "QUINTET_TOKENS_FILE",
        "QUINTET_MAX_BODY_BYTES",
        "QUINTET_REQUEST_TIMEOUT",
        "QUINTET_MAX_CONCURRENT_REQUESTS",
        "QUINTET_MAX_CONNECTIONS",
        "QUINTET_RATE_LIMIT",
        "QUINTET_SHUTDOWN_TIMEOUT",
        "QUINTET_STORE",
        "QUINTET_KV_STORE",
        "QUINTET_KV_KEY_PROVIDER",
        "QUINTET_RECEIPTS_QUEUE",
        "QUINTET_RECEIPTS_LEDGER",
        "QUINTET_RECEIPTS_MAX_RECEIVES",
        "QUINTET_APPLE_PRODUCTION_URL",
        "QUINTET_APPLE_SHARED_SECRET",
        "QUINTET_APPLE_ROOT_CERTS",
        "QUINTET_MAX_MESSAGE_BYTES",
        "QUINTET_LOG_FORMAT",
        "PORT",
    ] {
        assert!(help.contains(option), "serve --help mentions {option}");
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = crate::support::private_tempdir();
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let server = TestServer::launch(Start {
            data_dir: Some(dir.path()),
            ..Start::default()
        });
        let url = format!("{}/messages", server.url);
        let deadline = Instant::now() + Duration::from_millis(700);
        let mut writers = Vec::new();
        for writer in 0..8 {
            let url = url.clone();
            writers.push(tokio::spawn(async move {
                let client = http();
                let mut acked = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let text = format!("round {round} writer {writer} message {n}");
                    n += 1;
                    match client
                        .post(&url)
                        .header("content-type", "text/plain")
                        .body(text.clone())
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::CREATED => acked.push(text),
                        _ => break,
                    }
                }
                acked
            }));
        }
        // Crash while the writers are still going.
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill9();
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
    }
    assert!(
        acknowledged.len() > 100,
        "the load was real: {} acknowledged",
        acknowledged.len()
    );

    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let client = http();
    for text in &acknowledged {
        let response = client
            .get(format!("{}/messages/{}", server.url, sha256_hex(text)))
            .send()
            .await
            .expect("get");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged message lost after kill -9: {text}"
        );
    }
}
