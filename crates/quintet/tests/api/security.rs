//! Bearer auth, per-client rate limits and TLS, from the outside.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn tokens_can_come_from_a_file() {
    let dir = crate::support::private_tempdir();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# one per line\nfile-token-1\n\nfile-token-2\n").expect("write");
    let path = file.to_str().expect("utf8 path");
    let server = spawn_app(&["--tokens-file", path]).await;
    for (token, status) in [
        ("file-token-2", StatusCode::OK),
        ("# one per line", StatusCode::UNAUTHORIZED),
    ] {
        let response = server
            .client
            .get(format!("{}/messages", server.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), status, "{token}");
    }
}

#[tokio::test]
async fn clients_over_their_rate_get_429_with_retry_after() {
    let server = spawn_app(&["--rate-limit", "1", "--rate-limit-burst", "3"]).await;
    let url = format!("{}/messages", server.url);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response = server.client.get(&url).send().await.expect("get");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let body: Value = response.json().await.expect("json");
            assert!(
                body["error"]
                    .as_str()
                    .expect("error")
                    .contains("rate limit exceeded")
            );
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let retry_after: u64 = retry_after
        .expect("Retry-After header")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry_after));
    // Ops routes are not throttled.
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        server.client.get(&url).send().await.expect("get").status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn self_signed_tls_serves_https_over_http1_and_http2() {
    let server = spawn_app(&["--tls", "self-signed"]).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let cert_path = server.data_dir.join("tls/cert.pem");
    let cert = reqwest::Certificate::from_pem(&std::fs::read(&cert_path).expect("cert written"))
        .expect("pem");
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(server.data_dir.join("tls/key.pem"))
            .expect("key")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);

    for http2 in [false, true] {
        let mut builder = reqwest::Client::builder().add_root_certificate(cert.clone());
        builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        let client = builder.build().expect("client");
        let response = client
            .post(format!("{}/messages", server.url))
            .json(&json!({"message": format!("over tls, h2={http2}")}))
            .send()
            .await
            .expect("https post");
        assert_eq!(response.status(), StatusCode::CREATED);
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), expected);
    }

    // A client that does not trust the certificate is refused at the handshake.
    let untrusting = server
        .client
        .get(format!("{}/healthz", server.url))
        .send()
        .await;
    assert!(untrusting.is_err());
    // Plain HTTP on the TLS port does not get through either.
    let plain = server
        .client
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await;
    assert!(plain.map_or(true, |r| !r.status().is_success()));
}

#[tokio::test]
async fn tls_from_files_uses_the_given_certificate() {
    // Make a certificate with a first server, then serve it as "files" from a second.
    let first = spawn_app(&["--tls", "self-signed"]).await;
    let cert = first.data_dir.join("tls/cert.pem");
    let key = first.data_dir.join("tls/key.pem");
    let (cert, key) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let server = spawn_app(&["--tls-cert", cert, "--tls-key", key]).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(cert).expect("cert")).expect("pem"),
        )
        .build()
        .expect("client");
    let response = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("https");
    assert_eq!(response.status(), StatusCode::OK);
}
