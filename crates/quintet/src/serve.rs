//! `quintet serve`: resolve config, build each chosen service on its store, serve.

use clap::CommandFactory;
use clap::ValueEnum;
use platform::{Server, shutdown_signal, telemetry};

use crate::cli::{Cli, ServeArgs, ServiceName};
use crate::stores::{self, Configured, EventsUrl, QueueUrl, StoreUrl};

/// Exits 2 with a message naming the option, as clap does for values it
/// refuses: the usage shown is `quintet serve`'s, the command that was run.
fn invalid(message: impl std::fmt::Display) -> ! {
    let mut cli = Cli::command();
    // Gives subcommands their full names (`quintet serve`) for the usage line.
    cli.build();
    match cli.find_subcommand_mut("serve") {
        Some(serve) => serve
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
        None => cli
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit(),
    }
}

const STORE: &str = "--store (QUINTET_STORE)";
const KV_STORE: &str = "--kv-store (QUINTET_KV_STORE)";
const RECEIPTS_QUEUE: &str = "--receipts-queue (QUINTET_RECEIPTS_QUEUE)";
const RECEIPTS_LEDGER: &str = "--receipts-ledger (QUINTET_RECEIPTS_LEDGER)";
const CALC_EVENTS: &str = "--calc-events (QUINTET_CALC_EVENTS)";

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Everything is validated before anything binds or touches the data dir.
    let port = std::env::var("PORT").ok();
    let config = args
        .server
        .resolve(port.as_deref())
        .unwrap_or_else(|e| invalid(e));
    let store: StoreUrl = args
        .store
        .parse()
        .unwrap_or_else(|e| invalid(format!("invalid value for --store: {e}")));
    let kv_store = match &args.kv_store {
        Some(text) => Configured::new(
            text.parse()
                .unwrap_or_else(|e| invalid(format!("invalid value for --kv-store: {e}"))),
            KV_STORE,
        ),
        None => Configured::new(store.clone(), STORE),
    };
    let mut services = args.services.clone();
    services.sort();
    services.dedup();
    if services.contains(&ServiceName::Kv) {
        args.kv
            .check(!config.tokens.is_empty())
            .unwrap_or_else(|e| invalid(e));
        if args.kv.kv_write_format == kv::WriteFormat::Seed
            && !matches!(kv_store.url, StoreUrl::DynamoDb { .. })
        {
            invalid(format!(
                "invalid value 'seed' for --kv-write-format: the seed layout is the original \
                 services' DynamoDB table, and kv's store is {}; use --kv-store dynamodb://… or \
                 --kv-write-format quintet",
                kv_store.url.describe()
            ));
        }
    }
    let receipts_queue = Configured::new(
        args.receipts
            .receipts_queue
            .parse::<QueueUrl>()
            .unwrap_or_else(|e| invalid(format!("invalid value for --receipts-queue: {e}"))),
        RECEIPTS_QUEUE,
    );
    // Without --receipts-ledger the ledger is in --store (already checked
    // above), where a DynamoDB table defaults to the seed's ledger table.
    let receipts_ledger = match &args.receipts.receipts_ledger {
        Some(text) => Configured::new(
            StoreUrl::receipts_ledger(text)
                .unwrap_or_else(|e| invalid(format!("invalid value for --receipts-ledger: {e}"))),
            RECEIPTS_LEDGER,
        ),
        None => Configured::new(
            StoreUrl::receipts_ledger(&args.store)
                .unwrap_or_else(|e| invalid(format!("invalid value for --store: {e}"))),
            STORE,
        ),
    };
    let calc_events = Configured::new(
        EventsUrl::parse(args.calc.calc_events.as_deref(), &store)
            .unwrap_or_else(|e| invalid(format!("invalid value for --calc-events: {e}"))),
        if args.calc.calc_events.is_some() {
            CALC_EVENTS
        } else {
            STORE
        },
    );
    telemetry::init_logging(config.log_format);
    // An existing data directory must be owner-only (a new one is created so).
    if config.data_dir.exists() {
        platform::private::dir(&config.data_dir, "--data-dir")?;
    }

    let store = Configured::new(store, STORE);
    let mut built = Vec::new();
    // Where each service keeps its data, for the `listening` line.
    let mut kept = Vec::new();
    for name in &services {
        match name {
            ServiceName::Messages => {
                let messages_store = stores::messages_store(&store, &config.data_dir).await?;
                kept.push(format!("messages: {}", store.url.describe()));
                built.push(messages::service(messages_store, args.messages.clone()));
            }
            ServiceName::Counters => {
                let counters_store = stores::counters_store(&store, &config.data_dir).await?;
                kept.push(format!("counters: {}", store.url.describe()));
                built.push(
                    counters::service(counters_store, &config.data_dir, args.counters.clone())
                        .await?,
                );
            }
            ServiceName::Kv => {
                tracing::info!(store = %kv_store.url.describe(), "kv store");
                let store = stores::kv_store(&kv_store, &config.data_dir).await?;
                kept.push(format!("kv: {}", kv_store.url.describe()));
                built.push(kv::service(store, &config.data_dir, args.kv.clone()).await?);
            }
            ServiceName::Calc => {
                tracing::info!(events = %calc_events.url.describe(), "calc event log");
                let log = stores::calc_event_log(&calc_events, &config.data_dir).await?;
                kept.push(format!("calc events: {}", calc_events.url.describe()));
                built.push(calc::service(args.calc.clone(), log));
            }
            ServiceName::Receipts => {
                tracing::info!(queue = %receipts_queue.url.describe(), ledger = %receipts_ledger.url.describe(), "receipts queue and ledger");
                let queue = stores::receipts_queue(&receipts_queue, &config.data_dir).await?;
                let ledger = stores::receipts_ledger(&receipts_ledger, &config.data_dir).await?;
                kept.push(format!(
                    "receipts queue: {}; receipts ledger: {}",
                    receipts_queue.url.describe(),
                    receipts_ledger.url.describe()
                ));
                built.push(
                    receipts::service(
                        args.receipts.clone(),
                        receipts::ports::Backends { queue, ledger },
                        &platform::service::Context {
                            data_dir: config.data_dir.clone(),
                        },
                    )
                    .await?,
                );
            }
        }
    }

    let server = Server::bind(config, built).await?;
    // Before the `listening` line: a SIGTERM right after it must drain, not kill.
    let shutdown = shutdown_signal();
    let url = server.url();
    // Process start to listening: the twelve-factor "fast start", reported.
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    metrics::gauge!("quintet_startup_seconds").set(startup_ms / 1000.0);
    tracing::info!(
        %url,
        services = %names(&args.services),
        stores = %kept.join("; "),
        startup_ms = (startup_ms * 10.0).round() / 10.0,
        "listening"
    );
    tracing::info!(docs = %format!("{url}/docs"), metrics = %format!("{url}/metrics"), "ops routes");
    server.run(shutdown).await
}

/// Services by the names `--services` takes, in the order given, each once:
/// `messages,counters,calc`.
fn names(services: &[ServiceName]) -> String {
    let mut seen = Vec::new();
    for service in services {
        if !seen.contains(service) {
            seen.push(*service);
        }
    }
    seen.iter()
        .filter_map(|s| s.to_possible_value())
        .map(|v| v.get_name().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_as_the_flag_takes_them_once_each() {
        assert_eq!(
            names(&[
                ServiceName::Messages,
                ServiceName::Counters,
                ServiceName::Calc,
                ServiceName::Counters
            ]),
            "messages,counters,calc"
        );
    }
}
