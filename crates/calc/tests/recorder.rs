//! The recorder between the RPCs and the event log, on real logs: events
//! reach the log in order; shutdown writes what is buffered; an outage
//! longer than the buffer drops (and counts) events instead of blocking, and
//! writing resumes when the log is back; with `--calc-event-ack appended`
//! a caller waits for its event's append and hears at once when it failed.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use calc::adapters::postgres::PostgresEventLog;
use calc::adapters::redb::RedbEventLog;
use calc::domain::event::{CalculationPerformed, EventQuery, Outcome};
use calc::engine::recorder::{EventAck, NotRecorded, Recorder};
use calc::ports::EventLog;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn event(n: u64) -> CalculationPerformed {
    CalculationPerformed::now(
        "add",
        &format!("req-{n}"),
        json!({"a": n, "b": 0}),
        Outcome::Result(json!(n)),
    )
}

async fn all(log: &dyn EventLog) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = log
            .read(EventQuery::new(after, None, 1000))
            .await
            .expect("read");
        let Some(last) = page.last() else {
            return ids;
        };
        after = last.seq;
        ids.extend(page.into_iter().map(|e| e.event.request_id));
    }
}

#[tokio::test]
async fn events_reach_the_log_in_order_and_shutdown_writes_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(RedbEventLog::open(&dir.path().join("events.redb")).expect("open"));
    let (recorder, writer) = Recorder::new(log.clone(), 5_000);
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer.run(stop.clone()));
    for n in 0..2_000 {
        recorder.record(event(n));
    }
    // Stop at once: whatever is still buffered is written before the task ends.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the writer stops")
        .expect("no panic");
    assert_eq!(recorder.dropped(), 0);
    // The writer closed the log; reopen the file to read what it holds.
    drop(log);
    let log = RedbEventLog::open(&dir.path().join("events.redb")).expect("reopen");
    let ids = all(&log).await;
    let expected: Vec<String> = (0..2_000).map(|n| format!("req-{n}")).collect();
    assert_eq!(ids, expected);
    // Recording after the writer stopped drops, never blocks or panics.
    recorder.record(event(9));
    assert_eq!(recorder.dropped(), 1);
}

#[tokio::test]
async fn an_outage_longer_than_the_buffer_drops_and_counts_then_writing_resumes() {
    let (schema, url) = testkit::postgres_schema().await;
    let log: Arc<dyn EventLog> = Arc::new(PostgresEventLog::connect(&url).await.expect("connect"));
    let admin = sqlx::PgPool::connect(&url).await.expect("admin");
    // The outage: the table is gone for a while (appends fail as they would
    // with PostgreSQL down), then comes back.
    sqlx::query("ALTER TABLE calc_events RENAME TO calc_events_away")
        .execute(&admin)
        .await
        .expect("rename");
    let (recorder, writer) = Recorder::new(log.clone(), 20);
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer.run(stop.clone()));
    let sent = 100;
    let started = std::time::Instant::now();
    for n in 0..sent {
        recorder.record(event(n));
        tokio::task::yield_now().await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "recording never waits on the log"
    );
    let dropped = recorder.dropped();
    assert!(
        (40..=80).contains(&dropped),
        "a 20-event buffer over a down log drops most of 100 events; dropped {dropped}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ALTER TABLE calc_events_away RENAME TO calc_events")
        .execute(&admin)
        .await
        .expect("rename back");
    // Retries (backoff up to 5 s) write what was buffered.
    let expected = usize::try_from(sent - dropped).unwrap();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids = all(log.as_ref()).await;
        if ids.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ids.len(), expected, "every event not dropped is written");
    let mut numbers: Vec<u64> = ids
        .iter()
        .map(|id| id.trim_start_matches("req-").parse().expect("number"))
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order: {numbers:?}"
    );
    // And later events flow again.
    recorder.record(event(1_000));
    stop.cancel();
    task.await.expect("writer stops");
    numbers.push(1_000);
    let reopened = PostgresEventLog::connect(&url).await.expect("reconnect");
    assert_eq!(all(&reopened).await.len(), numbers.len());
    reopened.close().await;
    admin.close().await;
    testkit::drop_schema(&schema).await;
}

#[tokio::test]
async fn appended_answers_wait_for_the_append_and_fail_fast_while_the_log_is_down() {
    let (schema, url) = testkit::postgres_schema().await;
    let log: Arc<dyn EventLog> = Arc::new(PostgresEventLog::connect(&url).await.expect("connect"));
    let admin = sqlx::PgPool::connect(&url).await.expect("admin");
    let (recorder, writer) = Recorder::with_ack(log.clone(), 100, EventAck::Appended);
    assert!(recorder.waits());
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer.run(stop.clone()));

    // Up: once record_appended returns, the events are in the log, without
    // the 100 ms linger of the buffered mode.
    let started = std::time::Instant::now();
    let waits: Vec<_> = (0..50)
        .map(|n| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record_appended(event(n)).await })
        })
        .collect();
    for wait in waits {
        wait.await.expect("task").expect("appended");
    }
    assert_eq!(all(log.as_ref()).await.len(), 50);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Down: the caller hears at once that its event is not in the log…
    sqlx::query("ALTER TABLE calc_events RENAME TO calc_events_away")
        .execute(&admin)
        .await
        .expect("rename");
    // Twenty callers at once: those in the failing batch and those queued
    // behind it all hear at once, none waits out the retries.
    let started = std::time::Instant::now();
    let waits: Vec<_> = (50..70)
        .map(|n| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record_appended(event(n)).await })
        })
        .collect();
    for wait in waits {
        assert_eq!(wait.await.expect("task"), Err(NotRecorded::LogFailed));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a failed append answers at its first attempt, not after the retries: {:?}",
        started.elapsed()
    );
    // While it is down, a caller is refused without queueing.
    assert_eq!(
        recorder.record_appended(event(70)).await,
        Err(NotRecorded::LogFailed)
    );
    // …and the writer keeps the event: it lands once the log is back
    // (at-least-once: a caller that retried would add a second).
    sqlx::query("ALTER TABLE calc_events_away RENAME TO calc_events")
        .execute(&admin)
        .await
        .expect("rename back");
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids = all(log.as_ref()).await;
        if ids.len() >= 70 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The twenty queued before it went down are kept and written; the one
    // refused without queueing is not (its caller got no answer).
    let mut late: Vec<&str> = ids[50..].iter().map(String::as_str).collect();
    late.sort_unstable();
    let mut expected: Vec<String> = (50..70).map(|n| format!("req-{n}")).collect();
    expected.sort_unstable();
    assert_eq!(
        late, expected,
        "the refused events were written by the retries"
    );

    // Stopped: refused, never waiting.
    stop.cancel();
    task.await.expect("writer stops");
    assert_eq!(
        recorder.record_appended(event(51)).await,
        Err(NotRecorded::Stopped)
    );
    admin.close().await;
    testkit::drop_schema(&schema).await;
}

#[tokio::test]
async fn without_a_log_there_is_nothing_to_wait_for() {
    let recorder = Recorder::disabled();
    assert!(!recorder.waits());
    assert_eq!(recorder.record_appended(event(1)).await, Ok(()));
}
