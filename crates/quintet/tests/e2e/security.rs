//! Bearer auth, per-client rate limits and TLS, from the outside.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Start, TestServer, http};

#[tokio::test]
async fn bearer_tokens_guard_service_routes_but_not_ops_routes() {
    let server = TestServer::launch(Start {
        args: vec!["--tokens", "alpha-token"],
        env: vec![("QUINTET_TOKENS_FILE", "/dev/null")],
        ..Start::default()
    });
    let url = format!("{}/messages", server.url);

    let missing = http()
        .post(&url)
        .json(&json!({"message": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let challenge = missing.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(
        missing.json::<Value>().await.expect("json")["error"]
            .as_str()
            .expect("error")
            .contains("missing bearer token")
    );

    let wrong = http()
        .post(&url)
        .bearer_auth("beta-token")
        .json(&json!({"message": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );

    let right = http()
        .post(&url)
        .bearer_auth("alpha-token")
        .json(&json!({"message": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(right.status(), StatusCode::CREATED);

    for ops in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let response = http()
            .get(format!("{}{ops}", server.url))
            .send()
            .await
            .expect("ops");
        assert_eq!(response.status(), StatusCode::OK, "{ops} is public");
    }
    assert!(
        !server.logs().contains("alpha-token"),
        "tokens never reach the logs"
    );
    assert!(
        !server.logs().contains("beta-token"),
        "tokens never reach the logs"
    );
}
