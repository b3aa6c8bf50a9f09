//! The fleet test: three `quintet serve` replicas on loopback (messages,
//! counters and kv on one PostgreSQL schema, calc's events on NATS
//! JetStream, receipts workers on one SQS queue and one DynamoDB ledger in
//! moto), nginx in front (HTTP/1.1, gRPC, and kv's raw TCP through its
//! stream module), a bounded mixed load on every
//! service through nginx, and one replica killed with SIGKILL mid-load and
//! restarted. Afterwards: nothing acknowledged is missing (calc answers
//! only recorded calculations, `--calc-event-ack appended`), nothing counted
//! twice, and the only errors the load saw are the requests in flight on
//! the killed replica.
//!
//! Figures are printed; with `QUINTET_FLEET_REPORT=<file>` (what
//! `bench/fleet.sh` sets) they are also written there as Markdown.

// A failed expectation is the test failing; the scenario is read top to bottom.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

mod load;
mod procs;
mod receipts;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calc::proto::v1::HistoryRequest;
use calc::proto::v1::calculator_client::CalculatorClient;
use kv::proto::v1::GetRequest;
use kv::proto::v1::key_value_client::KeyValueClient;
use serde_json::Value;

use load::{Acked, channel, http, lock};
use procs::{MOTO_AWS_ENV, Replica};

/// How long the load runs, when the replica is killed, and how long it stays down.
const LOAD: Duration = Duration::from_secs(16);
const KILL_AT: Duration = Duration::from_secs(6);
const DOWN: Duration = Duration::from_secs(2);
/// A replica's readiness changed: (replica, when, ready now, why not).
type Transition = (usize, Instant, bool, String);
/// The replica that dies.
const VICTIM: usize = 1;
/// Failed readiness probes in a row that take a replica out (a kubelet's
/// default `failureThreshold`).
const PROBE_FAILURES: usize = 3;

