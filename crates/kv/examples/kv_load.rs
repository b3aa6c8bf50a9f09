//! gRPC load generator for the kv service (`bench/kv.sh` drives it): `Set` or
//! `Get` from `--concurrency` concurrent streams spread over `--connections`
//! HTTP/2 connections, for `--duration`, over `--keys` keys holding values of
//! `--size` bytes. Prints one JSON line: requests, errors, throughput,
//! p50/p99 latency and plaintext MB/s (10^6 bytes).
//!
//! ```sh
//! cargo run --release -p quintet-kv --example kv_load -- --url http://127.0.0.1:8083 --op set --size 100
//! ```
//!
//! `--op get` first sets every key once (not measured), so each get finds a
//! value. `--requests N` stops after N requests (for counting per-request costs).
// A benchmark's statistics are floats over counts far below 2^52, and its
// latencies in microseconds fit a u64; main reads best as one run.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kv::proto::v1::key_value_client::KeyValueClient;
use kv::proto::v1::{GetRequest, SetRequest};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    Set,
    Get,
}

#[derive(Debug, Parser)]
struct Args {
    /// The quintet server (REST and gRPC share its port).
    #[arg(long, default_value = "http://127.0.0.1:8083")]
    url: String,
    #[arg(long, value_enum)]
    op: Op,
    /// Value size in bytes.
    #[arg(long)]
    size: usize,
    /// Requests in flight at once (each a gRPC stream).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Distinct keys (`bench/<size>/<n>`).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// How long to measure.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many requests in all (or at --duration, whichever comes first).
    #[arg(long)]
    requests: Option<u64>,
}

fn key(size: usize, n: usize) -> String {
    format!("bench/{size}/{n}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0 && args.keys > 0,
        "--concurrency, --connections and --keys must be positive"
    );
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let channel: Channel = Endpoint::from_shared(args.url.clone())?
            .initial_stream_window_size(2 << 20)
            .initial_connection_window_size(8 << 20)
            .connect()
            .await?;
        clients.push(
            KeyValueClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        );
    }
    // Incompressible-looking bytes (nothing compresses anyway; this only avoids all-zero pages).
    let value: Arc<Vec<u8>> = Arc::new(
        (0..args.size)
            .map(|i| u8::try_from(i * 131 % 251).unwrap_or(0))
            .collect(),
    );

    if args.op == Op::Get {
        // Every key set once, by all workers at once (sequential durable
        // writes would take as long as the run).
        let mut fills = Vec::with_capacity(args.concurrency);
        for worker in 0..args.concurrency {
            let mut client = clients[worker % clients.len()].clone();
            let value = value.clone();
            let (size, keys, step) = (args.size, args.keys, args.concurrency);
            fills.push(tokio::spawn(async move {
                for n in (worker..keys).step_by(step) {
                    client
                        .set(SetRequest {
                            key: key(size, n),
                            value: value.to_vec(),
                        })
                        .await?;
                }
                Ok::<_, tonic::Status>(())
            }));
        }
        for fill in fills {
            fill.await??;
        }
    }

    let started = Instant::now();
    let deadline = started + args.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let limit = args.requests.unwrap_or(u64::MAX);
    let mut workers = Vec::with_capacity(args.concurrency);
    for worker in 0..args.concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let value = value.clone();
        let (op, size, keys) = (args.op, args.size, args.keys);
        let issued = issued.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut n = worker;
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                let name = key(size, n % keys);
                n += 7919;
                let t0 = Instant::now();
                let outcome = match op {
                    Op::Set => client
                        .set(SetRequest {
                            key: name,
                            value: value.to_vec(),
                        })
                        .await
                        .map(|_| ()),
                    Op::Get => client.get(GetRequest { key: name }).await.and_then(|r| {
                        if r.get_ref().value.len() == size {
                            Ok(())
                        } else {
                            Err(tonic::Status::data_loss("value of the wrong size"))
                        }
                    }),
                };
                match outcome {
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
        "size": args.size,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "requests": latencies.len(),
        "errors": errors,
        "first_error": first_error,
        "seconds": seconds,
        "ops_per_sec": ok / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mb_per_sec": ok * args.size as f64 / seconds / 1e6,
    });
    println!("{report}");
    Ok(())
}
