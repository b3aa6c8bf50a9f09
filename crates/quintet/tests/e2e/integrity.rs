//! Stored-record integrity end to end: data written through the real
//! server, then, while it is stopped, bytes flipped inside the counters'
//! redb file (redb 2.x checks no page checksum on a read) and messages and
//! kv records rewritten through fjall's own API (fjall checksums its journal and blocks, so a
//! flipped byte there fails the open or the read: what passes those checks
//! and must still be caught is a record some other writer put under the
//! wrong key or altered), then the restarted server and `quintet verify`
//! are asked what they see.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Start, TestServer, cli, get_json, http, private_tempdir, sha256_hex};

/// Flips one bit at `offset` (from the start of `needle`) in every
/// occurrence of `needle` in the file; returns how many it flipped. Every
/// occurrence: copy on write leaves stale copies of a page in the file, and
/// only the live one matters.
fn flip_in_file(path: &Path, needle: &[u8], offset: usize) -> usize {
    let mut bytes = std::fs::read(path).expect("read store file");
    let mut count = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + at)
    {
        bytes[found + offset] ^= 0x01;
        count += 1;
        at = found + needle.len();
    }
    std::fs::write(path, bytes).expect("write store file");
    count
}

/// Rewrites the message stored under `digest` in the fjall store of
/// `data_dir` as a foreign writer would: `edit` changes its key or its body
/// (the value is seq · `created_at` · body, 16 bytes before the body).
fn rewrite_message(data_dir: &Path, digest: &[u8], edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
    let db = fjall::Database::builder(data_dir.join("messages.fjall"))
        .open()
        .expect("open the message store");
    let messages = db
        .keyspace("messages", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let value = messages.get(digest).expect("get").expect("stored");
    let (mut key, mut body) = (digest.to_vec(), value[16..].to_vec());
    edit(&mut key, &mut body);
    let mut rewritten = value[..16].to_vec();
    rewritten.extend_from_slice(&body);
    let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncData));
    batch.remove(&messages, digest);
    batch.insert(&messages, key, rewritten);
    batch.commit().expect("commit");
}

/// Moves the kv record stored under `from` to `to` in the fjall store of
/// `data_dir`, bytes unchanged, as a foreign writer would.
fn move_kv_record(data_dir: &Path, from: &str, to: &str) {
    let db = fjall::Database::builder(data_dir.join("kv.fjall"))
        .open()
        .expect("open the kv store");
    let items = db
        .keyspace("kv_items", || {
            fjall::KeyspaceCreateOptions::default()
                .with_kv_separation(Some(fjall::KvSeparationOptions::default()))
        })
        .expect("keyspace");
    let value = items.get(from).expect("get").expect("stored");
    let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncData));
    batch.remove(&items, from);
    batch.insert(&items, to, value);
    batch.commit().expect("commit");
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn start(dir: &Path) -> TestServer {
    TestServer::launch(Start {
        args: vec![
            "--services",
            "messages,counters,kv",
            "--kv-tcp-addr",
            "127.0.0.1:0",
        ],
        data_dir: Some(dir),
        ..Start::default()
    })
}