fn epoch_secs(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

async fn ready(url: &str) -> bool {
    readiness(url).await.is_ok()
}

/// `/readyz` of one replica: `Err` with why when it is not ready.
async fn readiness(url: &str) -> Result<(), String> {
    match http()
        .get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn wait_ready(replica: &Replica, limit: Duration) -> Duration {
    let started = Instant::now();
    while !ready(&replica.url()).await {
        assert!(
            started.elapsed() < limit,
            "{} not ready after {limit:?}:\n{}",
            replica.name,
            replica.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Every message a replica lists, digest → text.
async fn listed(url: &str) -> HashMap<String, String> {
    let client = http();
    let mut all = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(format!("{url}/messages"))
            .query(&[("limit", "1000")]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c.as_str())]);
        }
        let page: Value = request
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for m in page["items"].as_array().expect("items") {
            all.insert(
                m["digest"].as_str().expect("digest").to_owned(),
                m["message"].as_str().expect("message").to_owned(),
            );
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

/// A line of nginx's access log: `$msec|$status|$upstream_addr|$upstream_status`
/// (`$upstream_addr` lists every replica tried, the one that answered last).
struct Logged {
    at: f64,
    status: u16,
    upstream: String,
}

fn access_log(path: &std::path::Path) -> Vec<Logged> {
    std::fs::read_to_string(path)
        .expect("access log")
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('|');
            Some(Logged {
                at: parts.next()?.parse().ok()?,
                status: parts.next()?.parse().ok()?,
                upstream: parts.next()?.to_owned(),
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_lose_nothing_acknowledged_when_one_is_killed_under_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let run = std::process::id() % 100_000;

    // The engines.
    let (schema, store) = testkit::postgres_schema().await;
    let (_nats, nats_port) = procs::nats(dir);
    let (_sim, sim_url) = procs::apple_sim(dir, "50ms");
    let moto = testkit::moto::moto_endpoint().await;
    let table = testkit::moto::unique_name("fleet-ledger");
    let input = testkit::moto::unique_name("fleet-jobs");
    let dead = testkit::moto::unique_name("fleet-dlq");
    let results = testkit::moto::unique_name("fleet-results");

    // Three replicas of every service, sharing everything but their data dir.
    let stream = format!("FLEET{run}");
    let args: Vec<String> = [
        "--services",
        "messages,counters,kv,receipts,calc",
        "--log-format",
        "json",
        "--store",
        &store,
        "--calc-events",
        &format!("nats://127.0.0.1:{nats_port}?stream={stream}&subject=fleet.{run}.calc"),
        // Every answered calculation in the history, at least once.
        "--calc-event-ack",
        "appended",
        "--kv-key-provider",
        &format!("local://{}/kv-keys", dir.display()),
        "--rate-limit",
        "0",
        "--shutdown-delay",
        "0s",
        "--receipts-queue",
        &format!("sqs://?endpoint={moto}&create=true"),
        "--receipts-ledger",
        &format!("dynamodb://{table}?endpoint={moto}&create=true"),
        "--receipts-input-queue",
        &input,
        "--receipts-dead-letter-queue",
        &dead,
        "--receipts-visibility",
        "5s",
        "--receipts-concurrency",
        "16",
        "--apple-production-url",
        &format!("{sim_url}/verifyReceipt"),
        "--apple-sandbox-url",
        &format!("{sim_url}/sandbox/verifyReceipt"),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let env: Vec<(String, String)> = MOTO_AWS_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut replicas: Vec<Replica> = (0..3)
        .map(|n| Replica::new(&format!("replica-{n}"), dir, args.clone(), env.clone()))
        .collect();
    // The first one alone: it makes the kv master key, the tables and the stream.
    replicas[0].start();
    wait_ready(&replicas[0], Duration::from_mins(1)).await;
    for replica in &mut replicas[1..] {
        replica.start();
    }
    for replica in &replicas[1..] {
        wait_ready(replica, Duration::from_mins(1)).await;
    }
    let nginx = procs::nginx(
        dir,
        &replicas
            .iter()
            .map(|r| (r.port, r.tcp_port))
            .collect::<Vec<_>>(),
    );
    let lb_http = format!("http://127.0.0.1:{}", nginx.http_port);
    let lb_grpc = format!("http://127.0.0.1:{}", nginx.grpc_port);

    // Readiness of every replica, probed directly every 100 ms the way a
    // kubelet does: out after `PROBE_FAILURES` failed probes in a row, back
    // in on the first success. A single slow probe on a saturated two-core
    // machine is a blip, counted and reported, not a transition.
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let transitions: Arc<std::sync::Mutex<Vec<Transition>>> = Arc::default();
    let blips: Arc<std::sync::Mutex<Vec<usize>>> =
        Arc::new(std::sync::Mutex::new(vec![0; replicas.len()]));
    let monitor = {
        let probes = replicas
            .iter()
            .map(Replica::url)
            .enumerate()
            .map(|(n, url)| {
                let (watching, transitions, blips) =
                    (watching.clone(), transitions.clone(), blips.clone());
                tokio::spawn(async move {
                    let (mut ready, mut failed) = (true, 0usize);
                    while watching.load(std::sync::atomic::Ordering::Relaxed) {
                        match readiness(&url).await {
                            Ok(()) => {
                                if !ready {
                                    lock(&transitions).push((
                                        n,
                                        Instant::now(),
                                        true,
                                        String::new(),
                                    ));
                                    ready = true;
                                } else if failed > 0 {
                                    lock(&blips)[n] += failed;
                                }
                                failed = 0;
                            }
                            Err(why) => {
                                failed += 1;
                                if ready && failed == PROBE_FAILURES {
                                    lock(&transitions).push((n, Instant::now(), false, why));
                                    ready = false;
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            });
        futures_util::future::join_all(probes.collect::<Vec<_>>())
    };

    // The load, the receipts jobs, and the kill.
    let acked = Arc::new(Acked::default());
    let started = Instant::now();
    let load = tokio::spawn(load::run(
        acked.clone(),
        lb_http.clone(),
        lb_grpc.clone(),
        format!("127.0.0.1:{}", nginx.tcp_port),
        started + LOAD,
    ));
    let submitting = {
        let (url, results) = (lb_http.clone(), results.clone());
        tokio::spawn(async move { receipts::submit(&url, &results, run).await })
    };
    tokio::time::sleep(KILL_AT).await;
    let killed_at = Instant::now();
    let killed_wall = epoch_secs(SystemTime::now());
    replicas[VICTIM].proc.as_mut().expect("running").kill9();
    tokio::time::sleep(DOWN).await;
    replicas[VICTIM].start();
    wait_ready(&replicas[VICTIM], Duration::from_mins(1)).await;
    let recovered = killed_at.elapsed();
    load.await.expect("load");
    let load_secs = started.elapsed().as_secs_f64();
    let resubmitted = submitting.await.expect("submit");
    let receipts = receipts::check(&moto, (&input, &dead, &results), &table, run, started).await;
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    for probe in monitor.await {
        probe.expect("probe");
    }

    let mut report = String::new();
    let failures = std::mem::take(&mut *lock(&acked.failures));
    let mut failed_by: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &failures {
        *failed_by.entry(f.service).or_default() += 1;
    }

    // Errors: only around the kill.
    let late: Vec<String> = failures
        .iter()
        .filter(|f| f.at < killed_at || f.at > killed_at + Duration::from_secs(3))
        .map(|f| {
            format!(
                "{} at {:?} after the kill: {}",
                f.service,
                f.at.saturating_duration_since(killed_at),
                f.what
            )
        })
        .collect();
    assert!(late.is_empty(), "errors away from the kill: {late:#?}");

    // nginx's own view: every 5xx it answered names the killed replica.
    let victim_addr = format!("127.0.0.1:{}", replicas[VICTIM].port);
    let logged = access_log(&nginx.access_log);
    let lb_errors: Vec<&Logged> = logged.iter().filter(|l| l.status >= 500).collect();
    for e in &lb_errors {
        assert!(
            e.upstream.contains(&victim_addr),
            "a 5xx from a replica that was not killed: {} {} {}",
            e.at,
            e.status,
            e.upstream
        );
        assert!(
            e.at >= killed_wall - 0.05 && e.at <= killed_wall + 3.0,
            "a 5xx at {:.3} s from the kill",
            e.at - killed_wall
        );
    }
    // Readiness took the victim out and put it back; nginx sent it traffic again.
    let seen = lock(&transitions).clone();
    let out = seen
        .iter()
        .find(|(n, _, r, _)| *n == VICTIM && !r)
        .map(|(_, at, _, _)| *at);
    let back = seen
        .iter()
        .find(|(n, _, r, _)| *n == VICTIM && *r)
        .map(|(_, at, _, _)| *at);
    let (out, back) = (
        out.expect("the victim was seen not ready"),
        back.expect("and ready again"),
    );
    let others: Vec<_> = seen.iter().filter(|(n, _, _, _)| *n != VICTIM).collect();
    assert!(
        others.is_empty(),
        "the other replicas stayed ready: {others:?}"
    );
    let back_wall = killed_wall + back.duration_since(killed_at).as_secs_f64();
    let served_again = logged
        .iter()
        .filter(|l| l.at > back_wall && l.status < 500 && l.upstream.ends_with(&victim_addr))
        .count();
    assert!(
        served_again > 0,
        "nginx sent the restarted replica requests again (ready again {:.2} s after the kill, load ran {load_secs:.1} s; last lines naming it: {:?})",
        back.duration_since(killed_at).as_secs_f64(),
        logged
            .iter()
            .filter(|l| l.upstream.contains(&victim_addr))
            .rev()
            .take(5)
            .map(|l| format!("{:.3} {} {}", l.at - killed_wall, l.status, l.upstream))
            .collect::<Vec<_>>()
    );
    let per_replica: Vec<usize> = replicas
        .iter()
        .map(|r| {
            let addr = format!("127.0.0.1:{}", r.port);
            logged
                .iter()
                .filter(|l| l.upstream.ends_with(&addr))
                .count()
        })
        .collect();

    // messages: every acknowledged message, through every replica.
    let messages = lock(&acked.messages).clone();
    for replica in &replicas {
        let all = listed(&replica.url()).await;
        for (digest, text) in &messages {
            assert_eq!(
                all.get(digest),
                Some(text),
                "{digest} through {}",
                replica.name
            );
        }
    }

    // kv: every acknowledged set reads back identically from every replica.
    let kv_sets = lock(&acked.kv).clone();
    for replica in &replicas {
        let mut client = KeyValueClient::new(channel(&replica.url()).await);
        for (key, value) in &kv_sets {
            let got = client
                .get(GetRequest { key: key.clone() })
                .await
                .unwrap_or_else(|s| panic!("get {key} from {}: {s:?}", replica.name));
            assert_eq!(
                &got.into_inner().value,
                value,
                "{key} from {}",
                replica.name
            );
        }
    }

    // ... and those set over the raw-TCP protocol read back over it, from
    // each replica's own port.
    let tcp_keys: Vec<&(String, Vec<u8>)> = kv_sets
        .iter()
        .filter(|(key, _)| key.starts_with("fleet-kv-tcp-"))
        .collect();
    let kv_tcp = *lock(&acked.kv_tcp);
    assert_eq!(tcp_keys.len() as u64, kv_tcp, "raw-TCP sets acknowledged");
    assert!(kv_tcp > 0, "the raw-TCP load set nothing");
    for replica in &replicas {
        let mut conn = load::SeedConn::connect(&format!("127.0.0.1:{}", replica.tcp_port))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", replica.name));
        for (key, value) in &tcp_keys {
            let got = conn
                .get(key)
                .await
                .unwrap_or_else(|e| panic!("raw-TCP get {key} from {}: {e}", replica.name));
            assert_eq!(
                got.as_deref().map(str::as_bytes),
                Some(value.as_slice()),
                "{key} over raw TCP from {}",
                replica.name
            );
        }
    }

    // calc: the history (NATS JetStream, shared) holds the answered Adds.
    let answered = lock(&acked.calc).clone();
    let mut history: HashMap<(i64, i64), usize> = HashMap::new();
    let mut client = CalculatorClient::new(channel(&replicas[0].url()).await);
    let mut after = 0;
    loop {
        let page = client
            .history(HistoryRequest {
                since: String::new(),
                after,
                limit: 1000,
            })
            .await
            .expect("history")
            .into_inner();
        for event in &page.events {
            if event.method == "add" {
                let input: Value = serde_json::from_str(&event.input_json).expect("input json");
                let key = (
                    input["a"].as_i64().expect("a"),
                    input["b"].as_i64().expect("b"),
                );
                *history.entry(key).or_default() += 1;
            }
        }
        if page.next_after == 0 {
            break;
        }
        after = page.next_after;
    }
    let duplicates: usize = history.values().map(|n| n - 1).sum();
    let missing: Vec<&(i64, i64, Instant)> = answered
        .iter()
        .filter(|(a, b, _)| !history.contains_key(&(*a, *b)))
        .collect();
    // With --calc-event-ack appended an answer follows its event's append:
    // nothing answered is missing, the kill notwithstanding.
    assert!(
        missing.is_empty(),
        "answered Adds not in the history: {:?}",
        missing
            .iter()
            .map(|(a, b, at)| format!(
                "Add({a}, {b}) {:?} after the kill",
                at.saturating_duration_since(killed_at)
            ))
            .collect::<Vec<_>>()
    );

    // counters: stop every replica cleanly (each flushes), then read PostgreSQL.
    for replica in &mut replicas {
        let proc = replica.proc.as_mut().expect("running");
        assert!(
            proc.stop(Duration::from_secs(30)),
            "{} stops cleanly",
            replica.name
        );
    }
    let pool = sqlx::PgPool::connect(&testkit::postgres_url())
        .await
        .expect("pg");
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "SELECT key, value FROM {schema}.counters WHERE key LIKE 'fleet-counter-%'"
    ))
    .fetch_all(&pool)
    .await
    .expect("counters");
    pool.close().await;
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    let counted = lock(&acked.counters).clone();
    let uncertain = lock(&acked.counters_uncertain).clone();
    let mut in_flight_counted = 0;
    for (key, sum) in &counted {
        let total = stored.get(key).copied().unwrap_or(0);
        let maybe = uncertain.get(key).copied().unwrap_or(0);
        assert!(
            total >= *sum && total <= sum + maybe,
            "{key}: {total} in PostgreSQL, {sum} acknowledged, {maybe} in failed requests"
        );
        in_flight_counted += total - sum;
    }
    let keys: HashSet<&String> = stored.keys().collect();
    assert!(
        keys.iter()
            .all(|k| counted.contains_key(*k) || uncertain.contains_key(*k))
    );

    // The figures.
    let increments = *lock(&acked.increments);
    let _ = writeln!(report, "| what | figure |\n|---|--:|");
    let rows = [
        (
            "load through nginx",
            format!("{load_secs:.1} s, {} tasks per service", load::TASKS),
        ),
        (
            "messages acknowledged (all read back through each of 3 replicas)",
            messages.len().to_string(),
        ),
        (
            "counter increments acknowledged (16 keys)",
            increments.to_string(),
        ),
        (
            "kv sets acknowledged (all read back from each replica)",
            kv_sets.len().to_string(),
        ),
        (
            "of which over the raw-TCP protocol through nginx's stream proxy (read back over it from each replica)",
            kv_tcp.to_string(),
        ),
        ("calc Adds answered", answered.len().to_string()),
        (
            "requests per replica (nginx access log)",
            format!("{per_replica:?}"),
        ),
        (
            "errors the load saw, all within 3 s of the kill",
            format!("{} {failed_by:?}", failures.len()),
        ),
        (
            "5xx answered by nginx, all from the killed replica's address",
            lb_errors.len().to_string(),
        ),
        (
            "killed replica out after the kill (3 failed probes, 100 ms apart)",
            format!(
                "{:.2} s",
                out.saturating_duration_since(killed_at).as_secs_f64()
            ),
        ),
        (
            "killed replica ready again after the kill (restart after 2 s)",
            format!("{:.2} s", recovered.as_secs_f64()),
        ),
        (
            "readiness probes that failed once and then passed (per replica; never 3 in a row on a live one)",
            format!("{:?}", lock(&blips)),
        ),
        (
            "requests nginx sent the restarted replica",
            served_again.to_string(),
        ),
        (
            "counters: total in PostgreSQL − acknowledged (increments of failed requests that did count)",
            in_flight_counted.to_string(),
        ),
        (
            "calc Adds answered but missing from the history (--calc-event-ack appended)",
            missing.len().to_string(),
        ),
        (
            "calc events in the history twice (at-least-once)",
            duplicates.to_string(),
        ),
        (
            "receipts jobs (2 fixtures, 798 new transactions, 200 duplicates)",
            receipts::JOBS.to_string(),
        ),
        (
            "receipts submissions refused and sent again",
            resubmitted.to_string(),
        ),
        (
            "receipts results (OK / INVALID)",
            format!(
                "{} ({} / {})",
                receipts.results, receipts.ok, receipts.invalid
            ),
        ),
        (
            "receipts jobs with more than one result (redelivered after the kill)",
            receipts.duplicate_results.to_string(),
        ),
        (
            "transactions / ledger items (each claimed once)",
            format!("{} / {}", receipts.transactions, receipts.ledger_items),
        ),
        ("receipts dead letters", receipts.dead_letters.to_string()),
        (
            "every job answered after",
            format!("{:.1} s", receipts.drained_after.as_secs_f64()),
        ),
    ];
    for (what, figure) in rows {
        let _ = writeln!(report, "| {what} | {figure} |");
    }
    println!("{report}");
    if let Ok(path) = std::env::var("QUINTET_FLEET_REPORT") {
        std::fs::write(&path, &report).expect("write the report");
    }
    assert_eq!(receipts.dead_letters, 0, "no job dead-lettered");
    drop(nginx);
    testkit::drop_schema(&schema).await;
}
