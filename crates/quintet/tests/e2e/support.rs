//! Starts the real `quintet` binary on port 0 and talks to it like a user would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_quintet");

/// Credentials for moto (it accepts any), given the way the AWS SDK's standard chain reads them.
pub(crate) const MOTO_AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

/// A running `quintet serve` child process.
pub(crate) struct TestServer {
    child: Child,
    pub url: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Options for one server start.
#[derive(Default)]
pub(crate) struct Start<'a> {
    pub args: Vec<&'a str>,
    pub env: Vec<(&'a str, &'a str)>,
    pub data_dir: Option<&'a Path>,
}

impl TestServer {
    /// The server's Prometheus text from `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        http()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Starts a server with a fresh data directory and the given extra flags.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::launch(Start {
            args: args.to_vec(),
            ..Start::default()
        })
    }

    pub(crate) fn launch(opts: Start<'_>) -> Self {
        let tmp = match opts.data_dir {
            Some(_) => None,
            None => Some(private_tempdir()),
        };
        let data_dir = opts.data_dir.map_or_else(
            || tmp.as_ref().expect("tempdir").path().to_path_buf(),
            Path::to_path_buf,
        );
        // The server refuses a data directory group or others can reach (as
        // an operator would, the harness makes its directories owner-only).
        #[cfg(unix)]
        if data_dir.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .expect("chmod 700 the data directory");
        }
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(opts.args)
            .env_remove("PORT")
            .env("QUINTET_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in opts.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn quintet");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let url = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .filter(|v| v["message"] == "listening")
                        .and_then(|v| v["url"].as_str().map(str::to_owned));
                    // Kept before the URL is handed over, so the listening
                    // line is in `logs()` once `launch` returns.
                    logs.lock().expect("logs").push(line);
                    if let Some(url) = url {
                        let _ = tx.send(url);
                    }
                }
            });
        }
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "server did not report listening; output:\n{}",
                logs.lock().expect("logs").join("\n")
            );
        };
        let addr = url
            .rsplit("://")
            .next()
            .expect("url")
            .parse()
            .expect("addr in url");
        Self {
            child,
            url,
            addr,
            data_dir,
            logs,
            _tmp: tmp,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server printed so far.
    pub(crate) fn logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// A field of the first JSON log line whose message is `message`.
    pub(crate) fn log_field(&self, message: &str, field: &str) -> Option<String> {
        self.logs.lock().expect("logs").iter().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["message"] == message).then(|| v[field].as_str().map(str::to_owned))?
        })
    }

    /// Sends SIGTERM.
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "server still running after {limit:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn stop(mut self) -> ExitStatus {
        self.sigterm();
        self.wait(Duration::from_secs(30))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident set in KiB, from /proc.
pub(crate) fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Runs the CLI and returns (exit code, stdout, stderr).
pub(crate) fn cli(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("QUINTET_URL")
        .env_remove("QUINTET_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cli");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) use crate::common::{http, private_tempdir, read_to_close, sha256_hex};
/// GETs `url` and reads its JSON answer, whatever its status.
pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

pub(crate) use testkit::{drop_schema, postgres_schema, postgres_url};

/// A TCP proxy to `PostgreSQL` that a test can take down (refusing new
/// connections and cutting open ones) and bring back, to stage an outage.
pub(crate) struct PgProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub(crate) async fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let target = postgres_url()
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_owned();
        let task = {
            let (up, cut) = (up.clone(), cut.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the connection is closed at once
                    }
                    let (target, cut) = (target.clone(), cut.clone());
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            () = cut.notified() => {}
                        }
                    });
                }
            })
        };
        Self {
            port,
            up,
            cut,
            task,
        }
    }

    /// The store URL through the proxy, into `schema`.
    pub(crate) fn url(&self, schema: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/test?options[search_path]={schema}",
            self.port
        )
    }

    pub(crate) fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub(crate) fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on (bound, then released): where a
/// dependency that is down "runs".
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