#[tokio::test]
async fn flipped_bytes_are_refused_named_skipped_in_listings_found_and_quarantined_by_verify() {
    let dir = crate::support::private_tempdir();
    let client = http();
    let server = start(dir.path());
    let url = server.url.clone();
    for text in [
        "good message one",
        "victim body bytes 0123456789",
        "moved message text",
    ] {
        let status = client
            .post(format!("{url}/messages"))
            .json(&json!({ "message": text }))
            .send()
            .await
            .expect("post")
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    // A distinctive total, so its stored bytes can be found in the file.
    for (key, value) in [("hits", 5i64), ("victim", 7_777_777_777)] {
        let status = client
            .post(format!("{url}/increment"))
            .json(&json!({ "key": key, "value": value }))
            .send()
            .await
            .expect("increment")
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    for (key, value) in [("vault/secret-q", "hidden value"), ("vault/kept", "stays")] {
        let status = client
            .put(format!("{url}/kv/{key}"))
            .body(value)
            .send()
            .await
            .expect("put")
            .status();
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // A clean stop flushes the counters.
    assert!(server.stop().success());

    let (code, out, _) = cli(
        &["verify", "--data-dir", dir.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(code, 0, "a fresh store is clean: {out}");

    // messages: one body altered, one key (digest) altered.
    let victim_bytes = hex_bytes(&sha256_hex("victim body bytes 0123456789"));
    rewrite_message(dir.path(), &victim_bytes, |_, body| body[3] ^= 0x01);
    let moved = sha256_hex("moved message text");
    rewrite_message(dir.path(), &hex_bytes(&moved), |key, _| key[31] ^= 0x01);
    // counters: the victim's stored total, `format 1 | total LE`.
    let mut total = vec![1u8];
    total.extend_from_slice(&7_777_777_777i64.to_le_bytes());
    assert!(flip_in_file(&dir.path().join("counters.redb"), &total, 2) > 0);
    // kv: the record moved under another key, one it was not sealed for.
    move_kv_record(dir.path(), "vault/secret-q", "vault/secret-p");

    let server = start(dir.path());
    let url = server.url.clone();

    // A wrong total is never served.
    let response = client
        .get(format!("{url}/counters/victim"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.expect("json");
    let error = body["error"].as_str().expect("error text");
    assert!(
        error.contains("'victim'") && error.contains("quintet verify"),
        "{error}"
    );
    let response = client
        .post(format!("{url}/increment"))
        .json(&json!({ "key": "victim", "value": 1 }))
        .send()
        .await
        .expect("increment");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let counters: Value = get_json(&format!("{url}/counters")).await;
    assert_eq!(counters["items"], json!([{ "key": "hits", "value": 5 }]));
    assert_eq!(counters["corrupt"], json!(["victim"]));

    // An altered message is a 500 naming its digest, not a 404.
    let victim = sha256_hex("victim body bytes 0123456789");
    let response = client
        .get(format!("{url}/messages/{victim}"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.expect("json");
    let error = body["error"].as_str().expect("error text");
    assert!(
        error.contains(&victim) && error.contains("quintet verify"),
        "{error}"
    );
    // The moved record is honestly not under its digest any more.
    let response = client
        .get(format!("{url}/messages/{moved}"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The listing serves the good message and names both bad ones.
    let page: Value = get_json(&format!("{url}/messages")).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["message"], "good message one");
    let corrupt = page["corrupt"].as_array().expect("corrupt");
    assert_eq!(corrupt.len(), 2, "{page}");
    assert!(corrupt.contains(&json!(victim)), "{page}");

    // kv: the record under the altered key fails authentication: 500, not
    // its plaintext and not a 404.
    let response = client
        .get(format!("{url}/kv/vault/secret-p"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.expect("json");
    let error = body["error"].as_str().expect("error text");
    assert!(
        error.contains("vault/secret-p") && error.contains("quintet verify"),
        "{error}"
    );

    let metrics = server.metrics().await;
    for name in [
        "quintet_messages_corrupt_records_total",
        "quintet_counters_corrupt_records_total",
        "quintet_kv_corrupt_records_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // verify refuses stores a running server holds, and says so.
    let data_dir = dir.path().to_str().expect("utf-8");
    let (code, out, err) = cli(&["verify", "--data-dir", data_dir], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("stop the quintet server"), "{err}");
    assert!(server.stop().success());

    let (code, out, err) = cli(&["verify", "--data-dir", data_dir], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("CORRUPT messages table=messages key={victim}")),
        "{out}"
    );
    assert!(
        out.contains("CORRUPT counters table=counter_totals key=victim"),
        "{out}"
    );
    // The moved record fails under its new key, and its sequence entry
    // names a digest that is not stored any more.
    assert_eq!(out.matches("CORRUPT messages").count(), 3, "{out}");
    assert!(
        out.contains("CORRUPT messages table=messages_by_seq key=3"),
        "{out}"
    );
    // kv: the record moved under another key is found by verify too (its
    // value is authenticated with the server's keys), the intact one is not.
    assert!(
        out.contains("CORRUPT kv table=kv_items key=vault/secret-p")
            && out.contains("fails authentication"),
        "{out}"
    );
    assert_eq!(out.matches("CORRUPT kv").count(), 1, "{out}");
    assert!(err.contains("records"), "progress on stderr: {err}");

    let (code, out, _) = cli(&["verify", "--data-dir", data_dir, "--quarantine"], None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("quarantined"), "{out}");
    let (code, out, _) = cli(&["verify", "--data-dir", data_dir], None);
    assert_eq!(
        code, 0,
        "quarantined records are gone from the tables: {out}"
    );

    let server = start(dir.path());
    let url = server.url.clone();
    for path in [
        format!("/messages/{victim}"),
        "/counters/victim".to_owned(),
        "/kv/vault/secret-p".to_owned(),
    ] {
        let status = client
            .get(format!("{url}{path}"))
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} after quarantine");
    }
    let page: Value = get_json(&format!("{url}/messages")).await;
    assert!(page.get("corrupt").is_none(), "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let kept = client
        .get(format!("{url}/kv/vault/kept"))
        .send()
        .await
        .expect("get");
    assert_eq!(kept.text().await.expect("text"), "stays");
    assert!(server.stop().success());

    // With keys that are not the server's, verify says so and condemns nothing.
    let (code, out, err) = cli(
        &[
            "verify",
            "--data-dir",
            data_dir,
            "--services",
            "kv",
            "--kv-namespace",
            "another",
            "--quarantine",
        ],
        None,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("none of the") && err.contains("nothing was quarantined"),
        "{err}"
    );
    let (code, out, err) = cli(
        &["verify", "--data-dir", data_dir, "--services", "kv"],
        None,
    );
    assert_eq!(
        code, 0,
        "the intact record is still there and authentic: {out}{err}"
    );
}

#[test]
fn a_refused_kv_option_exits_2_with_verify_usage_before_any_store_is_scanned() {
    let dir = private_tempdir();
    let data_dir = dir.path().to_str().expect("utf-8");
    // A messages store that would be scanned (and reported) first.
    std::fs::create_dir(dir.path().join("messages.fjall")).expect("a store directory");
    let (code, out, err) = cli(
        &[
            "verify",
            "--data-dir",
            data_dir,
            "--kv-key-provider",
            "vault://secret/kv",
        ],
        None,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--kv-key-provider"), "{err}");
    assert!(err.contains("Usage: quintet verify"), "{err}");
    assert!(out.is_empty(), "nothing scanned: {out}");
}
