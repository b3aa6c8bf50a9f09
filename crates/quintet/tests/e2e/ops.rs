//! Ops routes, metrics and gRPC on the same port.

use serde_json::{Value, json};

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
    let server = TestServer::launch(crate::support::Start {
        args: vec![
            "--services",
            "messages,counters,kv,calc,receipts",
            "--kv-tcp-addr",
            "127.0.0.1:0",
        ],
        env: vec![("QUINTET_TOKENS", "doc-token")],
        data_dir: None,
    });
    let doc: Value = http()
        .get(format!("{}/openapi.json", server.url))
        .send()
        .await
        .expect("get")
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
