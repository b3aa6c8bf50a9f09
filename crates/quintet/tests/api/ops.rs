//! Ops routes, metrics and gRPC on the same port.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::spawn_app;

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let server = spawn_app(&[]).await;
    let alive: Value = server
        .client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(alive, json!({"status": "ok"}));
    let ready: Value = server
        .client
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

    let doc: Value = server
        .client
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
    // No tokens configured: the document says every route is open.
    assert!(
        doc["components"]["securitySchemes"]["bearer"].is_null(),
        "{doc}"
    );

    let docs = server
        .client
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
async fn grpc_health_is_served_on_the_same_port_over_cleartext_http2() {
    let server = spawn_app(&[]).await;
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

#[tokio::test]
async fn a_uri_over_the_limit_is_refused_with_a_json_414() {
    let server = spawn_app(&[]).await;
    let long = "k".repeat(20 * 1024);
    let got = server
        .client
        .get(format!("{}/counters/{long}", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), StatusCode::URI_TOO_LONG);
    let body: Value = got.json().await.expect("a JSON body");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("16384"), "{error}");
}
