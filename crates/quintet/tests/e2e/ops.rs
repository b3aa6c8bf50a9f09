//! Ops routes, metrics and gRPC on the same port.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{TestServer, http};

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let server = TestServer::start(&[]);
    let alive: Value = http()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(alive, json!({"status": "ok"}));
    let ready: Value = http()
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": {
            "calc-event-log": "ok", "counters-store": "ok", "messages-store": "ok"
        }})
    );

    let doc: Value = http()
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    for path in [
        "/messages",
        "/messages/{digest}",
        "/message/{digest}",
        "/all-messages",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let post = &doc["paths"]["/messages"]["post"]["responses"];
    for status in ["200", "201", "400", "413", "415", "422"] {
        assert!(
            post[status].is_object(),
            "POST /messages documents {status}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let docs = http()
        .get(format!("{}/docs/", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.expect("html").contains("swagger"),
        "the interactive page is served"
    );
}

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
    let text = http()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
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

#[tokio::test]
async fn grpc_health_is_served_on_the_same_port_over_cleartext_http2() {
    let server = TestServer::start(&[]);
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let missing = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(
        missing.expect_err("unknown service").code(),
        tonic::Code::NotFound
    );
}
