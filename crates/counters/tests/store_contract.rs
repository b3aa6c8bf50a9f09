//! The one contract every `CounterStore` adapter must honour, run against the
//! real engines: redb in a temporary directory and `PostgreSQL` (see `testkit`),
//! each test in a schema of its own. These tests never skip.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use counters::adapters::postgres::PostgresCounterStore;
use counters::adapters::redb::RedbCounterStore;
use counters::domain::{Counter, CounterKey, KeyPrefix, PageLimit};
use counters::ports::{CounterStore, FlushBatch, StoreError};

struct Subject {
    store: Arc<dyn CounterStore>,
    _dir: Option<tempfile::TempDir>,
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn redb() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbCounterStore::open(&dir.path().join("counters.redb")).expect("open redb");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres() -> (Subject, String) {
    let (schema, url) = testkit::postgres_schema().await;
    let store = PostgresCounterStore::connect(&url)
        .await
        .expect("connect and migrate");
    (
        Subject {
            store: Arc::new(store),
            _dir: None,
        },
        schema,
    )
}

testkit::store_contract!(
    apply_adds_deltas_and_answers_totals,
    a_batch_applies_once_per_instance_sequence,
    instances_flush_independently,
    unknown_keys_load_as_none,
    pages_by_prefix_in_byte_order_with_like_metacharacters_taken_literally,
    an_overflowing_batch_changes_nothing,
);

fn key(s: &str) -> CounterKey {
    CounterKey::parse(s.to_owned(), 1024).expect("valid key")
}

fn batch(instance: &str, seq: u64, deltas: &[(&str, i64)]) -> FlushBatch {
    FlushBatch {
        instance: instance.to_owned(),
        seq,
        deltas: deltas.iter().map(|(k, d)| (key(k), *d)).collect(),
    }
}

fn sorted(mut totals: Vec<Counter>) -> Vec<(String, i64)> {
    totals.sort_by(|a, b| a.key.cmp(&b.key));
    totals
        .into_iter()
        .map(|c| (c.key.into_string(), c.value))
        .collect()
}

async fn apply_adds_deltas_and_answers_totals(s: Subject) {
    let totals = s
        .store
        .apply(&batch("i1", 1, &[("a", 2), ("b", -3)]))
        .await
        .expect("apply");
    assert_eq!(sorted(totals), vec![("a".into(), 2), ("b".into(), -3)]);
    let totals = s
        .store
        .apply(&batch("i1", 2, &[("a", 5)]))
        .await
        .expect("apply");
    assert_eq!(sorted(totals), vec![("a".into(), 7)]);
    assert_eq!(s.store.load(&key("a")).await.expect("load"), Some(7));
    assert_eq!(s.store.flushed_seq("i1").await.expect("seq"), 2);
}

async fn a_batch_applies_once_per_instance_sequence(s: Subject) {
    let b = batch("i1", 10, &[("k", 4)]);
    s.store.apply(&b).await.expect("apply");
    // The same flush again (a crash between commit and journal truncation): no double count.
    let again = s.store.apply(&b).await.expect("replay");
    assert_eq!(sorted(again), vec![("k".into(), 4)]);
    // An older sequence of the same instance is also already in.
    s.store
        .apply(&batch("i1", 9, &[("k", 100)]))
        .await
        .expect("old");
    assert_eq!(s.store.load(&key("k")).await.expect("load"), Some(4));
    assert_eq!(s.store.flushed_seq("i1").await.expect("seq"), 10);
}

async fn instances_flush_independently(s: Subject) {
    s.store
        .apply(&batch("i1", 5, &[("shared", 1)]))
        .await
        .expect("apply");
    s.store
        .apply(&batch("i2", 1, &[("shared", 10)]))
        .await
        .expect("apply");
    s.store
        .apply(&batch("i3", 5, &[("shared", 100)]))
        .await
        .expect("apply");
    assert_eq!(s.store.load(&key("shared")).await.expect("load"), Some(111));
    assert_eq!(s.store.flushed_seq("i2").await.expect("seq"), 1);
    assert_eq!(s.store.flushed_seq("nobody").await.expect("seq"), 0);
    // A total and an instance's flushed sequence, read together.
    let shared = key("shared");
    assert_eq!(
        s.store
            .load_with_flushed(&shared, "i3")
            .await
            .expect("load"),
        (Some(111), 5)
    );
    assert_eq!(
        s.store
            .load_with_flushed(&shared, "nobody")
            .await
            .expect("load"),
        (Some(111), 0)
    );
    assert_eq!(
        s.store
            .load_with_flushed(&key("never"), "i2")
            .await
            .expect("load"),
        (None, 1)
    );
}

async fn unknown_keys_load_as_none(s: Subject) {
    assert_eq!(s.store.load(&key("never")).await.expect("load"), None);
}

async fn pages_by_prefix_in_byte_order_with_like_metacharacters_taken_literally(s: Subject) {
    let keys = ["a%b", "a_c", "ab", "abc", "B", "é", "a\\d"];
    let deltas: Vec<(&str, i64)> = keys.iter().map(|k| (*k, 1)).collect();
    s.store
        .apply(&batch("i1", 1, &deltas))
        .await
        .expect("apply");

    let limit = |n: u32| PageLimit::parse(Some(&n.to_string())).expect("limit");
    let prefix = |p: &str| KeyPrefix::parse(Some(p.to_owned()), 64).expect("prefix");
    let names = |page: &counters::ports::Page| {
        page.items
            .iter()
            .map(|c| c.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };

    let all = s
        .store
        .page(&prefix(""), None, limit(100))
        .await
        .expect("page");
    assert_eq!(
        names(&all),
        vec!["B", "a%b", "a\\d", "a_c", "ab", "abc", "é"],
        "byte order"
    );
    assert_eq!(all.next, None);

    assert_eq!(
        names(
            &s.store
                .page(&prefix("a%"), None, limit(10))
                .await
                .expect("page")
        ),
        vec!["a%b"]
    );
    assert_eq!(
        names(
            &s.store
                .page(&prefix("a_"), None, limit(10))
                .await
                .expect("page")
        ),
        vec!["a_c"]
    );
    assert_eq!(
        names(
            &s.store
                .page(&prefix("a\\"), None, limit(10))
                .await
                .expect("page")
        ),
        vec!["a\\d"]
    );

    let first = s
        .store
        .page(&prefix("a"), None, limit(2))
        .await
        .expect("page");
    assert_eq!(names(&first), vec!["a%b", "a\\d"]);
    let second = s
        .store
        .page(&prefix("a"), first.next.as_ref(), limit(2))
        .await
        .expect("page");
    assert_eq!(names(&second), vec!["a_c", "ab"]);
    let third = s
        .store
        .page(&prefix("a"), second.next.as_ref(), limit(2))
        .await
        .expect("page");
    assert_eq!(names(&third), vec!["abc"]);
    assert_eq!(third.next, None);
}

async fn an_overflowing_batch_changes_nothing(s: Subject) {
    s.store
        .apply(&batch("i1", 1, &[("max", i64::MAX), ("other", 1)]))
        .await
        .expect("apply");
    match s
        .store
        .apply(&batch("i1", 2, &[("other", 1), ("max", 1)]))
        .await
    {
        Err(StoreError::Overflow { .. }) => {}
        other => panic!("expected an overflow refusal, got {other:?}"),
    }
    assert_eq!(
        s.store.load(&key("other")).await.expect("load"),
        Some(1),
        "nothing half-applied"
    );
    assert_eq!(s.store.flushed_seq("i1").await.expect("seq"), 1);
}
