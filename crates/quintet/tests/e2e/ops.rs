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

#[tokio::test]
async fn one_worker_thread_serves_every_kind_of_route() {
    let server = TestServer::start(&["--worker-threads", "1"]);
    let posted = http()
        .post(format!("{}/messages", server.url))
        .json(&json!({"message": "one worker"}))
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), 201);
    let digest = crate::support::sha256_hex("one worker");
    let read = http()
        .get(format!("{}/messages/{digest}", server.url))
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);
    let added = http()
        .post(format!("{}/calc/add", server.url))
        .json(&json!({"a": 2, "b": 3}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    assert!(
        server
            .metrics()
            .await
            .contains("quintet_messages_http_requests_total")
    );
}

/// The hit and miss counts of the messages cache on a metrics page.
fn cache_lookups(metrics: &str) -> (u64, u64) {
    let count = |result: &str| {
        let series = format!(r#"quintet_messages_cache_lookups_total{{result="{result}"}} "#);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    };
    (count("hit"), count("miss"))
}

#[tokio::test]
async fn a_message_read_once_is_answered_from_memory_the_same_way() {
    // Four GETs of one message: (hits, misses) with the cache and without.
    for (flags, expected) in [
        (&[][..], (3, 1)),
        (&["--message-cache-bytes", "0"][..], (0, 4)),
    ] {
        let server = TestServer::start(flags);
        let created: serde_json::Value = http()
            .post(format!("{}/messages", server.url))
            .json(&json!({"message": "hot"}))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        let url = format!(
            "{}/messages/{}",
            server.url,
            created["digest"].as_str().expect("digest")
        );
        let mut answers = Vec::new();
        for _ in 0..3 {
            let response = http().get(&url).send().await.expect("get");
            let headers = response.headers().clone();
            answers.push((
                response.status(),
                headers["content-type"].clone(),
                headers["etag"].clone(),
                headers["cache-control"].clone(),
                response.text().await.expect("body"),
            ));
        }
        assert_eq!(answers[0].0, 200, "{flags:?}");
        assert_eq!(answers[0].1, "application/json");
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{flags:?}: {answers:?}"
        );
        // 304 from memory as from the store.
        let not_modified = http()
            .get(&url)
            .header("if-none-match", answers[0].2.clone())
            .send()
            .await
            .expect("get");
        assert_eq!(not_modified.status(), 304);
        let (hits, misses) = cache_lookups(&server.metrics().await);
        assert_eq!((hits, misses), expected, "{flags:?}");
    }
}
