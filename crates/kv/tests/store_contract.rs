//! The one contract every `KvStore` adapter must honour, run against the
//! real engines: fjall (the embedded default) and redb (the embedded engine
//! before it, still read by the migration) in a temporary directory, `PostgreSQL` and `DynamoDB` on
//! moto (see `testkit`), each test on a fresh store (`PostgreSQL`: a schema of
//! its own; `DynamoDB`: a table of its own). These tests never skip.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kv::adapters::aws::AwsSettings;
use kv::adapters::dynamodb::DynamoKvStore;
use kv::adapters::fjall::FjallKvStore;
use kv::adapters::postgres::PostgresKvStore;
use kv::adapters::redb::RedbKvStore;
use kv::domain::{KeyPrefix, KvKey, PageLimit, RecordFormat, SealedRecord, WrappedKey};
use kv::ports::{KvStore, StoreError};

struct Subject {
    store: Arc<dyn KvStore>,
    _dir: Option<tempfile::TempDir>,
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn redb() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbKvStore::open(&dir.path().join("kv.redb")).expect("open redb");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

// Every subject is made by an async constructor, awaited alike.
#[allow(clippy::unused_async)]
async fn fjall() -> Subject {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FjallKvStore::open(&dir.path().join("kv.fjall")).expect("open fjall");
    Subject {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres() -> (Subject, String) {
    let (schema, url) = testkit::postgres_schema().await;
    let store = PostgresKvStore::connect(&url)
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

async fn dynamodb() -> Subject {
    let settings = AwsSettings::moto(testkit::moto::moto_endpoint().await);
    let table = testkit::moto::unique_name("contract");
    let store = DynamoKvStore::connect(&settings, &table, true)
        .await
        .expect("table created on moto");
    Subject {
        store: Arc::new(store),
        _dir: None,
    }
}

testkit::store_contract!(
    also on_dynamodb = dynamodb, on_fjall = fjall;
    put_get_overwrite_delete,
    concurrent_writes_each_land_and_deletes_see_them,
    pages_by_prefix_with_cursor_cover_each_key_once,
    rewrap_replaces_only_the_expected_wrapped_key,
    a_closed_store_is_unavailable,
);

fn key(name: &str) -> KvKey {
    KvKey::new(name).expect("valid key")
}

fn record(id: &str, fill: u8, len: usize) -> SealedRecord {
    SealedRecord {
        format: RecordFormat::V1,
        wrapped: WrappedKey {
            key_id: id.into(),
            bytes: vec![fill; 60],
        },
        wrapped_alternates: Vec::new(),
        nonce: [fill; 12],
        ciphertext: vec![fill; len + 16],
    }
}

async fn put_get_overwrite_delete(s: Subject) {
    let store = &s.store;
    assert_eq!(store.get(&key("a")).await.expect("get"), None);
    store
        .put(&key("a"), &record("k1", 1, 0))
        .await
        .expect("put empty");
    assert_eq!(
        store.get(&key("a")).await.expect("get"),
        Some(record("k1", 1, 0))
    );
    store
        .put(&key("a"), &record("k1", 2, 5000))
        .await
        .expect("overwrite");
    assert_eq!(
        store.get(&key("a")).await.expect("get"),
        Some(record("k1", 2, 5000))
    );
    let long = "ключ".repeat(128);
    store
        .put(&key(&long), &record("k1", 3, 1))
        .await
        .expect("put long key");
    assert_eq!(
        store.get(&key(&long)).await.expect("get"),
        Some(record("k1", 3, 1))
    );
    assert!(store.delete(&key("a")).await.expect("delete"));
    assert!(!store.delete(&key("a")).await.expect("delete again"));
    assert_eq!(store.get(&key("a")).await.expect("get"), None);
}

/// Many writers at once (they share transactions on redb): every put is
/// readable once acknowledged, and a delete queued after it removes it.
async fn concurrent_writes_each_land_and_deletes_see_them(s: Subject) {
    let tasks: Vec<_> = (0..64u8)
        .map(|i| {
            let store = s.store.clone();
            tokio::spawn(async move {
                let name = key(&format!("c/{i:02}"));
                store.put(&name, &record("k", i, 10)).await.expect("put");
                assert_eq!(
                    store.get(&name).await.expect("get"),
                    Some(record("k", i, 10))
                );
                if i % 2 == 0 {
                    assert!(store.delete(&name).await.expect("delete"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    let page = s
        .store
        .page(
            &KeyPrefix::new("c/").expect("prefix"),
            None,
            PageLimit::parse(Some("1000")).expect("limit"),
        )
        .await
        .expect("page");
    let names: Vec<String> = page
        .entries
        .iter()
        .map(|e| e.key.as_str().to_owned())
        .collect();
    let expected: Vec<String> = (0..64u8)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("c/{i:02}"))
        .collect();
    assert_eq!(names, expected);
}

async fn pages_by_prefix_with_cursor_cover_each_key_once(s: Subject) {
    let store = &s.store;
    for i in 0..25 {
        store
            .put(&key(&format!("user/{i:02}")), &record("k", 1, i))
            .await
            .expect("put");
    }
    for other in ["user", "users/x", "a", "zz"] {
        store
            .put(&key(other), &record("k", 1, 1))
            .await
            .expect("put");
    }
    let prefix = KeyPrefix::new("user/").expect("prefix");
    let limit = PageLimit::parse(Some("10")).expect("limit");
    let mut seen = Vec::new();
    let mut after: Option<KvKey> = None;
    for _ in 0..10 {
        let page = store
            .page(&prefix, after.as_ref(), limit)
            .await
            .expect("page");
        assert!(page.entries.len() <= 10);
        for entry in &page.entries {
            let i: usize = entry.key.as_str()["user/".len()..].parse().expect("number");
            assert_eq!(entry.size, i as u64, "plaintext size of {}", entry.key);
        }
        seen.extend(page.entries.into_iter().map(|e| e.key.into_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen.sort();
    let expected: Vec<String> = (0..25).map(|i| format!("user/{i:02}")).collect();
    assert_eq!(seen, expected);
    let all = store
        .page(
            &KeyPrefix::default(),
            None,
            PageLimit::parse(Some("1000")).expect("limit"),
        )
        .await
        .expect("page");
    assert_eq!(all.entries.len(), 29);
    assert_eq!(all.next, None);
}

async fn rewrap_replaces_only_the_expected_wrapped_key(s: Subject) {
    let store = &s.store;
    let original = record("old", 4, 10);
    store.put(&key("r"), &original).await.expect("put");
    let new = WrappedKey {
        key_id: "new".into(),
        bytes: vec![9; 60],
    };
    let stale = WrappedKey {
        key_id: "old".into(),
        bytes: vec![5; 60],
    };
    assert!(!store.rewrap(&key("r"), &stale, &new).await.expect("stale"));
    assert!(
        !store
            .rewrap(&key("missing"), &original.wrapped, &new)
            .await
            .expect("missing")
    );
    assert!(
        store
            .rewrap(&key("r"), &original.wrapped, &new)
            .await
            .expect("rewrap")
    );
    let after = store.get(&key("r")).await.expect("get").expect("present");
    assert_eq!(after.wrapped, new);
    assert_eq!(
        (after.nonce, after.ciphertext),
        (original.nonce, original.ciphertext)
    );
}

async fn a_closed_store_is_unavailable(s: Subject) {
    s.store
        .put(&key("a"), &record("k", 1, 1))
        .await
        .expect("put");
    s.store.close().await;
    assert!(matches!(
        s.store.get(&key("a")).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.store.put(&key("a"), &record("k", 1, 1)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
}
