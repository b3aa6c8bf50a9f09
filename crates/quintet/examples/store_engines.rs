//! Measures one embedded engine (fjall or redb) behind one store port
//! (messages or kv), through the same adapters `quintet serve` uses: what
//! `bench/engines.sh` runs, in a process of its own per measurement so each
//! one's `/proc/self/io` and peak RSS are its own.
//!
//! ```text
//! store_engines write   --engine fjall --store messages --dir D --writes N [--concurrency 50]
//! store_engines read    --engine fjall --store messages --dir D --reads N
//! store_engines recover --engine fjall --store messages --dir D
//! ```
//!
//! `write` puts N new records (messages: distinct 100-byte texts; kv: 100-byte
//! sealed values under random 32-character keys) from `concurrency` tasks,
//! each waiting for its write to be durable before the next, and prints one
//! `RESULT` line: writes/s, p50/p99 latency, bytes written to storage per
//! write (`write_bytes` of /proc/self/io, the close included), the store's
//! size on disk and peak RSS. `read` reopens the store and gets N records
//! written by `write` in random order (`RESULT` with p50/p99). `recover`
//! times the open of a store a killed writer left (`RESULT open_ms`).
//! Nothing here is a test: figures only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kv::domain::{KvKey, RecordFormat, SealedRecord, WrappedKey};
use kv::ports::KvStore;
use messages::domain::{Digest, Message};
use messages::ports::MessageStore;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Fjall,
    Redb,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Messages,
    Kv,
}

struct Args {
    command: String,
    engine: Engine,
    store: Store,
    dir: PathBuf,
    count: usize,
    concurrency: usize,
}

fn parse() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let command = args.next().context("a command: write, read or recover")?;
    let (mut engine, mut store, mut dir, mut count, mut concurrency) =
        (None, None, None, 0usize, 50usize);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--engine" => {
                engine = Some(match value.as_str() {
                    "fjall" => Engine::Fjall,
                    "redb" => Engine::Redb,
                    other => bail!("unknown engine {other}"),
                });
            }
            "--store" => {
                store = Some(match value.as_str() {
                    "messages" => Store::Messages,
                    "kv" => Store::Kv,
                    other => bail!("unknown store {other}"),
                });
            }
            "--dir" => dir = Some(PathBuf::from(value)),
            "--writes" | "--reads" => count = value.parse()?,
            "--concurrency" => concurrency = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        command,
        engine: engine.context("--engine")?,
        store: store.context("--store")?,
        dir: dir.context("--dir")?,
        count,
        concurrency: concurrency.max(1),
    })
}

/// One of the two ports, on one engine.
enum Opened {
    Messages(Arc<dyn MessageStore>),
    Kv(Arc<dyn KvStore>),
}

fn open(engine: Engine, store: Store, dir: &Path) -> anyhow::Result<Opened> {
    Ok(match (engine, store) {
        (Engine::Fjall, Store::Messages) => Opened::Messages(Arc::new(
            messages::adapters::fjall::FjallMessageStore::open(&dir.join("messages.fjall"))?,
        )),
        (Engine::Redb, Store::Messages) => Opened::Messages(Arc::new(
            messages::adapters::redb::RedbMessageStore::open(&dir.join("messages.redb"))?,
        )),
        (Engine::Fjall, Store::Kv) => Opened::Kv(Arc::new(
            kv::adapters::fjall::FjallKvStore::open(&dir.join("kv.fjall"))?,
        )),
        (Engine::Redb, Store::Kv) => Opened::Kv(Arc::new(kv::adapters::redb::RedbKvStore::open(
            &dir.join("kv.redb"),
        )?)),
    })
}

/// The i-th record's text (messages) or key (kv): 100 bytes, the same in
/// every run, so `read` finds what `write` stored.
fn text(i: usize) -> String {
    format!("{i:0>12} engine comparison message, a hundred bytes of text stored durably before its answer.")
        .chars()
        .take(100)
        .collect()
}

