//! The server as a value: [`Application::build`] resolves the configuration,
//! opens every store, builds the chosen services and binds the listener (port
//! 0 allowed); [`Application::run_until_stopped`] serves until a token is
//! cancelled, then drains. `quintet serve` runs it on SIGTERM's token; API
//! tests run it in-process on their own runtime.

use std::net::SocketAddr;
use std::time::Instant;

use clap::ValueEnum;
use platform::Server;
use tokio_util::sync::CancellationToken;

use crate::cli::{ServeArgs, ServiceName};
use crate::serve::{self, Stores};
use crate::stores::{Configured, EventsUrl, QueueUrl, StoreUrl};

const STORE: &str = "--store (QUINTET_STORE)";
const KV_STORE: &str = "--kv-store (QUINTET_KV_STORE)";
const RECEIPTS_QUEUE: &str = "--receipts-queue (QUINTET_RECEIPTS_QUEUE)";
const RECEIPTS_LEDGER: &str = "--receipts-ledger (QUINTET_RECEIPTS_LEDGER)";
const CALC_EVENTS: &str = "--calc-events (QUINTET_CALC_EVENTS)";

/// An option value `serve` refuses, found before anything binds or touches
/// the data directory. Its text starts `invalid value for --option`; the
/// command line prints it with the usage and exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidConfig(String);

impl InvalidConfig {
    fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }

    fn option(option: &str, error: impl std::fmt::Display) -> Self {
        Self(format!("invalid value for {option}: {error}"))
    }
}

/// A built, bound, not yet serving quintet: every chosen service on its
/// store, behind one listener.
pub struct Application {
    server: Server,
    started: Instant,
    /// `--services` as given, each once, for the `listening` line.
    services: String,
    /// Where each service keeps its data, for the `listening` line.
    stores: String,
}

impl Application {
    /// Resolves the configuration, opens the stores, builds the services and
    /// binds the listener. A refused option value is an [`InvalidConfig`]
    /// (nothing is opened then); a store or listener that cannot be opened
    /// is the error naming it.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        let started = Instant::now();
        // Everything is validated before anything binds or touches the data dir.
        let port = std::env::var("PORT").ok();
        let config = args
            .server
            .resolve(port.as_deref())
            .map_err(InvalidConfig::new)?;
        let store: StoreUrl = args
            .store
            .parse()
            .map_err(|e| InvalidConfig::option("--store", e))?;
        let kv_store = match &args.kv_store {
            Some(text) => Configured::new(
                text.parse()
                    .map_err(|e| InvalidConfig::option("--kv-store", e))?,
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
                .map_err(InvalidConfig::new)?;
            if args.kv.kv_write_format == kv::WriteFormat::Seed
                && !matches!(kv_store.url, StoreUrl::DynamoDb { .. })
            {
                return Err(InvalidConfig::new(format!(
                    "invalid value 'seed' for --kv-write-format: the seed layout is the original \
                     services' DynamoDB table, and kv's store is {}; use --kv-store dynamodb://… or \
                     --kv-write-format quintet",
                    kv_store.url.describe()
                ))
                .into());
            }
        }
        if services.contains(&ServiceName::Receipts) {
            args.receipts.check().map_err(InvalidConfig::new)?;
        }
        let receipts_queue = Configured::new(
            args.receipts
                .receipts_queue
                .parse::<QueueUrl>()
                .map_err(|e| InvalidConfig::option("--receipts-queue", e))?,
            RECEIPTS_QUEUE,
        );
        // Without --receipts-ledger the ledger is in --store (already checked
        // above), where a DynamoDB table defaults to the seed's ledger table.
        let receipts_ledger = match &args.receipts.receipts_ledger {
            Some(text) => Configured::new(
                StoreUrl::receipts_ledger(text)
                    .map_err(|e| InvalidConfig::option("--receipts-ledger", e))?,
                RECEIPTS_LEDGER,
            ),
            None => Configured::new(
                StoreUrl::receipts_ledger(&args.store)
                    .map_err(|e| InvalidConfig::option("--store", e))?,
                STORE,
            ),
        };
        let calc_events = Configured::new(
            EventsUrl::parse(args.calc.calc_events.as_deref(), &store)
                .map_err(|e| InvalidConfig::option("--calc-events", e))?,
            if args.calc.calc_events.is_some() {
                CALC_EVENTS
            } else {
                STORE
            },
        );
        // An existing data directory must be owner-only (a new one is created so).
        if config.data_dir.exists() {
            platform::private::dir(&config.data_dir, "--data-dir")?;
        }
        // The metrics recorder before any service, so their descriptions reach it.
        platform::telemetry::metrics_handle();
        crate::metrics::describe();

        let stores = Stores {
            store: Configured::new(store, STORE),
            kv_store,
            receipts_queue,
            receipts_ledger,
            calc_events,
        };
        // Boxed: building holds every service's constructor future at once.
        let (built, kept) =
            Box::pin(serve::build_services(&args, services, &config, stores)).await?;
        let server = Server::bind(config, built).await?;
        Ok(Self {
            server,
            started,
            services: names(&args.services),
            stores: kept.join("; "),
        })
    }

    /// The address the listener is bound to (the port chosen when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The base URL clients use, e.g. `https://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Logs the `listening` line, then serves until `shutdown` is cancelled,
    /// drains and closes the stores.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let url = self.server.url();
        // Build start to listening: the twelve-factor "fast start", reported.
        let startup = self.started.elapsed().as_secs_f64();
        metrics::gauge!(crate::metrics::STARTUP_SECONDS).set(startup);
        tracing::info!(
            %url,
            services = %self.services,
            stores = %self.stores,
            startup_ms = (startup * 10_000.0).round() / 10.0,
            "listening"
        );
        tracing::info!(docs = %format!("{url}/docs"), metrics = %format!("{url}/metrics"), "ops routes");
        self.server.run(shutdown).await
    }
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
        .filter_map(ValueEnum::to_possible_value)
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
