//! The fleet's processes, started as plain processes on loopback: NATS
//! with JetStream, `quintet apple-sim`, three `quintet serve` replicas on
//! fixed ports (a restarted replica comes back where the load balancer
//! expects it) and nginx in front of them (HTTP/1.1, gRPC, and kv's raw TCP
//! through its stream module).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_quintet");

/// Credentials for moto (it accepts any), as the AWS SDK's standard chain reads them.
pub(crate) const MOTO_AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (and reaped) when dropped.
pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(command: &mut Command, log: &Path) -> Self {
        let out = File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
        Self { child }
    }

    /// SIGKILL, as a crash would, and reap.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (at most `limit`) for a clean exit.
    pub(crate) fn stop(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `nats-server` with JetStream on a free port, its store in `dir`.
pub(crate) fn nats(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nats-server");
    let store = dir.join("nats");
    let log = dir.join("nats.log");
    let proc = Proc::spawn(
        Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store),
        &log,
    );
    wait_for_port(port, "nats-server", &log);
    (proc, port)
}

/// `quintet apple-sim`, answering after `latency`.
pub(crate) fn apple_sim(dir: &Path, latency: &str) -> (Proc, String) {
    let port = free_port();
    let log = dir.join("apple-sim.log");
    let proc = Proc::spawn(
        Command::new(BIN).args([
            "apple-sim",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--latency",
            latency,
        ]),
        &log,
    );
    wait_for_port(port, "apple-sim", &log);
    (proc, format!("http://127.0.0.1:{port}"))
}

/// One `quintet serve` replica: its port, data directory and arguments
/// stay the same across restarts.
pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) port: u16,
    /// kv's raw-TCP port.
    pub(crate) tcp_port: u16,
    pub(crate) data_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: u32,
    pub(crate) proc: Option<Proc>,
}

impl Replica {
    pub(crate) fn new(
        name: &str,
        dir: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let data_dir = dir.join(name);
        std::fs::create_dir_all(&data_dir).expect("data dir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
                .expect("chmod 700");
        }
        Self {
            name: name.to_owned(),
            port: free_port(),
            tcp_port: free_port(),
            data_dir,
            args,
            env,
            starts: 0,
            proc: None,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.data_dir
            .parent()
            .expect("parent")
            .join(format!("{}-{}.log", self.name, self.starts))
    }

    /// Starts the process (the caller waits for readiness).
    pub(crate) fn start(&mut self) {
        self.starts += 1;
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .args(["--addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--kv-tcp-addr", &format!("127.0.0.1:{}", self.tcp_port)])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env_remove("PORT")
            .env("QUINTET_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.proc = Some(Proc::spawn(&mut command, &self.log()));
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// nginx in front of the replicas: HTTP/1.1 on one port, gRPC (h2c) on
/// another, kv's raw TCP on a third (stream module), passive health checks (a replica that refuses connections is
/// left out for `fail_timeout`), an access log naming the replica of each
/// request.
pub(crate) struct Nginx {
    /// Stopped when dropped.
    _proc: Proc,
    pub(crate) http_port: u16,
    pub(crate) grpc_port: u16,
    pub(crate) tcp_port: u16,
    pub(crate) access_log: PathBuf,
}

pub(crate) fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("nginx is needed for the fleet test (Debian package nginx; scripts/test installs it)")
        })
        .to_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// Debian's `libnginx-mod-stream` (scripts/test installs it).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// `replicas`: each replica's (HTTP and gRPC port, kv raw-TCP port).
pub(crate) fn nginx(dir: &Path, replicas: &[(u16, u16)]) -> Nginx {
    let dir = dir.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).expect("nginx dir");
    let http_port = free_port();
    let grpc_port = free_port();
    let tcp_port = free_port();
    assert!(
        Path::new(STREAM_MODULE).exists(),
        "{STREAM_MODULE} is needed for the fleet test (Debian package libnginx-mod-stream; scripts/test installs it)"
    );
    let servers = |ports: &mut dyn Iterator<Item = u16>| {
        ports
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let d = dir.display();
    let access_log = dir.join("logs/access.log");
    // As root, nginx's workers would drop to `nobody`, who cannot enter
    // the owner-only test directory.
    let user = if is_root() { "user root;" } else { "" };
    let conf = format!(
        r#"# The fleet test's load balancer (see crates/quintet/tests/fleet).
{user}
load_module {STREAM_MODULE};
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format fleet '$msec|$status|$upstream_addr|$upstream_status';
    access_log {d}/logs/access.log fleet;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream quintet_http {{
{http}
        keepalive 64;
    }}
    upstream quintet_grpc {{
{grpc}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        location / {{
            proxy_pass http://quintet_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
        }}
    }}
    server {{
        listen 127.0.0.1:{grpc_port} http2;
        location / {{
            grpc_pass grpc://quintet_grpc;
            grpc_next_upstream error timeout;
            grpc_connect_timeout 1s;
            grpc_read_timeout 30s;
        }}
    }}
}}
stream {{
    upstream quintet_kv_tcp {{
{tcp}
    }}
    server {{
        listen 127.0.0.1:{tcp_port};
        proxy_pass quintet_kv_tcp;
        proxy_connect_timeout 1s;
        proxy_timeout 30s;
    }}
}}
"#,
        http = servers(&mut replicas.iter().map(|r| r.0)),
        grpc = servers(&mut replicas.iter().map(|r| r.0)),
        tcp = servers(&mut replicas.iter().map(|r| r.1)),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let log = dir.join("nginx.out");
    let proc = Proc::spawn(
        Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path),
        &log,
    );
    wait_for_port(http_port, "nginx", &log);
    wait_for_port(grpc_port, "nginx", &log);
    wait_for_port(tcp_port, "nginx", &log);
    Nginx {
        _proc: proc,
        http_port,
        grpc_port,
        tcp_port,
        access_log,
    }
}
