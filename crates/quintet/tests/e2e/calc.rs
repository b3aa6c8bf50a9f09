//! calc end to end: the real binary with `--services calc`, driven by a
//! tonic client over a real HTTP/2 connection: every method, every error
//! status, the streamed range, and a deadline cutting a long sieve short.

use std::time::{Duration, Instant};

use calc::proto::v1::NthPrimesRequest;
use calc::proto::v1::calculator_client::CalculatorClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::TestServer;

async fn client(server: &TestServer) -> CalculatorClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    CalculatorClient::new(channel)
}

#[tokio::test]
async fn a_deadline_cuts_a_long_sieve_short_and_the_server_stays_responsive() {
    let server = TestServer::start(&["--services", "calc", "--calc-max-n", "1000000000000"]);
    let mut calc = client(&server).await;
    // More n than are answered by counting (64): one sieve pass up to
    // p(10^11) ≈ 2.8·10^12, minutes of work, which only the deadline ends.
    // (Cancelling a count is covered by the domain's own tests.)
    let mut request = tonic::Request::new(NthPrimesRequest {
        n: (0..65).map(|i| 100_000_000_000 - i).collect(),
    });
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = calc.nth_primes(request).await.expect_err("deadline");
    // The client gives up at its deadline (tonic reports it as CANCELLED or DEADLINE_EXCEEDED).
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The abandoned sieve stops at its next segment: the server goes idle
    // (a running sieve would burn a whole core)…
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_ticks(server.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 30,
        "server used {used} ticks (1/100 s) in 1 s after the cancel"
    );
    // …and small requests answer at once.
    let started = Instant::now();
    for _ in 0..20 {
        calc.nth_primes(NthPrimesRequest { n: vec![10_001] })
            .await
            .expect("small request");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// User + system CPU ticks (1/100 s) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .expect("fields")
        .split(' ')
        .collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test]
async fn the_cli_prints_answers_and_exits_non_zero_with_the_status() {
    let server = TestServer::start(&["--services", "calc", "--tokens", "calc-token"]);
    let run = |args: &[&str]| {
        let mut all = vec!["calc", "--url", &server.url, "--token", "calc-token"];
        all.extend_from_slice(args);
        crate::support::cli(&all, None)
    };
    let cases: [(&[&str], &str); 8] = [
        (&["add", "1", "2"], "3\n"),
        (&["add", "-5", "2"], "-3\n"),
        (&["subtract", "1", "2"], "-1\n"),
        (&["multiply", "6", "7"], "42\n"),
        (&["divide", "7", "2"], "3\n"),
        (&["max", "3", "9"], "9\n"),
        (&["nth-prime", "1", "2", "10001"], "2\n3\n104743\n"),
        (&["primes", "100", "120"], "101\n103\n107\n109\n113\n"),
    ];
    for (args, expected) in cases {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (0, expected), "{args:?}: {err}");
    }
    let (code, _, err) = run(&["divide", "7", "0"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidArgument") && err.contains("zero"),
        "{err}"
    );
    let (code, _, err) = run(&["add", "9223372036854775807", "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("OutOfRange"), "{err}");
    // Without the token the server refuses the call.
    let (code, _, err) =
        crate::support::cli(&["calc", "--url", &server.url, "add", "1", "2"], None);
    assert_ne!(code, 0);
    assert!(err.contains("Unauthenticated"), "{err}");
}
