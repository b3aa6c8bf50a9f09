//! The command line: `quintet serve` and one client subcommand per service.

use clap::{Args, Parser, Subcommand, ValueEnum};

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Parser)]
#[command(
    name = "quintet",
    version,
    about = "One binary, five backend services: the server, their clients and the admin tool.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the services on one listener (REST, gRPC and ops routes).
    Serve(Box<ServeArgs>),
    /// Client for the messages service (content-addressed message store).
    Messages(messages::api::cli::MessagesCli),
    /// Client for the counters service (write-behind increments).
    Counters(counters::api::cli::CountersCli),
    /// Client for the kv service (envelope-encrypted key-value store).
    Kv(kv::api::cli::KvCli),
    /// Client for the receipts service (submit validation jobs).
    Receipts(receipts::api::cli::ReceiptsCli),
    /// Read and write the receipts service's queues (results, dead letters).
    Queue(receipts::api::cli::QueueCli),
    /// Client for the calc service (gRPC calculator).
    Calc(calc::api::cli::CalcCli),
    /// Check every record of the embedded stores in a data directory (server stopped); exit 0
    /// when all pass, 1 when corrupt records were found, 2 when a store could not be read.
    Verify(Box<crate::verify::VerifyArgs>),
    /// Move the embedded stores a data directory keeps in redb files into the engine the server
    /// now uses (server stopped; resumable; every record compared): exit 0 when done, 2 when a
    /// store could not be migrated.
    Migrate(crate::migrate::MigrateArgs),
    /// Copy the embedded stores of a data directory (messages, kv, counters) into PostgreSQL,
    /// for a fleet of replicas (server stopped; safe to rerun; every record read back and
    /// compared): exit 0 when all verified, 1 when records differ, 2 when a store could not be
    /// copied.
    Copy(crate::copy::CopyArgs),
    /// A verifyReceipt simulator (Apple's legacy receipt validation API) for tests and demos.
    AppleSim(receipts::apple_sim::SimArgs),
}

/// Services `quintet serve` can run.
// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum ServiceName {
    Messages,
    Counters,
    Kv,
    Receipts,
    Calc,
}

// clap turns doc comments into help text: these would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: platform::ServerConfig,

    /// Services to run, comma separated (`kv` also serves the seed's TCP protocol on
    /// --kv-tcp-addr).
    #[arg(
        long,
        env = "QUINTET_SERVICES",
        value_enum,
        value_delimiter = ',',
        default_value = "messages,counters,calc"
    )]
    pub services: Vec<ServiceName>,

    /// Threads serving connections (each connection stays on one), and as many again
    /// running the services' background work; by default one per CPU core. Where the
    /// server shares its cores with other busy processes (a database, a load generator),
    /// fewer threads spend less time waking each other (BENCHMARKS.md).
    /// At most 256: each is a thread and a runtime of its own.
    #[arg(long, env = "QUINTET_WORKER_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: Option<u16>,

    /// Where services keep their data: `redb` (embedded files in --data-dir), `redb:///some/dir`,
    /// or a `PostgreSQL` URL `postgres://user:password@host:5432/db`.
    // A String, parsed in `serve`, so a refused URL is never echoed with its password.
    #[arg(
        long,
        env = "QUINTET_STORE",
        default_value = "redb",
        hide_env_values = true
    )]
    pub store: String,

    /// kv's own store, in place of --store: any --store value, or `DynamoDB` in the seed's table
    /// shape, `dynamodb://[table][?region=…&endpoint=…&create=true]` (table `key_value_table`
    /// by default; credentials from the AWS SDK's standard chain).
    #[arg(long, env = "QUINTET_KV_STORE", hide_env_values = true)]
    pub kv_store: Option<String>,

    #[command(flatten)]
    pub messages: messages::MessagesConfig,

    #[command(flatten)]
    pub counters: counters::CountersConfig,

    #[command(flatten)]
    pub kv: kv::KvConfig,

    #[command(flatten)]
    pub receipts: receipts::ReceiptsConfig,

    #[command(flatten)]
    pub calc: calc::CalcConfig,
}

/// Exits 2 with a message naming the option, as clap does for values it
/// refuses: the usage shown is `subcommand`'s (`quintet serve`, `quintet
/// verify`), the command that was run.
pub(crate) fn refuse(subcommand: &str, message: impl std::fmt::Display) -> ! {
    use clap::CommandFactory as _;
    let mut cli = Cli::command();
    // Gives subcommands their full names (`quintet serve`) for the usage line.
    cli.build();
    match cli.find_subcommand_mut(subcommand) {
        Some(command) => command
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
        None => cli
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
    }
}
