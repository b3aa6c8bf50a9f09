//! `quintet verify`: checks every record of the embedded stores in a
//! data directory, while no server uses it, and optionally moves the corrupt
//! ones aside. Each store adapter owns its scan (`adapters::<engine>::verify`);
//! this module only picks the files, shows progress and prints the report.
//!
//! Exit codes: 0 every record passed; 1 corrupt records were found (also
//! when `--quarantine` moved them: run verify again to see a clean store);
//! 2 a store could not be scanned (in use by a running server, unreadable).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use platform::integrity::ScanReport;

/// Why a store could not be verified (exit code 2).
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    /// The store could not be opened or scanned (in use, unreadable), or
    /// kv's key provider could not be set up.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// The key provider failed during the scan.
    #[error("{0}; nothing was quarantined")]
    KeyProvider(String),
    /// Not one record authenticates: the keys or namespace are not the server's.
    #[error(
        "none of the {0} records authenticates: the master keys (--kv-key-provider, \
         QUINTET_KV_MASTER_KEY) or --kv-namespace are not the ones the server used; nothing \
         was quarantined"
    )]
    NoneAuthentic(u64),
}

/// The services whose embedded stores verify can scan.
// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyService {
    Messages,
    Counters,
    Kv,
}

impl VerifyService {
    fn name(self) -> &'static str {
        match self {
            VerifyService::Messages => "messages",
            VerifyService::Counters => "counters",
            VerifyService::Kv => "kv",
        }
    }
}

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory whose stores (`messages.fjall`, `counters.redb`, `kv.fjall`) to
    /// check. The server using it must be stopped: a store it holds is refused.
    #[arg(
        long,
        env = "QUINTET_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Stores to check, comma separated.
    #[arg(
        long,
        env = "QUINTET_VERIFY_SERVICES",
        value_enum,
        value_delimiter = ',',
        default_value = "messages,counters,kv"
    )]
    pub services: Vec<VerifyService>,

    /// Move each corrupt record into the `quarantine` table of its own store file (nothing is
    /// deleted): the service then answers 404 for it, and it can be inspected.
    #[arg(long)]
    pub quarantine: bool,

    /// kv's options, read as `quintet serve` reads them: the key provider and namespace
    /// decide whether each kv record is authentic.
    #[command(flatten)]
    pub kv: kv::KvConfig,
}

/// Runs verify and returns the process exit code. A refused kv option
/// exits 2 with the usage before any store is scanned.
pub fn run(args: &VerifyArgs) -> ExitCode {
    if args.services.contains(&VerifyService::Kv)
        && let Err(refused) = args.kv.check(false)
    {
        crate::cli::refuse("verify", refused);
    }
    let mut found = 0usize;
    let mut failed = false;
    for service in &args.services {
        let path = store_path(&args.data_dir, *service);
        if !path.exists() {
            println!(
                "{}: no store at {}, skipped",
                service.name(),
                path.display()
            );
            continue;
        }
        let mut progress = ProgressLine::new(service.name());
        let result = match service {
            VerifyService::Messages if is_fjall(&path) => {
                messages::adapters::fjall::verify(&path, args.quarantine, &mut |d, t| {
                    progress.show(d, t);
                })
                .map_err(|e| VerifyError::Store(e.into()))
            }
            VerifyService::Messages => {
                messages::adapters::redb::verify(&path, args.quarantine, &mut |d, t| {
                    progress.show(d, t);
                })
                .map_err(|e| VerifyError::Store(e.into()))
            }
            VerifyService::Counters => {
                counters::adapters::redb::verify(&path, args.quarantine, &mut |d, t| {
                    progress.show(d, t);
                })
                .map_err(|e| VerifyError::Store(e.into()))
            }
            VerifyService::Kv => verify_kv(&path, args, &mut |d, t| progress.show(d, t)),
        };
        progress.finish();
        match result {
            Ok(report) => {
                found += report.corrupt.len();
                print_report(service.name(), &path, &report);
            }
            Err(error) => {
                eprintln!(
                    "error: {}: {}",
                    service.name(),
                    platform::backend::chain(&error)
                );
                failed = true;
            }
        }
    }
    if failed {
        println!("verify incomplete: a store could not be scanned (see above)");
        return ExitCode::from(2);
    }
    if found > 0 {
        let next = if args.quarantine {
            "moved to each store's quarantine table; run verify again to confirm"
        } else {
            "run again with --quarantine to move them aside (the service then answers 404 for them)"
        };
        println!("{found} corrupt record(s) found: {next}");
        ExitCode::from(1)
    } else {
        println!("all records passed their checks");
        ExitCode::SUCCESS
    }
}

