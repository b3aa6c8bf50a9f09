//! calc beyond the gRPC arithmetic: the REST mapping of every unary method
//! and gRPC reflection.

use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn rest_maps_every_unary_method_and_names_what_was_wrong() {
    let server = spawn_app(&["--services", "calc", "--calc-max-n", "2000000"]).await;
    let post = |path: &str, body: &str| {
        let request = server
            .client
            .post(format!("{}{path}", server.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        async move {
            let response = request.send().await.expect("POST");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON body"))
        }
    };
    let ok = [
        ("/calc/add", r#"{"a": 1, "b": 2}"#, json!({"result": 3})),
        (
            "/calc/subtract",
            r#"{"a": 1, "b": 2}"#,
            json!({"result": -1}),
        ),
        (
            "/calc/multiply",
            r#"{"a": -4, "b": 5}"#,
            json!({"result": -20}),
        ),
        (
            "/calc/divide",
            r#"{"a": -7, "b": 2}"#,
            json!({"result": -3}),
        ),
        (
            "/calc/max",
            r#"{"values": [3, 9, -1]}"#,
            json!({"result": 9}),
        ),
        (
            "/calc/min",
            r#"{"values": [3, 9, -1]}"#,
            json!({"result": -1}),
        ),
        (
            "/calc/nth-primes",
            r#"{"n": [10001, 1, 1000000]}"#,
            json!({"primes": [104_743, 2, 15_485_863]}),
        ),
    ];
    for (path, body, expected) in ok {
        assert_eq!(post(path, body).await, (200, expected), "{path}");
    }
    let refused = [
        (
            "/calc/add",
            r#"{"a": 9223372036854775807, "b": 1}"#,
            422,
            "overflows",
        ),
        (
            "/calc/divide",
            r#"{"a": 1, "b": 0}"#,
            422,
            "division by zero",
        ),
        ("/calc/max", r#"{"values": []}"#, 422, "at least one"),
        ("/calc/nth-primes", r#"{"n": [0]}"#, 422, "at least 1"),
        (
            "/calc/nth-primes",
            r#"{"n": [2000001]}"#,
            422,
            "limit of 2000000",
        ),
        ("/calc/add", r#"{"a": 1}"#, 422, "missing field `b`"),
        ("/calc/add", r#"{"a": 1, "b": 1.5}"#, 422, "b: invalid type"),
        (
            "/calc/add",
            r#"{"a": 1, "b": 2, "c": 3}"#,
            422,
            "unknown field `c`",
        ),
        ("/calc/max", r#"{"values": [1, "x"]}"#, 422, "values[1]"),
        ("/calc/add", r#"{"a": 1,"#, 400, "invalid JSON"),
    ];
    for (path, body, status, says) in refused {
        let (got, answer) = post(path, body).await;
        let message = answer["error"].as_str().unwrap_or("");
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(
            message.contains(says),
            "{path} {body}: {message} should say {says}"
        );
    }
    let response = server
        .client
        .post(format!("{}/calc/add", server.url))
        .header("content-type", "text/plain")
        .body("1+2")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 415);
    let response = server.get("/calc/history?after=x").await;
    assert_eq!(response.status(), 400);
    // The OpenAPI document lists the REST mapping.
    let doc: Value = server
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    for path in [
        "/calc/add",
        "/calc/subtract",
        "/calc/multiply",
        "/calc/divide",
        "/calc/max",
        "/calc/min",
        "/calc/nth-primes",
        "/calc/history",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from OpenAPI"
        );
    }
}

#[tokio::test]
async fn reflection_describes_every_grpc_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    // Reflection and health are public, like the other ops routes.
    let server = spawn_app(&[
        "--services",
        "calc,kv",
        "--kv-tcp-addr",
        "127.0.0.1:0",
        "--tokens",
        "secret",
    ])
    .await;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut reflection = ServerReflectionClient::new(channel);
    let requests = futures_util::stream::iter(vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "quintet.calc.v1.Calculator".into(),
            )),
        },
    ]);
    let mut answers = reflection
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();
    let Some(first) = answers.message().await.expect("first answer") else {
        panic!("no answer");
    };
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("not a service list: {first:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in [
        "quintet.calc.v1.Calculator",
        "quintet.kv.v1.KeyValue",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    let Some(second) = answers.message().await.expect("second answer") else {
        panic!("no second answer");
    };
    let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else {
        panic!("not a file: {second:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
