//! A moto server (`PyPI` `moto[server]`) for tests of the AWS adapters:
//! `DynamoDB`, KMS and SQS on one local endpoint. One server per test process,
//! started on first use on a free loopback port; tests share it and keep
//! apart by using their own table names and KMS keys.
//!
//! `QUINTET_TEST_MOTO_URL` points the tests at a server started elsewhere
//! (e.g. by `.ci/run`). Tests never skip: without moto they fail, saying how
//! to install it.
//!
//! The server dies with the test process: it is started with
//! `PR_SET_PDEATHSIG = SIGKILL` from a thread that lives as long as the
//! process (the signal follows the *thread* that forked, so not from a
//! test's own thread, which ends with the test).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// How long moto gets to start answering HTTP.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const INSTALL_HINT: &str = "install it with: pip install 'moto[server]' (moto_server must be on PATH), \
     or set QUINTET_TEST_MOTO_URL to a running moto server";

static ENDPOINT: OnceCell<String> = OnceCell::const_new();

/// The moto endpoint for this test process, e.g. `http://127.0.0.1:41234`.
/// Starts the server on first call; panics if it cannot.
pub async fn moto_endpoint() -> String {
    if let Ok(url) = std::env::var("QUINTET_TEST_MOTO_URL")
        && !url.trim().is_empty()
    {
        return url.trim().trim_end_matches('/').to_owned();
    }
    ENDPOINT.get_or_init(start).await.clone()
}

/// A name unique to this call (for tables, aliases), `prefix` first.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

enum Event {
    Spawned,
    SpawnFailed(std::io::Error),
    Exited(std::io::Result<ExitStatus>),
}

async fn start() -> String {
    let mut failures = Vec::new();
    // A port found free can be taken before moto binds it: try a few.
    for _ in 0..3 {
        match start_on(free_port()).await {
            Ok(url) => return url,
            Err(Failure::Retry(e)) => failures.push(e),
            Err(Failure::Fatal(e)) => {
                failures.push(e);
                break;
            }
        }
    }
    panic!(
        "could not start moto_server: {}\n{INSTALL_HINT}",
        failures.join("\n")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

enum Failure {
    /// Worth another port (it may have been taken meanwhile).
    Retry(String),
    Fatal(String),
}

async fn start_on(port: u16) -> Result<String, Failure> {
    // moto logs every request to stderr: into an unlinked temporary file, read
    // back only if it fails to start.
    let log_path =
        std::env::temp_dir().join(format!("quintet-moto-{}-{port}.log", std::process::id()));
    let mut log = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&log_path)
        .map_err(|e| Failure::Fatal(format!("creating {}: {e}", log_path.display())))?;
    let child_log = log.try_clone().map_err(|e| Failure::Fatal(e.to_string()))?;
    let _ = std::fs::remove_file(&log_path);

    let (events, received) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("moto-server-{port}"))
        .spawn(move || keep(port, child_log, &events))
        .map_err(|e| Failure::Fatal(format!("starting the moto keeper thread: {e}")))?;

    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match received.try_recv() {
            Ok(Event::Spawned) | Err(mpsc::TryRecvError::Empty) => {}
            Ok(Event::SpawnFailed(e)) => {
                return Err(Failure::Fatal(format!("moto_server could not be run: {e}")));
            }
            Ok(Event::Exited(status)) => {
                return Err(Failure::Retry(format!(
                    "moto_server on port {port} exited ({status:?}): {}",
                    tail(&mut log)
                )));
            }
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err(Failure::Fatal("the moto keeper thread ended".into()));
            }
        }
        if answers_http(port).await {
            return Ok(url);
        }
        if Instant::now() > deadline {
            return Err(Failure::Fatal(format!(
                "moto_server did not answer on port {port} within {START_TIMEOUT:?}: {}",
                tail(&mut log)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs moto and waits for it, for the life of the process.
// The one unsafe block in the workspace: moto must die with the test process
// (prctl in the child between fork and exec), which std has no call for.
#[allow(unsafe_code)]
fn keep(port: u16, log: File, events: &mpsc::Sender<Event>) {
    let parent = std::process::id();
    let mut command = Command::new("moto_server");
    command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The test process ended before prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = events.send(Event::SpawnFailed(e));
            return;
        }
    };
    let _ = events.send(Event::Spawned);
    let status = child.wait();
    let _ = events.send(Event::Exited(status));
}

async fn answers_http(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(&head == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// The end of moto's log, for a failure message.
fn tail(log: &mut File) -> String {
    let mut text = String::new();
    let _ = log.seek(SeekFrom::Start(0));
    let _ = log.read_to_string(&mut text);
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("moto's log ends with:\n{}", &text[start..])
}
