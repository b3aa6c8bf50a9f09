//! The quintet binary: parses the command line, builds adapters from config
//! URLs ([`stores`]), hands them to the services and serves them ([`serve`]),
//! or runs a service's client. Wiring only; no business logic lives here.
//! [`app::Application`] is the server as a value, for `serve` and for tests.

pub mod app;
pub mod cli;
pub mod copy;
pub mod metrics;
pub mod migrate;
pub mod serve;
pub mod stores;
pub mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // Every file and directory this process creates is owner-only, whoever
    // creates it: quintet's own code asks for 0600/0700 explicitly, and the
    // storage engines' tables and journals (fjall's) get it from here.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    let cli = match cli.command {
        // Synchronous file scans: no runtime.
        Command::Verify(args) => return verify::run(&args),
        Command::Migrate(args) => return migrate::run(&args),
        command => Cli { command },
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Command::Serve(args) = &cli.command
        && let Some(workers) = args.worker_threads
    {
        builder.worker_threads(usize::from(workers));
    }
    let runtime = match builder.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        // Its exit code tells verified, differing and failed apart.
        Command::Copy(args) => return runtime.block_on(copy::run(args)),
        command => command,
    };
    let result = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Messages(args) => messages::api::cli::run(args).await,
            Command::Counters(args) => counters::api::cli::run(args).await,
            Command::Kv(args) => kv::api::cli::run(args).await,
            Command::Calc(args) => calc::api::cli::run(args).await,
            Command::Receipts(args) => receipts::api::cli::run_receipts(args).await,
            Command::Queue(args) => receipts::api::cli::run_queue(args).await,
            Command::Verify(_) | Command::Migrate(_) | Command::Copy(_) => {
                unreachable!("verify, migrate and copy are run above")
            }
            Command::AppleSim(args) => {
                // Its only output is the log: where it listens and what it is.
                platform::telemetry::init_logging(platform::config::LogFormat::Auto);
                let stop = platform::shutdown_signal();
                args.run(async move { stop.cancelled().await })
                    .await
                    .map_err(anyhow::Error::from)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
