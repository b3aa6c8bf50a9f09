//! `quintet copy`: a data directory a server wrote (and died on, with
//! counters still in its journal) copied into `PostgreSQL`; a server on
//! `PostgreSQL` then serves every message in its order, every counter's
//! total and every kv value. A rerun writes nothing; a target written by
//! something else is reported record by record with exit code 1.

use serde_json::Value;

use crate::support::{
    Start, TestServer, cli, drop_schema, get_json, postgres_schema, private_tempdir,
};

fn run(args: &[&str]) -> (i32, String, String) {
    cli(args, None)
}

/// Every message (digest, text, time), oldest first, through the CLI.
fn listed(url: &str) -> Vec<Value> {
    let (code, out, err) = run(&["messages", "list", "--limit", "1000", "--url", url]);
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("json");
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list of messages: {out}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_data_dir_copied_into_postgres_serves_every_record_and_a_rerun_writes_nothing()
{
    let dir = private_tempdir();
    let data_dir = dir.path().to_str().expect("utf-8").to_owned();
    let big = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../kv/tests/fixtures/big_content_value.txt"
    ))
    .expect("the > 4 KB fixture");
    let services = ["--services", "messages,counters,kv"];

    // The embedded server: messages, counters (flushed and then not), kv.
    let server = TestServer::launch(Start {
        args: services.to_vec(),
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let texts: Vec<String> = (0..300)
        .map(|i| format!("message {i} before the move"))
        .collect();
    for text in &texts {
        let (code, _, err) = run(&["messages", "post", text, "--url", &server.url]);
        assert_eq!(code, 0, "{err}");
    }
    for key in ["page-views", "signups"] {
        for _ in 0..5 {
            let (code, _, err) = run(&["counters", "incr", key, "3", "--url", &server.url]);
            assert_eq!(code, 0, "{err}");
        }
    }
    let kv_values = [("small", "v1".to_owned()), ("big", big.clone())];
    for (key, value) in &kv_values {
        let (code, _, err) = run(&["kv", "set", key, value, "--url", &server.url]);
        assert_eq!(code, 0, "{err}");
    }
    // The last increments are acknowledged from the journal only: the
    // crash leaves them for the copy to replay.
    let (code, _, err) = run(&["counters", "incr", "signups", "100", "--url", &server.url]);
    assert_eq!(code, 0, "{err}");
    let before = listed(&server.url);
    assert_eq!(before.len(), texts.len());
    server.kill9();

    let (schema, store) = postgres_schema().await;
    let (code, out, err) = run(&["copy", "--data-dir", &data_dir, "--to", &store]);
    assert_eq!(code, 0, "copy: {out}\n{err}");
    assert!(
        out.contains("messages: 300 record(s)")
            && out.contains("300 written by this run, 300 verified"),
        "{out}"
    );
    assert!(
        out.contains("kv: 2 record(s)") && out.contains("2 verified"),
        "{out}"
    );
    assert!(out.contains("counters: 2 record(s)"), "{out}");
    assert!(
        err.contains("messages:") && err.contains("(100%)"),
        "progress shown: {err}"
    );
    assert!(
        !out.contains(&store) && !err.contains(&store),
        "the URL is never printed"
    );

    // Rerun: every record verified again, none written.
    let (code, again, err) = run(&["copy", "--data-dir", &data_dir, "--to", &store]);
    assert_eq!(code, 0, "rerun: {again}\n{err}");
    assert_eq!(again.matches("0 written by this run").count(), 3, "{again}");

    // A server on PostgreSQL, with the same kv master keys, serves it all.
    let keys = format!("local://{data_dir}/kv-keys");
    let fleet = TestServer::start(&[
        "--services",
        "messages,counters,kv",
        "--store",
        &store,
        "--kv-key-provider",
        &keys,
    ]);
    assert_eq!(
        listed(&fleet.url),
        before,
        "every message, with its digest and time, in its order"
    );
    let page_views = get_json(&format!("{}/counters/page-views", fleet.url)).await;
    let signups = get_json(&format!("{}/counters/signups", fleet.url)).await;
    assert_eq!(page_views["value"], 15, "{page_views}");
    assert_eq!(signups["value"], 115, "journal replayed: {signups}");
    for (key, value) in &kv_values {
        let (code, out, err) = run(&["kv", "get", key, "--url", &fleet.url]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(&out, value, "kv {key} opens to the same bytes");
    }

    // The fleet moves on; a late rerun names what no longer matches.
    let (code, _, err) = run(&["counters", "incr", "signups", "1", "--url", &fleet.url]);
    assert_eq!(code, 0, "{err}");
    assert!(fleet.stop().success(), "a clean stop flushes the increment");
    let (code, late, err) = run(&["copy", "--data-dir", &data_dir, "--to", &store]);
    assert_eq!(code, 1, "differences are exit code 1: {late}\n{err}");
    assert!(
        late.contains("counters: 1 record(s) differ")
            && late.contains("signups is 116 in PostgreSQL, 115 here"),
        "{late}"
    );
    drop_schema(&schema).await;
}

#[test]
fn a_target_that_is_not_postgres_is_refused_without_echoing_it() {
    let (code, out, err) = run(&[
        "copy",
        "--data-dir",
        "/nonexistent",
        "--to",
        "mysql://root:hunter2@127.0.0.1/db",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--to must be a PostgreSQL URL"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is never printed: {err}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_exit_code_2_and_names_what_failed() {
    let dir = private_tempdir();
    let data_dir = dir.path().to_str().expect("utf-8").to_owned();
    let server = TestServer::launch(Start {
        args: vec!["--services", "messages"],
        data_dir: Some(dir.path()),
        ..Start::default()
    });
    let (code, _, err) = run(&["messages", "post", "one", "--url", &server.url]);
    assert_eq!(code, 0, "{err}");
    assert!(server.stop().success());
    let (code, out, err) = run(&[
        "copy",
        "--data-dir",
        &data_dir,
        "--services",
        "messages",
        "--to",
        "postgres://postgres:hunter2@127.0.0.1:1/test",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("messages: connect to PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
