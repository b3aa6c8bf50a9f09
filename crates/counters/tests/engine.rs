//! The write-behind engine on a real redb store: crash replay, exactly-once
//! flushes and the limits. A "crash" here is dropping the engine without its
//! final flush; `kill -9` of the whole server is in the end-to-end tests.
// A failed expectation is the test failing: tests may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use counters::adapters::redb::RedbCounterStore;
use counters::domain::CounterKey;
use counters::engine::{Durability, Engine, EngineConfig, EngineError};
use counters::ports::CounterStore;
use tokio_util::sync::CancellationToken;

fn config(durability: Durability) -> EngineConfig {
    EngineConfig {
        durability,
        flush_interval: Duration::from_hours(1),
        flush_max_keys: 1_000_000,
        max_pending_keys: 1_000_000,
        max_cached_keys: 1_000_000,
    }
}

fn key(s: &str) -> CounterKey {
    CounterKey::parse(s.to_owned(), 256).expect("key")
}

/// Runs the flusher's final flush and waits for it.
async fn flush(engine: &Arc<Engine>) {
    let stop = CancellationToken::new();
    stop.cancel();
    engine.clone().run_flusher(stop).await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

#[tokio::test]
async fn journaled_increments_survive_a_crash_before_any_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("open");
    assert_eq!(engine.increment(key("a"), 5).await.expect("incr"), 5);
    assert_eq!(engine.increment(key("a"), -2).await.expect("incr"), 3);
    assert_eq!(engine.increment(key("b"), 7).await.expect("incr"), 7);
    drop(engine); // crash: nothing flushed
    assert_eq!(store.load(&key("a")).await.expect("load"), None);

    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("reopen");
    assert_eq!(
        engine.get(&key("a")).await.expect("get"),
        3,
        "replayed into pending"
    );
    flush(&engine).await;
    assert_eq!(store.load(&key("a")).await.expect("load"), Some(3));
    assert_eq!(store.load(&key("b")).await.expect("load"), Some(7));
}

#[tokio::test]
async fn a_flush_whose_journal_outlived_its_commit_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("open");
    for i in 0..100 {
        engine
            .increment(key(&format!("k{}", i % 10)), 1)
            .await
            .expect("incr");
    }
    // Keep the journal as it was before the flush, as if truncation never happened.
    let journal = dir.path().join("counters-journal");
    let saved = dir.path().join("saved-journal");
    copy_dir(&journal, &saved);
    flush(&engine).await;
    drop(engine);
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::remove_dir_all(&journal).expect("rm");
    copy_dir(&saved, &journal);

    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("reopen");
    flush(&engine).await;
    for i in 0..10 {
        assert_eq!(
            store.load(&key(&format!("k{i}"))).await.expect("load"),
            Some(10),
            "k{i} counted once"
        );
    }
}

#[tokio::test]
async fn a_flush_that_cannot_reach_the_store_leaves_the_increments_in_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.redb");
    let store: Arc<dyn CounterStore> = Arc::new(RedbCounterStore::open(&path).expect("store"));
    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("open");
    engine.increment(key("x"), 1).await.expect("incr");
    store.close().await; // the store goes away
    // The final flush fails after its attempts; the increment is still counted in memory…
    flush(&engine).await;
    assert_eq!(
        engine.get(&key("x")).await.expect("pending still counted"),
        1
    );
    drop(engine);
    drop(store);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // …and in the journal, which the next start applies.
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&path).expect("store again"));
    assert_eq!(store.load(&key("x")).await.expect("load"), None);
    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Journal))
        .await
        .expect("reopen");
    flush(&engine).await;
    assert_eq!(store.load(&key("x")).await.expect("load"), Some(1));
}

#[tokio::test]
async fn memory_durability_writes_no_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let engine = Engine::open(store.clone(), dir.path(), config(Durability::Memory))
        .await
        .expect("open");
    assert_eq!(engine.increment(key("m"), 3).await.expect("incr"), 3);
    let journal_bytes: u64 = std::fs::read_dir(dir.path().join("counters-journal"))
        .expect("dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    assert_eq!(journal_bytes, 0);
    flush(&engine).await;
    assert_eq!(store.load(&key("m")).await.expect("load"), Some(3));
}

#[tokio::test]
async fn new_keys_beyond_max_pending_are_refused_but_pending_keys_still_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let mut cfg = config(Durability::Journal);
    cfg.max_pending_keys = 2;
    let engine = Engine::open(store.clone(), dir.path(), cfg)
        .await
        .expect("open");
    engine.increment(key("one"), 1).await.expect("incr");
    engine.increment(key("two"), 1).await.expect("incr");
    assert!(matches!(
        engine.increment(key("three"), 1).await,
        Err(EngineError::TooManyPending(2))
    ));
    assert_eq!(
        engine.increment(key("one"), 1).await.expect("existing key"),
        2
    );
    flush(&engine).await;
    assert_eq!(
        engine.increment(key("three"), 1).await.expect("room again"),
        1
    );
}

#[tokio::test]
async fn concurrent_increments_sum_exactly_across_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn CounterStore> =
        Arc::new(RedbCounterStore::open(&dir.path().join("c.redb")).expect("store"));
    let mut cfg = config(Durability::Journal);
    cfg.flush_interval = Duration::from_millis(20);
    let engine = Engine::open(store.clone(), dir.path(), cfg)
        .await
        .expect("open");
    let stop = CancellationToken::new();
    let flusher = tokio::spawn(engine.clone().run_flusher(stop.clone()));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                engine
                    .increment(key(&format!("c{}", (t + i) % 5)), 2)
                    .await
                    .expect("incr");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    stop.cancel();
    flusher.await.expect("flusher");
    let mut sum = 0;
    for i in 0..5 {
        sum += store
            .load(&key(&format!("c{i}")))
            .await
            .expect("load")
            .expect("present");
    }
    assert_eq!(sum, 8 * 250 * 2);
}