/// Where `service` keeps its store in `data_dir`: messages and kv in
/// `<service>.fjall/`, or in `<service>.redb` while that is not migrated;
/// counters in `counters.redb`.
fn store_path(data_dir: &std::path::Path, service: VerifyService) -> PathBuf {
    let redb = data_dir.join(format!("{}.redb", service.name()));
    match service {
        VerifyService::Messages | VerifyService::Kv if !redb.exists() => {
            data_dir.join(format!("{}.fjall", service.name()))
        }
        _ => redb,
    }
}

/// Whether `path` is a fjall store (a directory), not a redb file.
fn is_fjall(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "fjall")
}

/// kv's records, each authenticated with the server's key provider. A scan
/// in which no record authenticates says the keys or the namespace are not
/// the server's (nothing is quarantined then); with `--quarantine`, a second
/// pass moves what the first found.
fn verify_kv(
    path: &std::path::Path,
    args: &VerifyArgs,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ScanReport, VerifyError> {
    let mut checker = kv::engine::verify::RecordChecker::new(&args.kv, &args.data_dir)
        .map_err(|e| VerifyError::Store(e.into()))?;
    let mut scan = |quarantine: bool, checker: &mut kv::engine::verify::RecordChecker| {
        let mut check =
            |key: &kv::domain::KvKey, record: &kv::domain::SealedRecord| checker.check(key, record);
        if is_fjall(path) {
            kv::adapters::fjall::verify(path, quarantine, &mut *progress, &mut check)
        } else {
            kv::adapters::redb::verify(path, quarantine, &mut *progress, &mut check)
        }
        .map_err(|e| VerifyError::Store(e.into()))
    };
    let report = scan(false, &mut checker)?;
    if let Some(failure) = checker.failure() {
        return Err(VerifyError::KeyProvider(failure.to_string()));
    }
    if report.scanned > 0 && checker.authentic() == 0 {
        return Err(VerifyError::NoneAuthentic(report.scanned));
    }
    if args.quarantine && !report.corrupt.is_empty() {
        return scan(true, &mut checker);
    }
    Ok(report)
}

fn print_report(service: &str, path: &std::path::Path, report: &ScanReport) {
    for record in &report.corrupt {
        println!(
            "CORRUPT {service} table={} key={}: {}",
            record.table, record.key, record.problem
        );
    }
    let mut summary = format!(
        "{service}: {} record(s) scanned in {}, {} corrupt",
        report.scanned,
        path.display(),
        report.corrupt.len()
    );
    if report.unchecked > 0 {
        let _ = write!(
            summary,
            ", {} written by an earlier release without a checksum (checked once the server \
             has opened the store)",
            report.unchecked
        );
    }
    if report.quarantined > 0 {
        let _ = write!(summary, ", {} quarantined", report.quarantined);
    }
    println!("{summary}");
}

/// Progress on stderr: one line rewritten in place on a terminal, a plain
/// line per tenth of the store otherwise (logs, CI).
pub(crate) struct ProgressLine {
    store: &'static str,
    tty: bool,
    last_tenth: u64,
    shown: bool,
}

impl ProgressLine {
    pub(crate) fn new(store: &'static str) -> Self {
        Self {
            store,
            tty: std::io::stderr().is_terminal(),
            last_tenth: 0,
            shown: false,
        }
    }

    pub(crate) fn show(&mut self, done: u64, total: u64) {
        let total = total.max(done).max(1);
        let tenth = done * 10 / total;
        let mut err = std::io::stderr().lock();
        if self.tty {
            if done.is_multiple_of(256) || done == total || tenth > self.last_tenth {
                self.last_tenth = tenth;
                let _ = write!(err, "\r{}: {done}/{total} records", self.store);
                self.shown = true;
            }
        } else if tenth > self.last_tenth {
            self.last_tenth = tenth;
            let _ = writeln!(
                err,
                "{}: {done}/{total} records ({}%)",
                self.store,
                tenth * 10
            );
        }
    }

    pub(crate) fn finish(&mut self) {
        if self.tty && self.shown {
            let _ = writeln!(std::io::stderr());
        }
    }
}
