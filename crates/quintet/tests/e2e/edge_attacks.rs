//! The HTTP edge under attack, loopback only and bounded in time: silent
//! sockets, label floods, token guessing, oversized announcements, loose
//! file modes. Each test is one row of SECURITY.md's findings table; the
//! server must stay healthy and bounded through it.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Start, TestServer, http, read_to_close, vm_rss_kib};

/// The value of one unlabelled (or fully labelled) sample in Prometheus text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_never_starve_health_checks() {
    // The default connection limit (10,000), filled with sockets that send
    // nothing (a handshake deadline longer than the test, so none leaves early).
    let server = TestServer::start(&["--services", "messages", "--handshake-timeout", "5m"]);
    let addr = server.addr;
    let silent = tokio::task::spawn_blocking(move || {
        let mut held = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            match TcpStream::connect(addr) {
                Ok(s) => held.push(s),
                Err(e) => panic!("connect {}: {e}", held.len()),
            }
        }
        held
    })
    .await
    .expect("silent sockets");
    // Every slot is taken by a silent socket: a real client still gets an answer,
    // by closing the socket that has been quiet the longest. (Without that, no
    // slot frees for 5 minutes; the 5 s allowed here is room for a suite
    // running beside this test on two cores, not a latency target.)
    let started = Instant::now();
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("/healthz answers within 5 s while 10,000 silent sockets are open");
    assert_eq!(answer.status(), 200);
    let waited = started.elapsed();
    let metrics = server.metrics().await;
    assert!(
        sample(
            &metrics,
            "quintet_http_connections_closed_total{reason=\"evicted\"}"
        ) >= 1.0,
        "a silent socket was evicted to make room (answered in {waited:?})"
    );
    drop(silent);
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_at_their_deadlines() {
    let server = TestServer::start(&[
        "--services",
        "messages",
        "--handshake-timeout",
        "1s",
        "--idle-timeout",
        "2s",
    ]);
    let addr = server.addr;
    let (silent, partial, idle) = tokio::task::spawn_blocking(move || {
        // Nothing at all (the HTTP/1-or-2 detection must not wait forever).
        let mut silent = TcpStream::connect(addr).expect("connect");
        // A few bytes of a preface, then nothing.
        let mut partial = TcpStream::connect(addr).expect("connect");
        partial.write_all(b"PRI * HT").expect("write");
        // One request answered, then an idle keep-alive connection.
        let mut idle = TcpStream::connect(addr).expect("connect");
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let started = Instant::now();
        let silent_closed =
            read_to_close(&mut silent, Duration::from_secs(10)).map(|_| started.elapsed());
        let partial_closed =
            read_to_close(&mut partial, Duration::from_secs(10)).map(|_| started.elapsed());
        let idle_answer = read_to_close(&mut idle, Duration::from_secs(10));
        (
            silent_closed,
            partial_closed,
            idle_answer.map(|got| (got, started.elapsed())),
        )
    })
    .await
    .expect("sockets");
    let silent = silent.expect("a silent connection is closed");
    assert!(silent < Duration::from_secs(5), "closed after {silent:?}");
    let partial = partial.expect("a half-sent preface is closed");
    assert!(partial < Duration::from_secs(5), "closed after {partial:?}");
    let (answer, after) = idle.expect("an idle keep-alive connection is closed");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "the request was answered before the idle close"
    );
    assert!(
        after >= Duration::from_secs(1),
        "not before the idle timeout: {after:?}"
    );
    let metrics = server.metrics().await;
    assert!(
        sample(
            &metrics,
            "quintet_http_connections_closed_total{reason=\"handshake_timeout\"}"
        ) >= 2.0,
        "{metrics}"
    );
    let idle_closed = |metrics: &str| {
        sample(
            metrics,
            "quintet_http_connections_closed_total{reason=\"idle\"}",
        )
    };
    let idle_before = idle_closed(&metrics);
    assert!(idle_before >= 1.0, "{metrics}");

    // HTTP/2 (h2c): an idle connection is sent a GOAWAY frame, then closed.
    let addr = server.addr;
    let frames = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        // The client preface, an empty SETTINGS frame, and one request:
        // HEADERS on stream 1 (END_STREAM | END_HEADERS) with HPACK's static
        // :method GET, :scheme http and :path "/healthz" as a literal.
        let mut hello =
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec();
        hello.extend_from_slice(b"\x00\x00\x0c\x01\x05\x00\x00\x00\x01\x82\x86\x04\x08/healthz");
        stream.write_all(&hello).expect("write preface and request");
        let started = Instant::now();
        read_to_close(&mut stream, Duration::from_secs(15)).map(|got| (got, started.elapsed()))
    })
    .await
    .expect("socket");
    let (bytes, after) = frames.expect("an idle HTTP/2 connection is closed");
    let mut types = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    assert!(
        types.contains(&0x7),
        "a GOAWAY frame (type 7) before the close: {types:?}"
    );
    assert!(
        after >= Duration::from_secs(1),
        "not before the idle timeout: {after:?}"
    );
    let metrics = server.metrics().await;
    assert!(idle_closed(&metrics) > idle_before, "{metrics}");
}

