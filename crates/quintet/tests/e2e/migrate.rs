//! A data directory the redb engine wrote, opened by today's binary: the
//! message store moves to fjall, by `quintet migrate` (interrupted by
//! kill -9 and resumed) or by the server on start, and every message is
//! there and verifies afterwards. The old store is written by the redb
//! adapter the previous release served from.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use messages::adapters::redb::RedbMessageStore;
use messages::domain::Message;
use messages::ports::MessageStore;
use reqwest::StatusCode;

use crate::support::{BIN, Start, TestServer, cli, http, private_tempdir, sha256_hex};

fn text(i: usize) -> String {
    format!("message number {i} from the redb days")
}

/// Writes `count` messages into `<dir>/messages.redb` as the previous
/// release did (many puts in flight, committed in groups). The first is
/// written alone, so it is first in the order whatever the others' arrival.
async fn old_store(dir: &Path, count: usize) {
    let store = Arc::new(RedbMessageStore::open(&dir.join("messages.redb")).expect("open redb"));
    let first = Message::new(text(0), 1024).expect("valid");
    store.put(&first, 1_700_000_000_000).await.expect("put");
    for start in (1..count).step_by(2_000) {
        let puts: Vec<_> = (start..(start + 2_000).min(count))
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let m = Message::new(text(i), 1024).expect("valid");
                    store.put(&m, 1_700_000_000_000).await.expect("put");
                })
            })
            .collect();
        for put in puts {
            put.await.expect("task");
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_midway_resumes_and_all_100000_messages_verify() {
    const COUNT: usize = 100_000;
    let dir = private_tempdir();
    old_store(dir.path(), COUNT).await;
    let data_dir = dir.path().to_str().expect("utf-8");

    // kill -9 as soon as the first tenth is reported copied.
    let mut child = Command::new(BIN)
        .args(["migrate", "--data-dir", data_dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migrate");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines
        .next()
        .expect("a progress line before the end")
        .expect("read");
    assert!(first.starts_with("messages: 10000/100000"), "{first}");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(
        status.code().is_none(),
        "migrate finished before the kill landed; the resume was not exercised"
    );
    assert!(
        dir.path().join("messages.redb").exists(),
        "the old file stays until the copy is verified"
    );

    let (code, out, err) = cli(&["migrate", "--data-dir", data_dir], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("messages: 100000 record(s) in"), "{out}");
    assert!(out.contains("100000 verified"), "{out}");
    let copied: usize = out
        .split(", ")
        .find_map(|part| part.strip_suffix(" copied by this run"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no copied count in {out}"));
    assert!(
        copied < COUNT,
        "the second run resumed: it copied {copied} of {COUNT}"
    );
    assert!(!dir.path().join("messages.redb").exists());
    assert!(dir.path().join("messages.redb.migrated").exists());

    // Nothing left to do; every record checks out.
    let (code, out, _) = cli(&["migrate", "--data-dir", data_dir], None);
    assert_eq!(code, 0);
    assert!(out.contains("messages: nothing to migrate"), "{out}");
    let (code, out, err) = cli(
        &["verify", "--data-dir", data_dir, "--services", "messages"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{} record(s) scanned", 2 * COUNT)),
        "every message and its order entry: {out}"
    );

    // The server serves them, in their old order, and goes on after them.
    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let client = http();
    for i in (0..COUNT).step_by(997) {
        let response = client
            .get(format!("{}/messages/{}", server.url, sha256_hex(&text(i))))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK, "message {i}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["message"], text(i));
    }
    let page: serde_json::Value = client
        .get(format!("{}/messages?limit=3", server.url))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    assert_eq!(page["items"][0]["message"], text(0), "{page}");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_migrates_an_old_store_on_start_and_says_so() {
    let dir = private_tempdir();
    old_store(dir.path(), 3_000).await;
    let server = TestServer::launch(Start {
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let logs = server.logs();
    let done = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "store migrated and verified")
        .unwrap_or_else(|| panic!("no migration line in {logs}"));
    assert_eq!(done["verified"], 3_000, "{done}");
    assert_eq!(done["copied"], 3_000, "{done}");
    let client = http();
    for i in [0, 1_500, 2_999] {
        let response = client
            .get(format!("{}/messages/{}", server.url, sha256_hex(&text(i))))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK, "message {i}");
    }
    assert!(server.stop().success());
    assert!(dir.path().join("messages.redb.migrated").exists());
}

/// A kv store the previous release wrote: records sealed by the vault with
/// the local key provider of `<dir>/kv-keys`, in `<dir>/kv.redb`.
async fn old_kv_store(dir: &Path, count: usize) {
    use kv::adapters::local_keys::LocalKeyProvider;
    use kv::adapters::redb::RedbKvStore;
    use kv::domain::{KvKey, Namespace};
    use kv::engine::vault::{CacheLimits, Vault};
    use kv::ports::KvStore;

    let store = Arc::new(RedbKvStore::open(&dir.join("kv.redb")).expect("open redb"));
    let provider = Arc::new(LocalKeyProvider::open_dir(&dir.join("kv-keys")).expect("keys"));
    let vault = Vault::new(
        store.clone(),
        provider,
        Namespace::new("default").expect("namespace"),
        1 << 20,
        CacheLimits {
            max_age: std::time::Duration::from_mins(5),
            max_uses: 100_000,
            max_bytes: 1 << 30,
            max_entries: 100,
        },
    );
    for i in 0..count {
        let key = KvKey::new(format!("users/{i:05}")).expect("key");
        vault
            .set(&key, format!("value {i}").as_bytes())
            .await
            .expect("set");
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_kv_store_migrates_on_start_and_every_value_opens() {
    let dir = private_tempdir();
    old_kv_store(dir.path(), 500).await;
    let server = TestServer::launch(Start {
        args: vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"],
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let logs = server.logs();
    let done = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "store migrated and verified" && line["store"] == "kv")
        .unwrap_or_else(|| panic!("no kv migration line in {logs}"));
    assert_eq!(done["verified"], 500, "{done}");
    let client = http();
    for i in 0..500 {
        let response = client
            .get(format!("{}/kv/users/{i:05}", server.url))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::OK, "key {i}");
        assert_eq!(response.text().await.expect("body"), format!("value {i}"));
    }
    assert!(server.stop().success());
    assert!(dir.path().join("kv.redb.migrated").exists());
    let data_dir = dir.path().to_str().expect("utf-8");
    let (code, out, err) = cli(
        &["verify", "--data-dir", data_dir, "--services", "kv"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("500 record(s) scanned"), "{out}");
}
