//! Ops routes, metrics and gRPC on the same port.

use serde_json::json;

use crate::support::{TestServer, http};

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let server = TestServer::start(&[]);
    http()
        .post(format!("{}/messages", server.url))
        .json(&json!({"message": "counted"}))
        .send()
        .await
        .expect("post");
    http()
        .get(format!("{}/messages/{}", server.url, "0".repeat(64)))
        .send()
        .await
        .expect("get");
    let text = server.metrics().await;
    for needle in [
        r#"quintet_messages_http_requests_total{method="POST",route="/messages",status="201"} 1"#,
        r#"quintet_messages_http_requests_total{method="GET",route="/messages/{digest}",status="404"} 1"#,
        "quintet_messages_http_request_duration_seconds_bucket",
        "quintet_messages_http_requests_in_flight",
        "quintet_messages_store_duration_seconds",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}
