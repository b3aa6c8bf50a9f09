//! `quintet copy`: copies the embedded stores of a data directory (messages,
//! kv, counters) into `PostgreSQL`, the engine a fleet of replicas shares,
//! while no server uses the directory. Progress goes to stderr; at the end
//! every record is read back from `PostgreSQL` and compared with its
//! original, and the counts are printed.
//!
//! - messages keep their digests, bodies, times and order (they list after
//!   what the table already holds, in their old order);
//! - kv records are copied sealed: no key provider is needed, and the
//!   fleet must use the same master keys (or KMS key) to open them;
//! - counters: the journal's unflushed increments are first applied to the
//!   embedded store, then each total is added in batches recorded under
//!   the source's own flush id, so a rerun adds nothing twice.
//!
//! A rerun after an interruption (kill -9 included) copies what is
//! missing and changes nothing else. Exit codes: 0 every record copied and
//! verified; 1 records differ in `PostgreSQL` (named; e.g. the target was
//! written by something else); 2 a store could not be read or written.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret as _, SecretString};

use crate::verify::ProgressLine;

/// Mismatches named on the terminal at most, per store.
const NAMED: usize = 20;

/// The services whose embedded store can be copied into `PostgreSQL`.
// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CopyService {
    Messages,
    Kv,
    Counters,
}

impl CopyService {
    fn name(self) -> &'static str {
        match self {
            CopyService::Messages => "messages",
            CopyService::Kv => "kv",
            CopyService::Counters => "counters",
        }
    }
}

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The data directory of the embedded stores to copy. The server using it must be
    /// stopped: a store it holds is refused.
    #[arg(
        long,
        env = "QUINTET_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// The `PostgreSQL` database to copy into, `postgres://user:password@host:5432/db`: the
    /// URL the fleet will use as --store. Tables are created if missing.
    #[arg(
        long,
        env = "QUINTET_COPY_TO",
        value_name = "URL",
        hide_env_values = true
    )]
    pub to: String,

    /// Stores to copy, comma separated.
    #[arg(
        long,
        env = "QUINTET_COPY_SERVICES",
        value_enum,
        value_delimiter = ',',
        default_value = "messages,kv,counters"
    )]
    pub services: Vec<CopyService>,
}

/// What one store's copy did.
#[derive(Debug, Default)]
struct Copied {
    /// Records in the source.
    total: u64,
    /// Records this run wrote (the rest were there from an earlier run).
    written: u64,
    /// Records found identical in `PostgreSQL`.
    verified: u64,
    /// Records of the source it could not read (corrupt: `quintet verify` names them).
    unreadable: Vec<String>,
    /// Records that differ in `PostgreSQL`, each with why.
    differ: Vec<String>,
}

/// Why a copy stopped.
#[derive(Debug)]
struct CopyError(String);

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn stopped<E: std::error::Error + 'static>(what: &'static str) -> impl FnOnce(E) -> CopyError {
    move |error| CopyError(format!("{what}: {}", platform::backend::chain(&error)))
}

