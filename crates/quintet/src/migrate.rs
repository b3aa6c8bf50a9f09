//! `quintet migrate`: moves the embedded stores a data directory holds in
//! the redb engine's files (`messages.redb`, `kv.redb`) into the engine the
//! server now opens (`messages.fjall/`, `kv.fjall/`), while no server uses the directory. The server
//! does the same on start; this command does it ahead of time, with progress
//! and the verified count on the terminal.
//!
//! Interrupting it (kill -9 included) loses nothing: run it again to
//! resume. The old file is renamed `*.migrated` once every record was
//! copied and compared; delete it when the new store has served well.
//!
//! Exit codes: 0 every store migrated (or had nothing to migrate); 2 a
//! store could not be migrated (in use by a running server, unreadable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use platform::embedded::Migrated;

use crate::verify::ProgressLine;

/// The services whose embedded store moved to another engine.
// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateService {
    Messages,
    Kv,
}

impl MigrateService {
    fn name(self) -> &'static str {
        match self {
            MigrateService::Messages => "messages",
            MigrateService::Kv => "kv",
        }
    }
}

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The data directory whose redb store files (`messages.redb`, `kv.redb`) to migrate. The server
    /// using it must be stopped: a store it holds is refused.
    #[arg(
        long,
        env = "QUINTET_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Stores to migrate, comma separated.
    #[arg(
        long,
        env = "QUINTET_MIGRATE_SERVICES",
        value_enum,
        value_delimiter = ',',
        default_value = "messages,kv"
    )]
    pub services: Vec<MigrateService>,
}

/// Runs the migration and returns the process exit code.
pub fn run(args: &MigrateArgs) -> ExitCode {
    let mut failed = false;
    for &service in &args.services {
        let name = service.name();
        let old = args.data_dir.join(format!("{name}.redb"));
        let new = args.data_dir.join(format!("{name}.fjall"));
        if !old.exists() {
            println!("{name}: nothing to migrate (no {} here)", old.display());
            continue;
        }
        let mut progress = ProgressLine::new(name);
        let mut show = |done, total| progress.show(done, total);
        let result: Result<Migrated, Box<dyn std::error::Error>> = match service {
            MigrateService::Messages => {
                messages::adapters::migrate::from_redb(&old, &new, &mut show).map_err(Into::into)
            }
            MigrateService::Kv => {
                kv::adapters::migrate::from_redb(&old, &new, &mut show).map_err(Into::into)
            }
        };
        progress.finish();
        match result {
            Ok(report) => {
                let skipped = if report.unreadable > 0 {
                    format!(
                        ", {} order entr(ies) naming no record skipped (`quintet verify` of the \
                         old file names them)",
                        report.unreadable
                    )
                } else {
                    String::new()
                };
                println!(
                    "{name}: {} record(s) in {}, {} copied by this run, {} verified byte for \
                     byte in {}{skipped}; the old file is now {} (delete it when the new store \
                     has served well)",
                    report.total,
                    old.display(),
                    report.copied,
                    report.verified,
                    new.display(),
                    report.old_file.display()
                );
            }
            Err(error) => {
                eprintln!("error: {name}: {error}; nothing was lost: run migrate again to resume");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
