//! Every status code of the messages routes, as a client sees it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, sha256_hex, spawn_app};

async fn post_json(server: &TestApp, body: &Value) -> reqwest::Response {
    server.post_json("/messages", body).await
}

#[tokio::test]
async fn post_answers_the_sha256_digest_and_get_returns_the_message() {
    let server = spawn_app(&[]).await;
    let response = post_json(&server, &json!({"message": "hello, quintet"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let digest = sha256_hex("hello, quintet");
    assert_eq!(
        response.headers()["location"],
        format!("/messages/{digest}").as_str()
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"digest": digest}));

    let response = server.get(&format!("/messages/{digest}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], format!("\"{digest}\"").as_str());
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["digest"], digest.as_str());
    assert_eq!(body["message"], "hello, quintet");
    assert!(
        body["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
}

#[tokio::test]
async fn posting_the_same_text_again_answers_200_with_the_same_digest() {
    let server = spawn_app(&[]).await;
    let first = post_json(&server, &json!({"message": "twice"})).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = post_json(&server, &json!({"message": "twice"})).await;
    assert_eq!(second.status(), StatusCode::OK);
    let (a, b): (Value, Value) = (
        first.json().await.expect("json"),
        second.json().await.expect("json"),
    );
    assert_eq!(a, b);
    let page: Value = server.get("/messages").await.json().await.expect("json");
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
}

#[tokio::test]
async fn text_plain_bodies_are_accepted() {
    let server = spawn_app(&[]).await;
    let response = server
        .client
        .post(format!("{}/messages", server.url))
        .header("content-type", "text/plain; charset=utf-8")
        .body("plain text ✓")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["digest"], sha256_hex("plain text ✓").as_str());
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_store_nothing() {
    /// (case, content type, body, expected status, words the error must contain)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let server = spawn_app(&["--max-message-bytes", "16"]).await;
    let url = format!("{}/messages", server.url);
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            Some("application/json"),
            b"{\"message\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            "trailing data",
            Some("application/json"),
            b"{\"message\": \"x\"} x".to_vec(),
            StatusCode::BAD_REQUEST,
            "trailing characters",
        ),
        (
            "JSON that is not UTF-8",
            Some("application/json"),
            b"{\"message\": \"x\", \"note\": \"\xff\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "not UTF-8",
        ),
        (
            "missing field",
            Some("application/json"),
            b"{\"text\": \"x\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `message`",
        ),
        (
            "wrong type",
            Some("application/json"),
            b"{\"message\": 42}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid type",
        ),
        (
            "empty message",
            Some("application/json"),
            b"{\"message\": \"\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "must not be empty",
        ),
        (
            "too large",
            Some("application/json"),
            br#"{"message": "seventeen bytes!!!"}"#.to_vec(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit is 16 bytes",
        ),
        (
            "too large body",
            Some("text/plain"),
            vec![b'x'; 200_000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
        (
            "not UTF-8",
            Some("text/plain"),
            vec![0xff, 0xfe],
            StatusCode::BAD_REQUEST,
            "not valid UTF-8",
        ),
        (
            "wrong media type",
            Some("application/xml"),
            b"<m/>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type 'application/xml'",
        ),
        (
            "no media type",
            None,
            b"x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing Content-Type",
        ),
    ];
    for (name, content_type, body, status, needle) in cases {
        let mut request = server.client.post(&url).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), status, "{name}");
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: error body is JSON: {e}"));
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{name}: {message:?} should mention {needle:?}"
        );
    }
    let page: Value = server
        .client
        .get(&url)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn unknown_digest_is_404_and_malformed_is_400() {
    let server = spawn_app(&[]).await;
    let unknown = "0".repeat(64);
    let response = server.get(&format!("/messages/{unknown}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"error": "message not found"})
    );

    for bad in ["abc", &"z".repeat(64), &"a".repeat(65)] {
        let response = server.get(&format!("/messages/{bad}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .contains("64 hexadecimal characters"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn uppercase_digests_head_and_conditional_gets_work() {
    let server = spawn_app(&[]).await;
    post_json(&server, &json!({"message": "cache me"})).await;
    let digest = sha256_hex("cache me");
    let upper = format!("{}/messages/{}", server.url, digest.to_uppercase());

    let response = server.client.get(&upper).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["digest"], digest.as_str(), "normalized to lowercase");

    let head = server.client.head(&upper).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["etag"], format!("\"{digest}\"").as_str());
    assert!(head.bytes().await.expect("body").is_empty());

    let conditional = server
        .client
        .get(&upper)
        .header("if-none-match", format!("\"{digest}\""))
        .send()
        .await
        .expect("get");
    assert_eq!(conditional.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        conditional.headers()["etag"],
        format!("\"{digest}\"").as_str()
    );

    let other = server
        .client
        .get(&upper)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("get");
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn listing_pages_with_a_cursor_and_refuses_bad_parameters() {
    let server = spawn_app(&[]).await;
    for i in 0..5 {
        post_json(&server, &json!({"message": format!("m{i}")})).await;
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut request = server
            .client
            .get(format!("{}/messages", server.url))
            .query(&[("limit", "2")]);
        if let Some(cursor) = &next {
            request = request.query(&[("cursor", cursor)]);
        }
        let page: Value = request
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            seen.push(item["message"].as_str().expect("message").to_owned());
        }
        match page["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["m0", "m1", "m2", "m3", "m4"]);

    for query in ["limit=0", "limit=1001", "limit=ten", "cursor=bogus"] {
        let response = server.get(&format!("/messages?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(response.json::<Value>().await.expect("json")["error"].is_string());
    }
}

#[tokio::test]
async fn the_seed_paths_keep_working() {
    let server = spawn_app(&[]).await;
    post_json(&server, &json!({"message": "from the seed"})).await;
    let digest = sha256_hex("from the seed");
    let one: Value = server
        .get(&format!("/message/{digest}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(one["message"], "from the seed");
    let all: Value = server
        .get("/all-messages")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(all["items"][0]["digest"], digest.as_str());
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let server = spawn_app(&[]).await;
    let response = server.get("/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"error": "no route for GET /nope"})
    );
}
