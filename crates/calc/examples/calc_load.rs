//! gRPC load generator for the calc service (`bench/calc.sh` drives it):
//! unary `quintet.calc.v1.Calculator/Add`, or the same server's
//! `grpc.health.v1.Health/Check` (the floor of its gRPC stack), from
//! `--concurrency` concurrent streams spread over `--connections` HTTP/2
//! connections, for `--duration` after an unmeasured `--warmup`. Prints one
//! JSON line (`kv_load`'s format): requests, errors, throughput, p50/p99 latency.
//!
//! ```sh
//! cargo run --release -p quintet-calc --example calc_load -- --url http://127.0.0.1:8080 --op add
//! ```
//!
//! Every `Add` answer is checked (a + b of varying operands) and every
//! `Check` must answer SERVING; anything else counts as an error.
//! `--requests N` stops after N measured requests.
//!
//! `--op nth-prime --n N` is not load: it times one `NthPrimes` RPC for n = N
//! on a connection already open (checked with a health call first), as a
//! client that keeps its channel sees it, and prints
//! `{"op":"nth-prime","n":N,"answer":P,"seconds":S}`.
// A benchmark's statistics are floats over counts far below 2^52, its
// latencies in microseconds fit a u64, and a worker's number fits an i64.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use calc::proto::v1::calculator_client::CalculatorClient;
use calc::proto::v1::{AddRequest, NthPrimesRequest};
use clap::{Parser, ValueEnum};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// `quintet.calc.v1.Calculator/Add`.
    Add,
    /// `grpc.health.v1.Health/Check` of `--health-service`.
    Health,
    /// One `quintet.calc.v1.Calculator/NthPrimes` for `--n`, timed.
    NthPrime,
}

#[derive(Debug, Parser)]
struct Args {
    /// The quintet server (REST and gRPC share its port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, value_enum)]
    op: Op,
    /// Requests in flight at once (each a gRPC stream).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to measure.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Load sent before measuring (same op, same streams), not counted; "0s" for none.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Stop after this many measured requests in all (or at --duration, whichever comes first).
    #[arg(long)]
    requests: Option<u64>,
    /// The n of `--op nth-prime`.
    #[arg(long, default_value_t = 1_000_000_000)]
    n: u64,
    /// The service name `--op health` asks about ("" is the server as a whole).
    #[arg(long, default_value = "quintet.calc.v1.Calculator")]
    health_service: String,
}

/// One connection's clients (both share its HTTP/2 channel).
#[derive(Clone)]
struct Clients {
    calc: CalculatorClient<Channel>,
    health: HealthClient<Channel>,
}

/// One request of `op`; `n` varies the operands.
async fn call(clients: &mut Clients, op: Op, n: i64, service: &str) -> Result<(), tonic::Status> {
    match op {
        Op::Add => {
            let (a, b) = (n, n.wrapping_mul(31) % 1_000_003);
            let answer = clients.calc.add(AddRequest { a, b }).await?.into_inner();
            if answer.result == a + b {
                Ok(())
            } else {
                Err(tonic::Status::data_loss(format!(
                    "{a} + {b} answered {}",
                    answer.result
                )))
            }
        }
        Op::Health | Op::NthPrime => {
            let answer = clients
                .health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await?
                .into_inner();
            if answer.status == ServingStatus::Serving as i32 {
                Ok(())
            } else {
                Err(tonic::Status::unavailable(format!(
                    "health status {} (not SERVING)",
                    answer.status
                )))
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0,
        "--concurrency and --connections must be positive"
    );
    if args.op == Op::NthPrime {
        return time_nth_prime(&args).await;
    }
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let channel: Channel = Endpoint::from_shared(args.url.clone())?.connect().await?;
        clients.push(Clients {
            calc: CalculatorClient::new(channel.clone()),
            health: HealthClient::new(channel),
        });
    }
    // A first call of each connection, so a server that cannot answer fails
    // the run at once instead of filling it with errors.
    for c in &mut clients {
        call(c, args.op, 1, &args.health_service).await?;
    }

    let warmup_end = Instant::now() + args.warmup;
    let deadline = warmup_end + args.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let limit = args.requests.unwrap_or(u64::MAX);
    let service: Arc<str> = args.health_service.clone().into();
    let mut workers = Vec::with_capacity(args.concurrency);
    for worker in 0..args.concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let op = args.op;
        let issued = issued.clone();
        let service = service.clone();
        workers.push(tokio::spawn(async move {
            let mut n = worker as i64;
            // Warm-up: the same load, not counted.
            while Instant::now() < warmup_end {
                let _ = call(&mut client, op, n, &service).await;
                n += 7919;
            }
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                n += 7919;
                let t0 = Instant::now();
                match call(&mut client, op, n, &service).await {
                    Ok(()) => latencies_us.push(t0.elapsed().as_micros() as u64),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert(status.to_string());
                    }
                }
            }
            (latencies_us, errors, first_error)
        }));
    }
    // The measured stretch starts when the warm-up ends (workers still in a
    // warm-up call then finish it first, a few µs at most).
    tokio::time::sleep_until(warmup_end.into()).await;
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        let (l, e, f) = worker.await?;
        latencies.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    let ok = latencies.len() as f64;
    let report = serde_json::json!({
        "op": format!("{:?}", args.op).to_lowercase(),
        "concurrency": args.concurrency,
        "connections": args.connections,
        "requests": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "seconds": seconds,
        "ops_per_sec": ok / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    });
    println!("{report}");
    Ok(())
}

/// One `NthPrimes` RPC on a connection that has already answered a health
/// check, timed from the call to its answer.
async fn time_nth_prime(args: &Args) -> anyhow::Result<()> {
    let channel: Channel = Endpoint::from_shared(args.url.clone())?.connect().await?;
    let mut clients = Clients {
        calc: CalculatorClient::new(channel.clone()),
        health: HealthClient::new(channel),
    };
    call(&mut clients, Op::Health, 1, &args.health_service).await?;
    let started = Instant::now();
    let answer = clients
        .calc
        .nth_primes(NthPrimesRequest { n: vec![args.n] })
        .await?
        .into_inner();
    let seconds = started.elapsed().as_secs_f64();
    let [answer] = answer.primes[..] else {
        anyhow::bail!(
            "NthPrimes answered {} primes for one n",
            answer.primes.len()
        );
    };
    let report = serde_json::json!({
        "op": "nth-prime",
        "n": args.n,
        "answer": answer,
        "seconds": seconds,
    });
    println!("{report}");
    Ok(())
}
