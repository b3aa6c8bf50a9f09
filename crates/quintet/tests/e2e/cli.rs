//! The `quintet messages` client against a running server.

use serde_json::Value;

use crate::support::{TestServer, cli, sha256_hex};

#[tokio::test]
async fn post_get_and_list_print_the_servers_json() {
    let server = TestServer::start(&[]);
    let url = server.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli(
            &["messages", "post", "hello from the cli", "--url", &url],
            None,
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    let digest = sha256_hex("hello from the cli");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["digest"],
        digest.as_str()
    );

    let dir = crate::support::private_tempdir();
    let file = dir.path().join("msg.txt");
    std::fs::write(&file, "from a file\n").expect("write");
    let at_file = format!("@{}", file.display());
    let url = server.url.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        cli(&["messages", "post", &at_file, "--url", &url], None)
    })
    .await
    .expect("join");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["digest"],
        sha256_hex("from a file\n").as_str()
    );

    let url = server.url.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        cli(
            &["messages", "post", "-", "--url", &url],
            Some("from stdin"),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["digest"],
        sha256_hex("from stdin").as_str()
    );

    let url = server.url.clone();
    let d = digest.clone();
    let (code, out, _) =
        tokio::task::spawn_blocking(move || cli(&["messages", "get", &d, "--url", &url], None))
            .await
            .expect("join");
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["message"],
        "hello from the cli"
    );

    let url = server.url.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        cli(&["messages", "list", "--limit", "2", "--url", &url], None)
    })
    .await
    .expect("join");
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    assert!(page["next"].is_string());
}

#[tokio::test]
async fn failures_exit_non_zero_with_the_servers_message() {
    let server = TestServer::start(&["--tokens", "cli-secret"]);
    let url = server.url.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "messages",
                "get",
                &"0".repeat(64),
                "--url",
                &url,
                "--token",
                "cli-secret",
            ],
            None,
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("message not found"),
        "{err}"
    );

    let url = server.url.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || cli(&["messages", "list", "--url", &url], None))
            .await
            .expect("join");
    assert_eq!(code, 1);
    assert!(
        err.contains("401") && err.contains("missing bearer token"),
        "{err}"
    );

    let (code, _, err) = tokio::task::spawn_blocking(|| {
        cli(&["messages", "list", "--url", "http://127.0.0.1:1"], None)
    })
    .await
    .expect("join");
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach"), "{err}");
}

#[tokio::test]
async fn https_with_the_servers_certificate_or_insecure() {
    let server = TestServer::start(&["--tls", "self-signed"]);
    let cert = server.data_dir.join("tls/cert.pem").display().to_string();
    let url = server.url.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli(
            &[
                "messages",
                "post",
                "secure",
                "--url",
                &url,
                "--ca-cert",
                &cert,
            ],
            None,
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&sha256_hex("secure")));

    let url = server.url.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || cli(&["messages", "list", "--url", &url], None))
            .await
            .expect("join");
    assert_eq!(code, 1, "an untrusted certificate is refused: {err}");

    let url = server.url.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli(&["messages", "list", "--url", &url, "--insecure"], None)
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{err}");
}
