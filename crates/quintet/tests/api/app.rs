//! The application as a value: what `build` refuses, and where it listens.

use clap::Parser;
use quintet::app::{Application, InvalidConfig};
use quintet::cli::{Cli, Command};

use crate::support::{private_tempdir, spawn_app};

/// Builds with `flags`, expects an [`InvalidConfig`] and returns its text,
/// after checking that nothing was created in the data directory.
async fn refused(flags: &[&str]) -> String {
    let dir = private_tempdir();
    let data_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let mut command_line = vec![
        "quintet",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
    ];
    command_line.extend_from_slice(flags);
    let Command::Serve(serve) = Cli::try_parse_from(command_line)
        .expect("flags parse")
        .command
    else {
        unreachable!("parsed as serve");
    };
    let Err(error) = Application::build(*serve).await else {
        panic!("{flags:?} is refused");
    };
    let refused = error
        .downcast_ref::<InvalidConfig>()
        .unwrap_or_else(|| panic!("a refused option value, not {error:#}"));
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the data dir stays empty for {flags:?}"
    );
    refused.to_string()
}

#[tokio::test]
async fn a_refused_option_is_an_error_to_the_caller_and_nothing_is_opened() {
    let text = refused(&["--store", "mysql://app:hunter2@db/x"]).await;
    assert!(text.starts_with("invalid value for --store"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn receipts_apple_options_are_refused_before_the_queue_and_ledger_open() {
    let receipts = ["--services", "receipts"];
    for (flag, value, names) in [
        (
            "--apple-production-url",
            "ftp://buy.itunes.apple.com/verifyReceipt",
            "only http and https",
        ),
        ("--apple-sandbox-url", "not a url", "relative URL"),
        (
            "--apple-root-cert",
            "/nonexistent/AppleRootCA-G3.cer",
            "/nonexistent/AppleRootCA-G3.cer",
        ),
    ] {
        let mut flags = receipts.to_vec();
        flags.extend([flag, value]);
        let text = refused(&flags).await;
        assert!(
            text.starts_with(&format!("invalid value for {flag}")),
            "{text}"
        );
        assert!(text.contains(names), "{text}");
    }
}

#[tokio::test]
async fn port_0_is_bound_to_a_free_port_that_answers() {
    let app = spawn_app(&["--services", "messages"]).await;
    assert_ne!(app.addr.port(), 0);
    assert_eq!(app.url, format!("http://{}", app.addr));
    let health = app
        .client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("GET /healthz");
    assert!(health.status().is_success());
}
