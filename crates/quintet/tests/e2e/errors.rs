//! What a user sees when something is wrong at start: one line on stderr
//! naming the thing at fault and what to do, the right exit code (2 for a
//! configuration mistake, with `quintet serve`'s usage; 1 for an engine that
//! cannot be reached), and nothing created before a mistake is found.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use testkit::moto::{moto_endpoint, unique_name};

use crate::support::{BIN, MOTO_AWS_ENV, Start, TestServer, free_port};

/// `quintet serve` in `data_dir` with `args` (on a free port unless they name one).
fn serve(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(["serve", "--log-format", "json"]);
    if !args.contains(&"--addr") {
        command.args(["--addr", "127.0.0.1:0"]);
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("QUINTET_LOG")
        .env_remove("PORT");
    command
}

/// Stdout, stderr and the exit code of a finished run.
fn outcome(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The environment of a machine with no AWS credentials anywhere (and no
/// waiting on instance metadata, which is not on this machine either).
fn without_aws_credentials(command: &mut Command) -> &mut Command {
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        command.env_remove(name);
    }
    command
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
}

#[test]
fn aws_without_credentials_says_none_were_found_and_where_they_are_looked_for() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let provider = format!("aws-kms://alias/x?endpoint={endpoint}");
    let table = format!("dynamodb://items?endpoint={endpoint}");
    let queue = format!("sqs://?endpoint={endpoint}");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--services", "kv", "--kv-key-provider", &provider],
            "--kv-key-provider",
        ),
        (&["--services", "kv", "--kv-store", &table], "--kv-store"),
        (
            &["--services", "receipts", "--receipts-queue", &queue],
            "--receipts-queue",
        ),
    ];
    for (args, option) in cases {
        let dir = crate::support::private_tempdir();
        let out =
            without_aws_credentials(serve(dir.path(), args).args(["--kv-tcp-addr", "127.0.0.1:0"]))
                .output()
                .expect("run");
        let (code, stdout, stderr) = outcome(&out);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(option), "names {option}: {stderr}");
        assert!(stderr.contains("no AWS credentials found"), "{stderr}");
        for place in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "~/.aws/credentials",
            "web identity",
            "ECS or EC2 instance metadata",
        ] {
            assert!(stderr.contains(place), "says where: {place}: {stderr}");
        }
        // No SDK dump of the instance-metadata lookup, on stderr or in the log.
        assert!(!stderr.contains("IMDS"), "{stderr}");
        assert!(!stdout.contains("IMDS"), "{stdout}");
    }
}

#[test]
fn unreachable_postgres_is_named_by_host_port_and_option_never_by_password() {
    let url = format!("postgres://app:hunter2@127.0.0.1:{}/db", free_port());
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--store", &url], "--store", "QUINTET_STORE"),
        (
            &["--services", "kv", "--kv-store", &url],
            "--kv-store",
            "QUINTET_KV_STORE",
        ),
        (
            &["--services", "receipts", "--receipts-ledger", &url],
            "--receipts-ledger",
            "QUINTET_RECEIPTS_LEDGER",
        ),
        (
            &["--services", "calc", "--calc-events", &url],
            "--calc-events",
            "QUINTET_CALC_EVENTS",
        ),
    ];
    let host_port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port");
    // Each waits out the connect timeout: run them side by side.
    let dirs: Vec<_> = cases
        .iter()
        .map(|_| crate::support::private_tempdir())
        .collect();
    let children: Vec<_> = cases
        .iter()
        .zip(&dirs)
        .map(|((args, _, _), dir)| {
            serve(dir.path(), args)
                .args(["--kv-tcp-addr", "127.0.0.1:0"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for ((args, option, env), child) in cases.iter().zip(children) {
        let out = child.wait_with_output().expect("run");
        let (code, stdout, stderr) = outcome(&out);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot reach PostgreSQL at {host_port}")),
            "{stderr}"
        );
        assert!(stderr.contains(option) && stderr.contains(env), "{stderr}");
        assert!(stderr.contains("is it running there"), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!stdout.contains("hunter2"), "{stdout}");
    }
}

#[test]
fn configuration_mistakes_exit_2_with_the_serve_usage_before_anything_opens() {
    let cases: [(&[&str], &str); 9] = [
        (
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            "--tls-cert",
        ),
        (
            &["--services", "kv", "--kv-key-provider", "aws-kmz://x"],
            "--kv-key-provider",
        ),
        (&["--store", "postgres://app:hunter2@db:port/x"], "--store"),
        (&["--store", "mysql://app:hunter2@db/x"], "--store"),
        (
            &[
                "--services",
                "kv",
                "--kv-store",
                "dynamodb://x?endpoint=ftp://h",
            ],
            "--kv-store",
        ),
        (
            &["--services", "kv", "--kv-store", "dynamodb://a"],
            "--kv-store",
        ),
        (
            &[
                "--services",
                "receipts",
                "--receipts-queue",
                "kafka://broker",
            ],
            "--receipts-queue",
        ),
        (
            &[
                "--services",
                "calc",
                "--calc-events",
                "nats://app:hunter2@h:42x",
            ],
            "--calc-events",
        ),
        (
            &["--services", "calc", "--calc-events", "nat://h:4222"],
            "--calc-events",
        ),
    ];
    for (args, option) in cases {
        let dir = crate::support::private_tempdir();
        let out = serve(dir.path(), args).output().expect("run");
        let (code, _, stderr) = outcome(&out);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: invalid value for {option}")),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("Usage: quintet serve [OPTIONS]"),
            "the usage of the command run: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "{args:?}: the data dir stays empty"
        );
    }
}

#[test]
fn a_taken_port_is_reported_once_naming_the_address_and_the_option() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let cases: [(&[&str], &str); 2] = [
        (&["--addr", &addr], "--addr"),
        (
            &["--services", "kv", "--kv-tcp-addr", &addr],
            "--kv-tcp-addr",
        ),
    ];
    for (args, option) in cases {
        let dir = crate::support::private_tempdir();
        let out = serve(dir.path(), args).output().expect("run");
        let (code, stdout, stderr) = outcome(&out);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr}")),
            "{stderr}"
        );
        assert!(stderr.contains(option), "{stderr}");
        assert!(
            stderr.contains("another process is listening there"),
            "{stderr}"
        );
        let said = stdout.matches(&addr).count() + stderr.matches(&addr).count();
        assert_eq!(said, 1, "printed once:\n{stdout}\n{stderr}");
    }
}

#[tokio::test]
async fn the_listening_line_names_the_services_and_where_each_keeps_its_data() {
    let endpoint = moto_endpoint().await;
    let table = unique_name("listening");
    let kv_store = format!("dynamodb://{table}?endpoint={endpoint}&create=true");
    let server = TestServer::launch(Start {
        args: vec![
            "--services",
            "calc,messages,kv,receipts",
            "--kv-tcp-addr",
            "127.0.0.1:0",
            "--kv-store",
            &kv_store,
            "--calc-events",
            "none",
        ],
        env: MOTO_AWS_ENV.to_vec(),
        data_dir: None,
    });
    assert_eq!(
        server.log_field("listening", "services").as_deref(),
        Some("calc,messages,kv,receipts")
    );
    let stores = server.log_field("listening", "stores").expect("stores");
    for kept in [
        "messages: embedded (data dir)",
        &format!("kv: dynamodb (table {table})"),
        "receipts queue: redb",
        "receipts ledger: embedded (data dir)",
        "calc events: none",
    ] {
        assert!(stores.contains(kept), "{kept} in {stores}");
    }
    assert!(server.stop().success());
}