/// Runs the copy and returns the process exit code.
pub async fn run(args: CopyArgs) -> ExitCode {
    let to = SecretString::from(args.to);
    if !(to.expose_secret().starts_with("postgres://")
        || to.expose_secret().starts_with("postgresql://"))
    {
        crate::cli::refuse(
            "copy",
            "--to must be a PostgreSQL URL, postgres://user:password@host:5432/db",
        );
    }
    let mut failed = false;
    let mut differ = false;
    for &service in &args.services {
        let name = service.name();
        let mut progress = ProgressLine::new(name);
        let mut show = |done, total| progress.show(done, total);
        let result = match service {
            CopyService::Messages => copy_messages(&args.data_dir, &to, &mut show).await,
            CopyService::Kv => copy_kv(&args.data_dir, &to, &mut show).await,
            CopyService::Counters => copy_counters(&args.data_dir, &to, &mut show).await,
        };
        progress.finish();
        match result {
            Ok(None) => println!(
                "{name}: nothing to copy (no embedded store in {})",
                args.data_dir.display()
            ),
            Ok(Some(report)) => {
                println!(
                    "{name}: {} record(s) in {}, {} written by this run, {} verified in PostgreSQL",
                    report.total,
                    args.data_dir.display(),
                    report.written,
                    report.verified
                );
                if !report.unreadable.is_empty() {
                    println!(
                        "{name}: {} unreadable record(s) not copied (`quintet verify` names them): {}",
                        report.unreadable.len(),
                        named(&report.unreadable)
                    );
                    differ = true;
                }
                if !report.differ.is_empty() {
                    println!(
                        "{name}: {} record(s) differ in PostgreSQL (was it written by a server \
                         already?): {}",
                        report.differ.len(),
                        named(&report.differ)
                    );
                    differ = true;
                }
            }
            Err(error) => {
                eprintln!(
                    "error: {name}: {error}; run copy again to finish: what was copied stays"
                );
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else if differ {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn named(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        text.push_str(", …");
    }
    text
}

fn page_limit() -> platform::paging::PageLimit {
    platform::paging::PageLimit::LARGEST
}

async fn copy_messages(
    data_dir: &Path,
    to: &SecretString,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Copied>, CopyError> {
    use messages::ports::MessageStore as _;
    let old = data_dir.join("messages.redb");
    let new = data_dir.join("messages.fjall");
    if !old.exists() && !new.exists() {
        return Ok(None);
    }
    let source = messages::adapters::migrate::open_embedded(&old, &new)
        .map_err(stopped("open the embedded store"))?;
    let target = messages::adapters::postgres::PostgresMessageStore::connect(to.expose_secret())
        .await
        .map_err(stopped("connect to PostgreSQL"))?;
    let mut report = Copied::default();
    let mut after = None;
    // Counted first, for the progress line.
    loop {
        let page = source
            .page(after, page_limit())
            .await
            .map_err(stopped("read"))?;
        report.total += (page.items.len() + page.corrupt.len()) as u64;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let total = report.total * 2;
    let mut done = 0;
    // Copy: verified messages only, in their order.
    after = None;
    loop {
        let page = source
            .page(after, page_limit())
            .await
            .map_err(stopped("read"))?;
        done += (page.items.len() + page.corrupt.len()) as u64;
        report.unreadable.extend(page.corrupt);
        let mut good = Vec::with_capacity(page.items.len());
        for message in page.items {
            match message.clone().verify() {
                Ok(_) => good.push(message),
                Err(bad) => report.unreadable.push(bad.digest.to_string()),
            }
        }
        report.written += target.import(&good).await.map_err(stopped("write"))?;
        progress(done, total);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // Verify: each message identical, and in the same order.
    after = None;
    let mut last_seq = 0;
    loop {
        let page = source
            .page(after, page_limit())
            .await
            .map_err(stopped("read"))?;
        done += (page.items.len() + page.corrupt.len()) as u64;
        for message in &page.items {
            if report.unreadable.contains(&message.digest.to_string()) {
                continue;
            }
            let copy = target
                .get(&message.digest)
                .await
                .map_err(stopped("read back"))?;
            match copy {
                None => report.differ.push(format!("{} missing", message.digest)),
                Some(copy) if copy.body != message.body => {
                    report
                        .differ
                        .push(format!("{} has another body", message.digest));
                }
                Some(copy) if copy.created_at_ms != message.created_at_ms => {
                    report
                        .differ
                        .push(format!("{} has another time", message.digest));
                }
                Some(copy) if copy.seq <= last_seq => {
                    report
                        .differ
                        .push(format!("{} is out of order", message.digest));
                }
                Some(copy) => {
                    last_seq = copy.seq;
                    report.verified += 1;
                }
            }
        }
        progress(done, total);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    source.close().await;
    target.close().await;
    Ok(Some(report))
}

async fn copy_kv(
    data_dir: &Path,
    to: &SecretString,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Copied>, CopyError> {
    use kv::ports::KvStore as _;
    let old = data_dir.join("kv.redb");
    let new = data_dir.join("kv.fjall");
    if !old.exists() && !new.exists() {
        return Ok(None);
    }
    let source = kv::adapters::migrate::open_embedded(&old, &new)
        .map_err(stopped("open the embedded store"))?;
    let target = kv::adapters::postgres::PostgresKvStore::connect(to.expose_secret())
        .await
        .map_err(stopped("connect to PostgreSQL"))?;
    let every = kv::domain::KeyPrefix::new("").map_err(stopped("list"))?;
    let mut report = Copied::default();
    let mut keys = Vec::new();
    let mut after = None;
    loop {
        let page = source
            .page(&every, after.as_ref(), page_limit())
            .await
            .map_err(stopped("read"))?;
        report.unreadable.extend(page.corrupt);
        keys.extend(page.entries.into_iter().map(|entry| entry.key));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    report.total = (keys.len() + report.unreadable.len()) as u64;
    let total = keys.len() as u64 * 2;
    let mut done = 0;
    for key in &keys {
        let record = source.get(key).await.map_err(stopped("read"))?;
        let copy = target.get(key).await.map_err(stopped("read back"))?;
        if let Some(record) = record
            && copy.as_ref() != Some(&record)
        {
            target.put(key, &record).await.map_err(stopped("write"))?;
            report.written += 1;
        }
        done += 1;
        progress(done, total);
    }
    for key in &keys {
        let record = source.get(key).await.map_err(stopped("read"))?;
        let copy = target.get(key).await.map_err(stopped("read back"))?;
        if record == copy {
            report.verified += 1;
        } else {
            report.differ.push(format!("{} differs", key.as_str()));
        }
        done += 1;
        progress(done, total);
    }
    source.close().await;
    target.close().await;
    Ok(Some(report))
}

async fn copy_counters(
    data_dir: &Path,
    to: &SecretString,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Copied>, CopyError> {
    use counters::ports::CounterStore as _;
    let path = data_dir.join("counters.redb");
    if !path.exists() {
        return Ok(None);
    }
    let source: Arc<dyn counters::ports::CounterStore> = Arc::new(
        counters::adapters::redb::RedbCounterStore::open(&path)
            .map_err(stopped("open the embedded store"))?,
    );
    // Increments the journal holds that the store does not have yet go
    // into it first, as a server's start and stop would.
    let engine = counters::engine::Engine::open(
        source.clone(),
        data_dir,
        counters::engine::EngineConfig {
            durability: counters::engine::Durability::Journal,
            flush_interval: Duration::from_secs(1),
            flush_max_keys: 10_000,
            max_pending_keys: usize::MAX,
            max_cached_keys: 0,
        },
    )
    .await
    .map_err(|e| CopyError(format!("replay the counters journal: {e:#}")))?;
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    engine.clone().run_flusher(stop).await;
    let instance = engine.instance().to_owned();
    drop(engine);

    let target = counters::adapters::postgres::PostgresCounterStore::connect(to.expose_secret())
        .await
        .map_err(stopped("connect to PostgreSQL"))?;
    let every = counters::domain::KeyPrefix::default();
    let mut pages = Vec::new();
    let mut after = None;
    let mut report = Copied::default();
    loop {
        let page = source
            .page(&every, after.as_ref(), page_limit())
            .await
            .map_err(stopped("read"))?;
        report.total += (page.items.len() + page.corrupt.len()) as u64;
        report.unreadable.extend(page.corrupt);
        after.clone_from(&page.next);
        pages.push(page.items);
        if after.is_none() {
            break;
        }
    }
    let total = report.total * 2;
    let mut done = 0;
    // Each page is one batch under the source's own flush id: a rerun
    // finds its number already flushed and adds nothing.
    let copier = format!("copy-of-{instance}");
    for (n, page) in pages.iter().enumerate() {
        let seq = n as u64 + 1;
        let already = target
            .flushed_seq(&copier)
            .await
            .map_err(stopped("read back"))?;
        if seq > already {
            target
                .apply(&counters::ports::FlushBatch {
                    instance: copier.clone(),
                    seq,
                    deltas: page.iter().map(|c| (c.key.clone(), c.value)).collect(),
                })
                .await
                .map_err(stopped("write"))?;
            report.written += page.len() as u64;
        }
        done += page.len() as u64;
        progress(done, total);
    }
    for counter in pages.iter().flatten() {
        match target
            .load(&counter.key)
            .await
            .map_err(stopped("read back"))?
        {
            Some(value) if value == counter.value => report.verified += 1,
            other => report.differ.push(format!(
                "{} is {} in PostgreSQL, {} here",
                counter.key,
                other.map_or_else(|| "missing".to_owned(), |v| v.to_string()),
                counter.value
            )),
        }
        done += 1;
        progress(done, total);
    }
    source.close().await;
    target.close().await;
    Ok(Some(report))
}
