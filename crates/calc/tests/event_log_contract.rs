//! The one contract every `EventLog` adapter must honour, run against the
//! real engines: redb in a temporary directory, `PostgreSQL` (a schema per
//! test, see `testkit`) and NATS `JetStream` at 127.0.0.1:4222 (a stream per
//! test; `QUINTET_TEST_NATS_URL` overrides). These tests never skip.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use calc::adapters::nats::NatsEventLog;
use calc::adapters::postgres::PostgresEventLog;
use calc::adapters::redb::RedbEventLog;
use calc::domain::event::{CalculationPerformed, EventQuery, Outcome};
use calc::ports::{EventLog, EventLogError};
use serde_json::json;
use time::OffsetDateTime;

struct Subject {
    log: Arc<dyn EventLog>,
    _dir: Option<tempfile::TempDir>,
    /// The NATS stream to delete once the test has passed.
    nats_stream: Option<String>,
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn redb() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = RedbEventLog::open(&dir.path().join("calc-events.redb")).expect("open redb");
    Subject {
        log: Arc::new(log),
        _dir: Some(dir),
        nats_stream: None,
    }
}

async fn postgres() -> (Subject, String) {
    let (schema, url) = testkit::postgres_schema().await;
    let log = PostgresEventLog::connect(&url)
        .await
        .expect("connect and migrate");
    (
        Subject {
            log: Arc::new(log),
            _dir: None,
            nats_stream: None,
        },
        schema,
    )
}

fn nats_url() -> String {
    std::env::var("QUINTET_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn nats() -> Subject {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("QT_TEST_{id}");
    let log = NatsEventLog::connect(&nats_url(), &stream, &format!("qt.test.{id}"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "NATS with JetStream must be reachable at {} for this test: {e}",
                nats_url()
            )
        });
    Subject {
        log: Arc::new(log),
        _dir: None,
        nats_stream: Some(stream),
    }
}

/// Releases what the test made (called at the end of each test, so a failed
/// test leaves its stream for inspection).
async fn done(subject: Subject) {
    subject.log.close().await;
    if let Some(stream) = subject.nats_stream {
        let client = async_nats::connect(nats_url()).await.expect("reconnect");
        async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await
            .expect("delete test stream");
    }
}

testkit::store_contract!(
    also on_nats = nats;
    appends_keep_their_order_and_read_back_in_pages,
    events_read_back_exactly_as_written,
    since_keeps_events_at_or_after_a_time,
    a_closed_log_is_unavailable,
);

fn event(method: &str, n: i64, at: OffsetDateTime) -> CalculationPerformed {
    CalculationPerformed {
        at,
        request_id: format!("req-{n}"),
        method: method.to_owned(),
        input: json!({"a": n, "b": 1}),
        outcome: Outcome::Result(json!(n + 1)),
    }
}

fn at(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds).expect("valid time")
}

async fn appends_keep_their_order_and_read_back_in_pages(subject: Subject) {
    let log = &subject.log;
    assert_eq!(
        log.read(EventQuery::new(0, None, 10)).await.expect("read"),
        vec![],
        "a new log is empty"
    );
    let first: Vec<_> = (0..3).map(|n| event("add", n, at(1_000 + n))).collect();
    let second: Vec<_> = (3..7).map(|n| event("add", n, at(1_000 + n))).collect();
    log.append(&first).await.expect("append");
    log.append(&second).await.expect("append");
    log.append(&[]).await.expect("an empty append is a no-op");

    let page = log.read(EventQuery::new(0, None, 3)).await.expect("read");
    let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let ids: Vec<&str> = page.iter().map(|e| e.event.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req-0", "req-1", "req-2"]);
    let rest = log.read(EventQuery::new(3, None, 100)).await.expect("read");
    let ids: Vec<&str> = rest.iter().map(|e| e.event.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req-3", "req-4", "req-5", "req-6"]);
    assert_eq!(rest.last().map(|e| e.seq), Some(7));
    assert_eq!(
        log.read(EventQuery::new(7, None, 100)).await.expect("read"),
        vec![]
    );
    assert_eq!(
        log.read(EventQuery::new(700, None, 100))
            .await
            .expect("read"),
        vec![]
    );
    log.ping().await.expect("reachable");
    done(subject).await;
}

async fn events_read_back_exactly_as_written(subject: Subject) {
    let now = CalculationPerformed::now("x", "", json!(null), Outcome::Result(json!(0))).at;
    let events = vec![
        CalculationPerformed {
            at: now,
            request_id: "0b6f…-ünïcødé".into(),
            method: "nth_primes".into(),
            input: json!({"n": [1, 2, 10001]}),
            outcome: Outcome::Result(json!([2, 3, 104_743])),
        },
        CalculationPerformed {
            at: now,
            request_id: String::new(),
            method: "divide".into(),
            input: json!({"a": i64::MIN, "b": -1}),
            outcome: Outcome::Error {
                kind: "overflow".into(),
                message: "divide overflows a signed 64-bit integer".into(),
            },
        },
        CalculationPerformed {
            at: now,
            request_id: "r".into(),
            method: "primes".into(),
            input: json!({"from": 100, "to": 200}),
            outcome: Outcome::Result(json!({"count": 21})),
        },
    ];
    subject.log.append(&events).await.expect("append");
    let read = subject
        .log
        .read(EventQuery::new(0, None, 10))
        .await
        .expect("read");
    let back: Vec<CalculationPerformed> = read.into_iter().map(|e| e.event).collect();
    assert_eq!(back, events);
    done(subject).await;
}

async fn since_keeps_events_at_or_after_a_time(subject: Subject) {
    let events: Vec<_> = [5, 1, 9, 5, 3]
        .iter()
        .enumerate()
        .map(|(i, &t)| event("max", i64::try_from(i).unwrap(), at(2_000 + t)))
        .collect();
    subject.log.append(&events).await.expect("append");
    let since = Some(at(2_005));
    let read = subject
        .log
        .read(EventQuery::new(0, since, 10))
        .await
        .expect("read");
    let ids: Vec<&str> = read.iter().map(|e| e.event.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req-0", "req-2", "req-3"], "log order, filtered");
    // Paging and the time filter combine.
    let first = subject
        .log
        .read(EventQuery::new(0, since, 1))
        .await
        .expect("read");
    assert_eq!(first.len(), 1);
    let next = subject
        .log
        .read(EventQuery::new(first[0].seq, since, 10))
        .await
        .expect("read");
    let ids: Vec<&str> = next.iter().map(|e| e.event.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req-2", "req-3"]);
    assert_eq!(
        subject
            .log
            .read(EventQuery::new(0, Some(at(3_000)), 10))
            .await
            .expect("read"),
        vec![]
    );
    done(subject).await;
}

async fn a_closed_log_is_unavailable(subject: Subject) {
    subject
        .log
        .append(&[event("add", 1, at(1))])
        .await
        .expect("append");
    subject.log.close().await;
    assert!(matches!(
        subject.log.append(&[event("add", 2, at(2))]).await,
        Err(EventLogError::Unavailable(_))
    ));
    assert!(matches!(
        subject.log.read(EventQuery::new(0, None, 10)).await,
        Err(EventLogError::Unavailable(_))
    ));
    assert!(subject.log.ping().await.is_err());
    done(subject).await;
}
