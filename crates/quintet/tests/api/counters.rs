//! The counters API: its contract and its errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::spawn_app;

async fn incr(client: &reqwest::Client, server: &str, key: &str, value: i64) -> reqwest::Response {
    client
        .post(format!("{server}/increment"))
        .json(&json!({"key": key, "value": value}))
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn increments_answer_the_original_shape_and_totals_add_up() {
    let server = spawn_app(&[]).await;
    let client = server.client.clone();
    let response = incr(&client, &server.url, "test1", 2).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"data": {"key": "test1", "value": 2}})
    );
    let body: Value = incr(&client, &server.url, "test1", -5)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body, json!({"data": {"key": "test1", "value": -3}}));

    let got: Value = server
        .get("/counters/test1")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(got, json!({"key": "test1", "value": -3}));
    let missing = server.get("/counters/never").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Keys only pending in memory are listed too, in key order, by prefix.
    for k in ["p/a", "p/b", "p/c", "q/a"] {
        incr(&client, &server.url, k, 1).await;
    }
    let page: Value = server
        .get("/counters?prefix=p/&limit=2")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        page["items"],
        json!([{"key": "p/a", "value": 1}, {"key": "p/b", "value": 1}])
    );
    let cursor = page["next"].as_str().expect("next").to_owned();
    let rest: Value = client
        .get(format!("{}/counters", server.url))
        .query(&[("prefix", "p/"), ("cursor", cursor.as_str())])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        rest,
        json!({"items": [{"key": "p/c", "value": 1}], "next": null})
    );
}

#[tokio::test]
async fn bad_increments_get_clear_errors_and_apply_nothing() {
    type Case<'a> = (&'a str, Option<&'a str>, String, StatusCode, &'a str);
    let server = spawn_app(&["--counter-max-key-bytes", "8"]).await;
    let client = server.client.clone();
    incr(&client, &server.url, "big", i64::MAX).await;
    let cases: Vec<Case> = vec![
        (
            "invalid JSON",
            Some("application/json"),
            "{\"key\": ".into(),
            StatusCode::BAD_REQUEST,
            "invalid JSON",
        ),
        (
            "trailing data",
            Some("application/json"),
            r#"{"key": "k", "value": 1} {"key": "k", "value": 1}"#.into(),
            StatusCode::BAD_REQUEST,
            "trailing characters",
        ),
        (
            "missing key",
            Some("application/json"),
            r#"{"value": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `key`",
        ),
        (
            "missing value",
            Some("application/json"),
            r#"{"key": "k"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `value`",
        ),
        (
            "string value",
            Some("application/json"),
            r#"{"key": "k", "value": "2"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "value: invalid type",
        ),
        (
            "float value",
            Some("application/json"),
            r#"{"key": "k", "value": 1.5}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "value: invalid type",
        ),
        (
            "beyond i64",
            Some("application/json"),
            r#"{"key": "k", "value": 9223372036854775808}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "value:",
        ),
        (
            "key of wrong type",
            Some("application/json"),
            r#"{"key": 7, "value": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key: invalid type",
        ),
        (
            "empty key",
            Some("application/json"),
            r#"{"key": "", "value": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key must be 1 to 8 bytes",
        ),
        (
            "long key",
            Some("application/json"),
            r#"{"key": "123456789", "value": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key must be 1 to 8 bytes",
        ),
        (
            "overflow",
            Some("application/json"),
            r#"{"key": "big", "value": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "would overflow",
        ),
        (
            "form body",
            Some("application/x-www-form-urlencoded"),
            "key=k&value=1".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type",
        ),
        (
            "no content type",
            None,
            r#"{"key": "k", "value": 1}"#.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing Content-Type",
        ),
        (
            "huge body",
            Some("application/json"),
            format!(r#"{{"key": "{}", "value": 1}}"#, "k".repeat(100_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
    ];
    for (name, content_type, body, status, needle) in cases {
        // A fresh connection each time: the server closes one whose body it refused unread.
        let mut request = server
            .client
            .post(format!("{}/increment", server.url))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("post");
        assert_eq!(response.status(), status, "{name}");
        let error = response.json::<Value>().await.expect("json")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains(needle),
            "{name}: {error:?} should mention {needle:?}"
        );
    }
    let big: Value = server
        .get("/counters/big")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        big["value"],
        i64::MAX,
        "the overflowing increment was not applied"
    );
    let k = server.get("/counters/k").await;
    assert_eq!(
        k.status(),
        StatusCode::NOT_FOUND,
        "no refused increment created the key"
    );
}
