//! Builds the application in-process on port 0, on the test's own runtime.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use quintet::app::Application;
use quintet::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;

pub(crate) use crate::common::{http, private_tempdir, read_to_close, sha256_hex};

/// A running application, stopped (and its data directory removed) when
/// dropped.
pub(crate) struct TestApp {
    pub url: String,
    pub addr: SocketAddr,
    /// A client for the application's URL (30 s timeout).
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// Builds the application as `quintet serve --addr 127.0.0.1:0` with a
/// fresh owner-only data directory and the given extra flags, and serves it
/// on a task of the current runtime.
pub(crate) async fn spawn_app(args: &[&str]) -> TestApp {
    let dir = private_tempdir();
    let data_dir = dir.path().to_path_buf();
    let mut command_line = vec!["quintet", "serve", "--addr", "127.0.0.1:0", "--data-dir"];
    command_line.push(data_dir.to_str().expect("a UTF-8 temporary path"));
    command_line.extend_from_slice(args);
    let Command::Serve(serve) = Cli::try_parse_from(command_line)
        .expect("valid serve flags")
        .command
    else {
        unreachable!("parsed as serve");
    };
    let app = Application::build(*serve)
        .await
        .expect("the application builds");
    let (url, addr) = (app.url(), app.addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        url,
        addr,
        client: http(),
        data_dir,
        shutdown,
        _dir: dir,
    }
}

impl TestApp {
    /// `GET` of `path` (e.g. `/kv/k`) on the application.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    /// `DELETE` of `path` on the application.
    pub(crate) async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(self.client.delete(format!("{}{path}", self.url)))
            .await
    }

    /// `POST` of `body` as JSON to `path` on the application.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        request.send().await.expect("the application answers")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
