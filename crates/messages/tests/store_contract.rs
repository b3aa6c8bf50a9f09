//! The one contract every `MessageStore` adapter must honour, run against the
//! real engines: fjall (the embedded default) and redb (the embedded engine
//! before it, still read by the migration) in a temporary directory, and the
//! `PostgreSQL` server at
//! `QUINTET_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! each test in a schema of its own. These tests never skip: with no
//! `PostgreSQL` reachable, they fail.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use messages::adapters::fjall::FjallMessageStore;
use messages::adapters::postgres::PostgresMessageStore;
use messages::adapters::redb::RedbMessageStore;
use messages::domain::{Cursor, Digest, Message, PAGE_MAX_BYTES, PageLimit};
use messages::ports::{MessageStore, PutOutcome, StoreError};

const MAX: usize = 8 * 1024 * 1024;

fn message(text: &str) -> Message {
    Message::new(text.to_owned(), MAX).expect("valid test message")
}

fn limit(n: u32) -> PageLimit {
    PageLimit::parse(Some(&n.to_string())).expect("valid limit")
}

/// A store under test, with whatever must outlive it.
struct Subject {
    store: Arc<dyn MessageStore>,
    _dir: Option<tempfile::TempDir>,
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn redb() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbMessageStore::open(&dir.path().join("messages.redb")).expect("open redb");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn fjall() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FjallMessageStore::open(&dir.path().join("messages.fjall")).expect("open fjall");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// A fresh schema per test, so tests run in parallel and leave nothing shared behind.
async fn postgres() -> (Subject, String) {
    let (schema, url) = testkit::postgres_schema().await;
    let store = PostgresMessageStore::connect(&url)
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
    also on_fjall = fjall;
    put_then_get_returns_the_same_bytes,
    putting_the_same_text_twice_stores_it_once,
    unknown_digest_is_none,
    pages_follow_insertion_order_and_end_without_next,
    pages_stop_at_the_byte_bound,
    unicode_and_nul_survive_byte_for_byte,
    concurrent_puts_of_distinct_and_equal_texts,
    ping_answers_and_close_refuses_later_calls,
);

async fn put_then_get_returns_the_same_bytes(s: Subject) {
    let m = message("hello");
    assert_eq!(
        s.store.put(&m, 1_700_000_000_123).await.expect("put"),
        PutOutcome::Created
    );
    let stored = s
        .store
        .get(&m.digest())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.digest, m.digest());
    assert_eq!(stored.body, b"hello");
    assert_eq!(stored.created_at_ms, 1_700_000_000_123);
    assert_eq!(stored.verify().expect("intact").text, "hello");
}

async fn putting_the_same_text_twice_stores_it_once(s: Subject) {
    let m = message("same");
    assert_eq!(s.store.put(&m, 1).await.expect("put"), PutOutcome::Created);
    assert_eq!(
        s.store.put(&m, 2).await.expect("put"),
        PutOutcome::AlreadyStored
    );
    let page = s.store.page(None, limit(10)).await.expect("page");
    assert_eq!(page.items.len(), 1);
    // The first write wins: a repeat does not move the creation time.
    assert_eq!(page.items[0].created_at_ms, 1);
}

async fn unknown_digest_is_none(s: Subject) {
    assert!(
        s.store
            .get(&Digest::of(b"never stored"))
            .await
            .expect("get")
            .is_none()
    );
}

async fn pages_follow_insertion_order_and_end_without_next(s: Subject) {
    let texts: Vec<String> = (0..7).map(|i| format!("message {i}")).collect();
    for t in &texts {
        s.store.put(&message(t), 0).await.expect("put");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = s.store.page(cursor, limit(3)).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(
            page.items
                .iter()
                .map(|m| String::from_utf8(m.body.clone()).expect("utf8")),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, texts);
    assert_eq!(pages, 3);
    // An exactly full last page does not promise more.
    let six = s.store.page(None, limit(7)).await.expect("page");
    assert_eq!(six.items.len(), 7);
    assert_eq!(six.next, None);
}

async fn pages_stop_at_the_byte_bound(s: Subject) {
    let big = PAGE_MAX_BYTES / 2 + 1;
    for c in ['a', 'b', 'c'] {
        s.store
            .put(&message(&c.to_string().repeat(big)), 0)
            .await
            .expect("put");
    }
    let first = s.store.page(None, limit(100)).await.expect("page");
    assert_eq!(
        first.items.len(),
        1,
        "two messages would pass the byte bound"
    );
    let second = s.store.page(first.next, limit(100)).await.expect("page");
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].body[0], b'b');
    // A single message larger than the bound still comes back alone.
    let third = s.store.page(second.next, limit(100)).await.expect("page");
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next, None);
}

async fn unicode_and_nul_survive_byte_for_byte(s: Subject) {
    let text = "zero\0byte, émoji 🦀, 中文, \u{202e}rtl";
    let m = message(text);
    s.store.put(&m, 0).await.expect("put");
    let back = s
        .store
        .get(&m.digest())
        .await
        .expect("get")
        .expect("present")
        .verify()
        .expect("intact");
    assert_eq!(back.text, text);
}

async fn concurrent_puts_of_distinct_and_equal_texts(s: Subject) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = s.store.clone();
        // Half the tasks write the same text: exactly one of them creates it.
        let text = if i % 2 == 0 {
            "shared".to_owned()
        } else {
            format!("own {i}")
        };
        tasks.push(tokio::spawn(async move {
            store.put(&message(&text), 0).await.expect("put")
        }));
    }
    let mut created = 0;
    for t in tasks {
        if t.await.expect("task") == PutOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(created, 33);
    let page = s.store.page(None, limit(1000)).await.expect("page");
    assert_eq!(page.items.len(), 33);
}

async fn ping_answers_and_close_refuses_later_calls(s: Subject) {
    s.store.ping().await.expect("ping");
    s.store.close().await;
    match s.store.put(&message("late"), 0).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("a closed store must refuse writes, got {other:?}"),
    }
}

/// Replicas on one PostgreSQL: three stores insert overlapping groups of
/// the same 300 texts at once, in opposite orders. Every text is stored
/// once, exactly one put of each is `Created`, and no group deadlocks
/// (rows go in digest order, whatever order the puts came in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_inserting_overlapping_groups_store_each_text_once() {
    let (schema, url) = testkit::postgres_schema().await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            PostgresMessageStore::connect(&url).await.expect("connect"),
        ));
    }
    let texts: Vec<String> = (0..300).map(|i| format!("replicated text {i}")).collect();
    let mut tasks = Vec::new();
    for (r, store) in stores.iter().enumerate() {
        let mut order = texts.clone();
        if r % 2 == 1 {
            order.reverse();
        }
        for text in order {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.put(&message(&text), 0).await.expect("put")
            }));
        }
    }
    let mut created = 0;
    for task in tasks {
        if task.await.expect("task") == PutOutcome::Created {
            created += 1;
        }
    }
    assert_eq!(created, 300, "each text created by exactly one put");
    let page = stores[0].page(None, limit(1000)).await.expect("page");
    assert_eq!(page.items.len(), 300);
    for store in &stores {
        store.close().await;
    }
    testkit::drop_schema(&schema).await;
}
