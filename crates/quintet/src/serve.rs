//! `quintet serve`: resolve config, build each chosen service on its store, serve.

use clap::CommandFactory;
use platform::{Server, shutdown_signal, telemetry};

use crate::cli::{Cli, ServeArgs, ServiceName};
use crate::stores::{self, EventsUrl, QueueUrl, StoreUrl};

/// Exits 2 with a message naming the option, as clap does for values it refuses.
fn invalid(message: String) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Everything is validated before anything binds or touches the data dir.
    let port = std::env::var("PORT").ok();
    let config = args
        .server
        .resolve(port.as_deref())
        .unwrap_or_else(|e| invalid(e.to_string()));
    let store: StoreUrl = args
        .store
        .parse()
        .unwrap_or_else(|e| invalid(format!("invalid value for --store: {e}")));
    let kv_store: StoreUrl = match &args.kv_store {
        Some(text) => text
            .parse()
            .unwrap_or_else(|e| invalid(format!("invalid value for --kv-store: {e}"))),
        None => store.clone(),
    };
    if args.services.contains(&ServiceName::Kv)
        && args.kv.kv_write_format == kv::WriteFormat::Seed
        && !matches!(kv_store, StoreUrl::DynamoDb { .. })
    {
        invalid(format!(
            "invalid value 'seed' for --kv-write-format: the seed layout is the original \
             services' DynamoDB table, and kv's store is {}; use --kv-store dynamodb://… or \
             --kv-write-format quintet",
            kv_store.describe()
        ));
    }
    let receipts_queue: QueueUrl = args
        .receipts
        .receipts_queue
        .parse()
        .unwrap_or_else(|e| invalid(format!("invalid value for --receipts-queue: {e}")));
    // Without --receipts-ledger the ledger is in --store (already checked
    // above), where a DynamoDB table defaults to the seed's ledger table.
    let receipts_ledger: StoreUrl = match &args.receipts.receipts_ledger {
        Some(text) => StoreUrl::receipts_ledger(text)
            .unwrap_or_else(|e| invalid(format!("invalid value for --receipts-ledger: {e}"))),
        None => StoreUrl::receipts_ledger(&args.store)
            .unwrap_or_else(|e| invalid(format!("invalid value for --store: {e}"))),
    };
    let calc_events = EventsUrl::parse(args.calc.calc_events.as_deref(), &store)
        .unwrap_or_else(|e| invalid(format!("invalid value for --calc-events: {e}")));
    telemetry::init_logging(config.log_format);

    let mut services = Vec::new();
    let mut names = args.services.clone();
    names.sort();
    names.dedup();
    for name in names {
        match name {
            ServiceName::Messages => {
                let messages_store = stores::messages_store(&store, &config.data_dir).await?;
                services.push(messages::service(messages_store, args.messages.clone()));
            }
            ServiceName::Counters => {
                let counters_store = stores::counters_store(&store, &config.data_dir).await?;
                services.push(
                    counters::service(counters_store, &config.data_dir, args.counters.clone())
                        .await?,
                );
            }
            ServiceName::Kv => {
                tracing::info!(store = %kv_store.describe(), "kv store");
                let kv_store = stores::kv_store(&kv_store, &config.data_dir).await?;
                services.push(kv::service(kv_store, &config.data_dir, args.kv.clone()).await?);
            }
            ServiceName::Calc => {
                tracing::info!(events = %calc_events.describe(), "calc event log");
                let log = stores::calc_event_log(&calc_events, &config.data_dir).await?;
                services.push(calc::service(args.calc.clone(), log));
            }
            ServiceName::Receipts => {
                tracing::info!(queue = %receipts_queue.describe(), ledger = %receipts_ledger.describe(), "receipts queue and ledger");
                let queue = stores::receipts_queue(&receipts_queue, &config.data_dir).await?;
                let ledger = stores::receipts_ledger(&receipts_ledger, &config.data_dir).await?;
                services.push(receipts::service(queue, ledger, args.receipts.clone()).await?);
            }
        }
    }

    let server = Server::bind(config, services).await?;
    // Before the `listening` line: a SIGTERM right after it must drain, not kill.
    let shutdown = shutdown_signal();
    let url = server.url();
    // Process start to listening: the twelve-factor "fast start", reported.
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    metrics::gauge!("quintet_startup_seconds").set(startup_ms / 1000.0);
    tracing::info!(%url, store = %store.describe(), services = ?args.services, startup_ms = (startup_ms * 10.0).round() / 10.0, "listening");
    tracing::info!(docs = %format!("{url}/docs"), metrics = %format!("{url}/metrics"), "ops routes");
    server.run(shutdown).await
}