fn kv_key(i: usize) -> KvKey {
    // Random-looking but reproducible: the digest of the index.
    let digest = Digest::of(i.to_string().as_bytes()).to_string();
    KvKey::new(format!("k/{}", &digest[..30])).unwrap_or_else(|_| unreachable!("a valid key"))
}

fn record(i: usize) -> SealedRecord {
    let fill = u8::try_from(i % 251).unwrap_or(0);
    SealedRecord {
        format: RecordFormat::V1,
        wrapped: WrappedKey {
            key_id: "bench".into(),
            bytes: vec![fill; 60],
        },
        wrapped_alternates: Vec::new(),
        nonce: [fill; 12],
        ciphertext: vec![fill; 100 + 16],
    }
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        // Allocated blocks, not the apparent size (fjall preallocates its journal).
        return std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| disk_bytes(&e.path()))
            .sum()
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at].as_secs_f64() * 1e6
}

async fn write(args: &Args) -> anyhow::Result<()> {
    let opened = open(args.engine, args.store, &args.dir)?;
    let before = write_bytes();
    let started = Instant::now();
    let per_task = args.count.div_ceil(args.concurrency);
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let range = (t * per_task)..((t + 1) * per_task).min(args.count);
        let opened = match &opened {
            Opened::Messages(s) => Opened::Messages(s.clone()),
            Opened::Kv(s) => Opened::Kv(s.clone()),
        };
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(range.len());
            for i in range {
                let t0 = Instant::now();
                match &opened {
                    Opened::Messages(s) => {
                        let m = Message::new(text(i), 1024)?;
                        s.put(&m, 1_700_000_000_000).await?;
                    }
                    Opened::Kv(s) => s.put(&kv_key(i), &record(i)).await?,
                }
                latencies.push(t0.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(args.count);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    match &opened {
        Opened::Messages(s) => s.close().await,
        Opened::Kv(s) => s.close().await,
    }
    drop(opened);
    let written = write_bytes() - before;
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let (rate, per_write) = (
        args.count as f64 / elapsed.as_secs_f64(),
        written as f64 / args.count as f64,
    );
    println!(
        "RESULT writes={} seconds={:.3} writes_per_s={rate:.0} p50_us={:.0} p99_us={:.0} \
         bytes_written_per_write={per_write:.0} disk_bytes={} peak_rss_kb={}",
        args.count,
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        disk_bytes(&args.dir),
        peak_rss_kb()
    );
    Ok(())
}

async fn read(args: &Args) -> anyhow::Result<()> {
    let opened = open(args.engine, args.store, &args.dir)?;
    // A fixed shuffle: every run reads the same keys in the same order.
    let mut order: Vec<usize> = (0..args.count).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        #[allow(clippy::cast_possible_truncation)]
        let j = (x % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut latencies = Vec::with_capacity(order.len());
    let started = Instant::now();
    for i in order {
        let t0 = Instant::now();
        let found = match &opened {
            Opened::Messages(s) => s
                .get(&Message::new(text(i), 1024)?.digest())
                .await?
                .is_some(),
            Opened::Kv(s) => s.get(&kv_key(i)).await?.is_some(),
        };
        latencies.push(t0.elapsed());
        if !found {
            bail!("record {i} was not found: run write with at least as many writes first");
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    println!(
        "RESULT reads={} seconds={:.3} p50_us={:.1} p99_us={:.1} peak_rss_kb={}",
        latencies.len(),
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        peak_rss_kb()
    );
    Ok(())
}

fn recover(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let opened = open(args.engine, args.store, &args.dir)?;
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(opened);
    println!("RESULT open_ms={open_ms:.1}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    match args.command.as_str() {
        "write" => write(&args).await,
        "read" => read(&args).await,
        "recover" => recover(&args),
        other => bail!("unknown command {other}: use write, read or recover"),
    }
}
