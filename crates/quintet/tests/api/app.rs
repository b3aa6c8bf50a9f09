//! The application as a value: what `build` refuses, and where it listens.

use clap::Parser;
use quintet::app::{Application, InvalidConfig};
use quintet::cli::{Cli, Command};

use crate::support::{private_tempdir, spawn_app};

#[tokio::test]
async fn a_refused_option_is_an_error_to_the_caller_and_nothing_is_opened() {
    let dir = private_tempdir();
    let data_dir = dir.path().to_str().expect("a UTF-8 temporary path");
    let Command::Serve(serve) = Cli::try_parse_from([
        "quintet",
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--store",
        "mysql://app:hunter2@db/x",
    ])
    .expect("flags parse")
    .command
    else {
        unreachable!("parsed as serve");
    };
    let Err(error) = Application::build(*serve).await else {
        panic!("an unknown store is refused");
    };
    let refused = error
        .downcast_ref::<InvalidConfig>()
        .expect("a refused option value");
    let text = refused.to_string();
    assert!(text.starts_with("invalid value for --store"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the data dir stays empty"
    );
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
