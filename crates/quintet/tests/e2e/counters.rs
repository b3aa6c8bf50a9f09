//! The counters service through the real binary: its contract, its errors,
//! and what happens under kill -9, several replicas and a store outage.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    PgProxy, Start, TestServer, cli, drop_schema, http, postgres_schema, postgres_url,
};

async fn incr(client: &reqwest::Client, server: &str, key: &str, value: i64) -> reqwest::Response {
    client
        .post(format!("{server}/increment"))
        .json(&json!({"key": key, "value": value}))
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn the_cli_increments_reads_and_lists() {
    let server = TestServer::start(&[]);
    let url = server.url.clone();
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, None)
        })
        .await
        .expect("join")
    };
    let args = |a: &[&str]| {
        a.iter()
            .map(std::string::ToString::to_string)
            .chain(["--url".to_string(), url.clone()])
            .collect::<Vec<_>>()
    };
    let (code, out, err) = run(args(&["counters", "incr", "visits"])).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json"),
        json!({"data": {"key": "visits", "value": 1}})
    );
    let (code, out, _) = run(args(&["counters", "incr", "visits", "-3"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["data"]["value"],
        -2
    );
    let (code, out, _) = run(args(&["counters", "get", "visits"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["value"],
        -2
    );
    let (code, out, _) = run(args(&["counters", "list", "--prefix", "vis"])).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["items"][0]["key"],
        "visits"
    );
    let (code, _, err) = run(args(&["counters", "get", "nothing"])).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("counter not found"),
        "{err}"
    );
}

/// Per key: the sum of acknowledged increments and of every increment sent.
#[derive(Default, Clone, Copy, Debug)]
struct Sums {
    acked: i64,
    sent: i64,
}

async fn drive(url: String, keys: usize, writer: usize, until: Instant) -> HashMap<String, Sums> {
    let client = http();
    let mut sums: HashMap<String, Sums> = HashMap::new();
    let mut n = 0usize;
    while Instant::now() < until {
        let key = format!("key-{}", (writer * 7 + n) % keys);
        let delta = i64::try_from(n % 5 + 1).unwrap();
        n += 1;
        let entry = sums.entry(key.clone()).or_default();
        entry.sent += delta;
        match client
            .post(format!("{url}/increment"))
            .json(&json!({"key": key, "value": delta}))
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::OK => entry.acked += delta,
            Ok(_) => {}
            Err(_) => break, // the server is gone
        }
    }
    sums
}

fn merge(into: &mut HashMap<String, Sums>, from: HashMap<String, Sums>) {
    for (k, s) in from {
        let e = into.entry(k).or_default();
        e.acked += s.acked;
        e.sent += s.sent;
    }
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_no_acknowledged_increment() {
    let dir = crate::support::private_tempdir();
    let mut sums = HashMap::new();
    for round in 0..4u64 {
        let server = TestServer::launch(Start {
            data_dir: Some(dir.path()),
            args: vec!["--flush-interval", "150ms", "--services", "counters"],
            ..Start::default()
        });
        let until = Instant::now() + Duration::from_secs(5);
        let writers: Vec<_> = (0..8)
            .map(|w| tokio::spawn(drive(server.url.clone(), 40, w, until)))
            .collect();
        // A different moment each round, relative to the flush interval.
        tokio::time::sleep(Duration::from_millis(300 + round * 170)).await;
        server.kill9();
        for w in writers {
            merge(&mut sums, w.await.expect("writer"));
        }
    }
    let acked: i64 = sums.values().map(|s| s.acked).sum();
    assert!(acked > 500, "the load was real: {acked}");

    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        args: vec!["--services", "counters"],
        ..Start::default()
    });
    let client = http();
    for (key, s) in &sums {
        let body: Value = client
            .get(format!("{}/counters/{key}", server.url))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let total = body["value"]
            .as_i64()
            .unwrap_or_else(|| panic!("{key}: {body}"));
        assert!(
            s.acked <= total && total <= s.sent,
            "{key}: acknowledged {} ≤ total {total} ≤ sent {}",
            s.acked,
            s.sent
        );
    }
    // And after a clean stop the store itself holds those totals.
    assert!(server.stop().success());
}

#[tokio::test]
async fn three_instances_on_one_postgres_sum_exactly() {
    let (schema, store) = postgres_schema().await;
    let servers: Vec<TestServer> = (0..3)
        .map(|_| {
            TestServer::start(&[
                "--store",
                &store,
                "--flush-interval",
                "200ms",
                "--services",
                "counters",
            ])
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(2);
    let writers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(drive(servers[w % 3].url.clone(), 20, w, until)))
        .collect();
    let mut sums = HashMap::new();
    for w in writers {
        merge(&mut sums, w.await.expect("writer"));
    }
    for server in servers {
        assert!(server.stop().success(), "clean stop with a final flush");
    }
    let pool = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("connect");
    let rows: Vec<(String, i64)> =
        sqlx::query_as(&format!("SELECT key, value FROM {schema}.counters"))
            .fetch_all(&pool)
            .await
            .expect("select");
    pool.close().await;
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    assert_eq!(stored.len(), sums.len());
    for (key, s) in &sums {
        assert_eq!(s.acked, s.sent, "{key}: every increment was acknowledged");
        assert_eq!(
            stored.get(key).copied(),
            Some(s.acked),
            "{key}: the exact sum of all instances' increments"
        );
    }
    drop_schema(&schema).await;
}

// Multi-threaded: the proxy's tasks must run while the test thread blocks on the server's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_loses_nothing_once_the_store_is_back() {
    let (schema, _) = postgres_schema().await;
    let proxy = PgProxy::start().await;
    let server = TestServer::start(&[
        "--store",
        &proxy.url(&schema),
        "--flush-interval",
        "200ms",
        "--services",
        "counters",
    ]);
    let client = http();
    let mut expected: HashMap<String, i64> = HashMap::new();
    for i in 0..5 {
        let key = format!("k{i}");
        assert_eq!(
            incr(&client, &server.url, &key, 1).await.status(),
            StatusCode::OK
        );
        *expected.entry(key).or_default() += 1;
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // flushed once

    proxy.down();
    for round in 0..20 {
        let key = format!("k{}", round % 5);
        let response = incr(&client, &server.url, &key, 2).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "known keys keep being accepted into the journal"
        );
        *expected.entry(key).or_default() += 2;
    }
    let new_key = incr(&client, &server.url, "brand-new", 1).await;
    assert_eq!(
        new_key.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a new key's total cannot be known"
    );
    assert!(new_key.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(600)).await; // flushes fail meanwhile
    let ready = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness reports the store"
    );

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pool = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("connect");
    loop {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(&format!("SELECT key, value FROM {schema}.counters"))
                .fetch_all(&pool)
                .await
                .expect("select");
        let stored: HashMap<String, i64> = rows.into_iter().collect();
        if stored == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "store never caught up: {stored:?} vs {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.close().await;
    assert!(server.stop().success());
    drop_schema(&schema).await;
}