#[tokio::test]
async fn silence_after_a_tls_handshake_is_closed_too() {
    let server = TestServer::start(&[
        "--services",
        "messages",
        "--tls",
        "self-signed",
        "--handshake-timeout",
        "1s",
    ]);
    let addr = server.addr;
    // A TCP connection that starts a TLS handshake and stops half-way.
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(&[0x16, 0x03, 0x01]).expect("write");
        let started = Instant::now();
        read_to_close(&mut stream, Duration::from_secs(10)).map(|_| started.elapsed())
    })
    .await
    .expect("socket");
    let closed = closed.expect("a stalled TLS handshake is closed");
    assert!(closed < Duration::from_secs(5), "closed after {closed:?}");
    // A client that completes the handshake and then says nothing.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let answer = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("healthz over TLS");
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_and_path_flood_adds_no_metric_series() {
    use futures_util::StreamExt;
    let server = TestServer::start(&["--services", "messages,counters", "--rate-limit", "0"]);
    let client = http();
    let flood = |count: usize, seed: usize| {
        let client = client.clone();
        let url = server.url.clone();
        async move {
            let mut requests = futures_util::stream::iter(0..count)
                .map(|i| {
                    let client = client.clone();
                    let url = url.clone();
                    async move {
                        let n = i + seed;
                        let method = reqwest::Method::from_bytes(format!("M{n:X}Z").as_bytes())
                            .expect("method");
                        let path = match n % 3 {
                            0 => format!("/messages/{n:064x}"),
                            1 => format!("/counters/k{n}/x{n}"),
                            _ => format!("/nothing-{n}"),
                        };
                        let _ = client.request(method, format!("{url}{path}")).send().await;
                    }
                })
                .buffer_unordered(32);
            while requests.next().await.is_some() {}
        }
    };
    // Warm up: every label set an unusual request can produce exists now.
    flood(30, 0).await;
    server.metrics().await; // the scrape's own series
    let before = server.metrics().await;
    let rss_before = vm_rss_kib(server.pid());
    flood(20_000, 1_000_000).await;
    let after = server.metrics().await;
    let rss_after = vm_rss_kib(server.pid());
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_owned()))
            .collect()
    };
    let added: Vec<_> = series(&after)
        .difference(&series(&before))
        .cloned()
        .collect();
    assert!(
        added.is_empty(),
        "20,000 random methods and paths must not add metric series: {added:#?}"
    );
    assert!(
        after.len() < before.len() + 4096,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    assert!(
        after.contains("method=\"OTHER\""),
        "unknown methods share one label"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test]
async fn guessing_tokens_is_slowed_to_429_and_admin_routes_need_the_admin_scope() {
    let server = TestServer::launch(Start {
        args: vec!["--services", "kv", "--kv-tcp-addr", "127.0.0.1:0"],
        env: vec![("QUINTET_TOKENS", "plain-token,ops:root-token:admin")],
        ..Start::default()
    });
    let client = http();
    let mut statuses = Vec::new();
    for i in 0..80 {
        let status = client
            .get(format!("{}/kv/some-key", server.url))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        statuses.push(status);
    }
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert!(
        statuses.iter().rev().take(10).all(|s| *s == 429),
        "a flood of wrong tokens ends in 429: {statuses:?}"
    );
    // A valid token from the same address is not refused for another's guesses.
    let ok = client
        .get(format!("{}/kv/some-key", server.url))
        .bearer_auth("plain-token")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 404);

    let rotate = |token: &'static str| {
        client
            .post(format!("{}/admin/kv/rotate", server.url))
            .bearer_auth(token)
            .send()
    };
    let refused = rotate("plain-token").await.expect("rotate");
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.expect("body");
    assert!(
        body.contains("admin scope") && body.contains("name:secret:admin"),
        "{body}"
    );
    assert_eq!(rotate("root-token").await.expect("rotate").status(), 200);
}

#[cfg(unix)]
#[test]
fn the_data_directory_is_owner_only_and_an_open_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    {
        let server = TestServer::launch(Start {
            args: vec![
                "--services",
                "messages,counters,kv",
                "--kv-tcp-addr",
                "127.0.0.1:0",
            ],
            data_dir: Some(&data),
            ..Start::default()
        });
        assert_eq!(mode(&data), 0o700, "a new data directory is owner-only");
        // Everything below it too (stores, journal, locks, keys).
        let mut dirs = vec![data.clone()];
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                let m = mode(&path);
                assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
                seen += 1;
                if path.is_dir() {
                    dirs.push(path);
                }
            }
        }
        assert!(
            seen >= 5,
            "stores, journal and keys were written ({seen} entries)"
        );
        server.stop();
    }
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = refused_start(&["--data-dir", data.to_str().expect("utf-8")]);
    assert!(
        err.contains(&format!("chmod 700 {}", data.display())),
        "{err}"
    );

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let key = data.join("kv-keys/master-v1.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = refused_start(&[
        "--services",
        "kv",
        "--kv-tcp-addr",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("chmod 600") && err.contains("master-v1.key"),
        "{err}"
    );
}

/// Runs `quintet serve` with `args`, which must refuse to start: its output.
fn refused_start(args: &[&str]) -> String {
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn quintet");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("quintet serve {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "refused with a failure status: {text}");
    text
}
