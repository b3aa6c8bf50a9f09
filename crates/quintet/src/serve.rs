//! `quintet serve`: build the application ([`crate::app`]), serve it until
//! SIGTERM or SIGINT, then drain.

use platform::config::ResolvedConfig;
use platform::{Service, shutdown_signal, telemetry};

use crate::app::{Application, InvalidConfig};
use crate::cli::{ServeArgs, ServiceName, refuse};
use crate::stores::{self, Configured, EventsUrl, QueueUrl, StoreUrl};

/// Runs `quintet serve` until SIGTERM or SIGINT. A refused option value
/// exits 2 with the usage, before anything binds or touches the data dir.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let otlp = args
        .server
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| platform::trace::Otlp {
            endpoint,
            protocol: args.server.otlp_protocol,
        });
    let traces = match telemetry::init(args.server.log_format, otlp) {
        Ok(traces) => traces,
        Err(refused) => refuse("serve", format!("invalid value for {refused}")),
    };
    let app = match Application::build(args).await {
        Ok(app) => app,
        Err(error) => match error.downcast_ref::<InvalidConfig>() {
            Some(refused) => refuse("serve", refused),
            None => return Err(error),
        },
    };
    // Before the `listening` line: a SIGTERM right after it must drain, not kill.
    let shutdown = shutdown_signal();
    let served = app.run_until_stopped(shutdown).await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    served
}

/// Where each service keeps its data, each URL with the option that set it.
pub(crate) struct Stores {
    pub(crate) store: Configured<StoreUrl>,
    pub(crate) kv_store: Configured<StoreUrl>,
    pub(crate) receipts_queue: Configured<QueueUrl>,
    pub(crate) receipts_ledger: Configured<StoreUrl>,
    pub(crate) calc_events: Configured<EventsUrl>,
}

/// Builds each chosen service on its store; also returns where each keeps
/// its data, for the `listening` line.
pub(crate) async fn build_services(
    args: &ServeArgs,
    services: Vec<ServiceName>,
    config: &ResolvedConfig,
    stores: Stores,
) -> anyhow::Result<(Vec<Service>, Vec<String>)> {
    let Stores {
        store,
        kv_store,
        receipts_queue,
        receipts_ledger,
        calc_events,
    } = stores;
    let mut built = Vec::new();
    // Where each service keeps its data, for the `listening` line.
    let mut kept = Vec::new();
    let ctx = platform::service::Context {
        data_dir: config.data_dir.clone(),
    };
    for name in &services {
        match name {
            ServiceName::Messages => {
                let messages_store = stores::messages_store(&store, &config.data_dir).await?;
                kept.push(format!("messages: {}", store.url.describe()));
                let backends = messages::ports::Backends {
                    store: messages_store,
                };
                built.push(messages::service(args.messages.clone(), backends, &ctx).await?);
            }
            ServiceName::Counters => {
                let counters_store = stores::counters_store(&store, &config.data_dir).await?;
                kept.push(format!("counters: {}", store.url.describe()));
                let backends = counters::ports::Backends {
                    store: counters_store,
                };
                built.push(counters::service(args.counters.clone(), backends, &ctx).await?);
            }
            ServiceName::Kv => {
                tracing::info!(store = %kv_store.url.describe(), "kv store");
                let store = stores::kv_store(&kv_store, &config.data_dir).await?;
                kept.push(format!("kv: {}", kv_store.url.describe()));
                built.push(
                    kv::service(
                        args.kv.clone(),
                        kv::ports::Backends { store },
                        &platform::service::Context {
                            data_dir: config.data_dir.clone(),
                        },
                    )
                    .await?,
                );
            }
            ServiceName::Calc => {
                tracing::info!(events = %calc_events.url.describe(), "calc event log");
                let log = stores::calc_event_log(&calc_events, &config.data_dir).await?;
                kept.push(format!("calc events: {}", calc_events.url.describe()));
                let backends = calc::ports::Backends { events: log };
                built.push(calc::service(args.calc.clone(), backends, &ctx).await?);
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
    Ok((built, kept))
}
