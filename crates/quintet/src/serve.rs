//! `quintet serve`: resolve config, build each chosen service on its store, serve.

use clap::CommandFactory;
use platform::{Server, shutdown_signal, telemetry};

use crate::cli::{Cli, ServeArgs, ServiceName};
use crate::stores;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let port = std::env::var("PORT").ok();
    let config = match args.server.resolve(port.as_deref()) {
        Ok(config) => config,
        // Exit code 2 and a message naming the option, before anything binds.
        Err(error) => Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, error)
            .exit(),
    };
    telemetry::init_logging(config.log_format);

    let mut services = Vec::new();
    let mut names = args.services.clone();
    names.dedup();
    for name in names {
        match name {
            ServiceName::Messages => {
                let store = stores::messages_store(&args.store, &config.data_dir).await?;
                services.push(messages::service(store, args.messages.clone()));
            }
        }
    }

    let server = Server::bind(config, services).await?;
    let url = server.url();
    tracing::info!(%url, store = %args.store.describe(), services = ?args.services, "listening");
    tracing::info!(docs = %format!("{url}/docs"), metrics = %format!("{url}/metrics"), "ops routes");
    server.run(shutdown_signal()).await
}
