//! Ops routes, metrics and gRPC on the same port.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::spawn_app;

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let server = spawn_app(&[]).await;
    let alive: Value = server.get("/healthz").await.json().await.expect("json");
    assert_eq!(alive, json!({"status": "ok"}));
    let ready: Value = server.get("/readyz").await.json().await.expect("json");
    assert_eq!(
        ready,
        json!({"status": "ready", "checks": {
            "calc-event-log": "ok", "counters-store": "ok", "messages-store": "ok"
        }})
    );

    let doc: Value = server
        .get("/openapi.json")
        .await
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

    let docs = server.get("/docs/").await;
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
    let got = server.get(&format!("/counters/{long}")).await;
    assert_eq!(got.status(), StatusCode::URI_TOO_LONG);
    let body: Value = got.json().await.expect("a JSON body");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("16384"), "{error}");
}

/// Every operation of `doc`: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            out.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    out
}

#[tokio::test]
async fn the_openapi_document_is_the_running_servers_contract() {
    let server = spawn_app(&[
        "--services",
        "messages,counters,kv,calc,receipts",
        "--kv-tcp-addr",
        "127.0.0.1:0",
        "--tokens",
        "doc-token",
    ])
    .await;
    let doc: Value = server
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("json");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let ops_paths = ["/healthz", "/readyz", "/metrics"];
    for (path, method, operation) in operations(&doc) {
        let name = format!("{method} {path}");
        if ops_paths.contains(&path.as_str()) {
            assert!(operation["security"].is_null(), "{name} is public");
            continue;
        }
        // Tokens are configured: every service route says so, and what the
        // platform answers before the handler runs is documented.
        assert_eq!(operation["security"], json!([{"bearer": []}]), "{name}");
        for status in ["401", "414", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{name} documents {status}"
            );
        }
        // Parameters are where the route reads them: path ones in the
        // template (and required), query ones optional.
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let param = parameter["name"].as_str().expect("name");
            match parameter["in"].as_str() {
                Some("path") => {
                    assert!(path.contains(&format!("{{{param}}}")), "{name}: {param}");
                    assert_eq!(parameter["required"], true, "{name}: {param}");
                }
                Some("query") => {
                    assert_ne!(parameter["required"], true, "{name}: {param}");
                }
                other => panic!("{name}: {param} is in {other:?}"),
            }
        }
    }
    // Schemas are named per service, so two services' page types never
    // share a name; every reference resolves.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for service in ["messages", "counters", "kv"] {
        assert!(
            schemas.contains_key(&format!("{service}.PageBody")),
            "{service}.PageBody in {:?}",
            schemas.keys()
        );
    }
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "{name} is defined");
    }
    assert_eq!(
        doc["paths"]["/kv"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/kv.PageBody"
    );
}
