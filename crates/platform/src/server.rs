//! The one listener: every service's REST routes, every gRPC service and the
//! ops routes, over HTTP/1.1 and HTTP/2 (cleartext or TLS) on one port, with a
//! graceful shutdown that loses no in-flight request.
//!
//! Shutdown order: readiness turns false, the listener closes (new connections
//! are refused), open connections finish their in-flight requests (bounded by
//! `--shutdown-timeout`), then each service's shutdown hooks run (stores close).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::future::BoxFuture;
use http::{HeaderName, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{self, UpgradeableConnection};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::ResolvedConfig;
use crate::connections::{self, Closed};
use crate::health::Health;
use crate::layers::{self, LayerState};
use crate::service::{BackgroundTask, Service, grpc_methods, grpc_router};
use crate::workers::ConnectionRuntimes;
use crate::{ops, telemetry, tls};

/// HTTP/2 receive window per stream and per connection.
const H2_STREAM_WINDOW: u32 = 2 << 20;
const H2_CONNECTION_WINDOW: u32 = 8 << 20;
/// How often an HTTP/2 peer is pinged, and how long its answer may take
/// before the connection is closed as dead.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection over the limit waits for a slot another one gives up.
const SLOT_WAIT: Duration = Duration::from_millis(100);
/// How often histogram samples are folded into buckets when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A listener that could not be bound, named by its address and the
/// option that set it. The OS error is the source (printed after this).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (set by {option}){}", hint(.source))]
pub struct BindError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The option (and variables) that set it.
    pub option: &'static str,
    /// Why the OS refused.
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    /// `addr`, set by `option`, refused with `source`.
    pub fn new(addr: SocketAddr, option: &'static str, source: std::io::Error) -> Self {
        Self {
            addr,
            option,
            source,
        }
    }
}

/// What to do about the usual bind failures.
fn hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            ": another process is listening there; stop it or choose another port"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            ": no network interface of this machine has that address"
        }
        std::io::ErrorKind::PermissionDenied => {
            ": ports below 1024 need privileges; choose a higher port"
        }
        _ => "",
    }
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    health: Arc<Health>,
    config: Arc<ResolvedConfig>,
    on_shutdown: Vec<BoxFuture<'static, ()>>,
    background: Vec<(&'static str, BackgroundTask)>,
}

impl Server {
    /// Builds the routes of every service and binds the listener.
    pub async fn bind(config: ResolvedConfig, services: Vec<Service>) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let tls = match &config.tls {
            Some(source) => Some(tls::acceptor(source, &config.data_dir)?),
            None => None,
        };
        if config.tokens.is_empty() {
            tracing::warn!(
                "no bearer tokens configured: service routes are open to anyone who can connect"
            );
        }

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let mut readiness = Vec::new();
        let mut on_shutdown = Vec::new();
        let mut background = Vec::new();
        let mut docs = Vec::new();
        let mut grpc_names = Vec::new();
        let mut descriptors = vec![tonic_health::pb::FILE_DESCRIPTOR_SET];
        let layer_state = LayerState::new(config.clone());
        let mut app = Router::new();
        let methods = grpc_methods(
            &services
                .iter()
                .flat_map(|s| s.descriptors.iter().copied())
                .collect::<Vec<_>>(),
        )
        .context("reading the services' gRPC descriptors")?;
        for service in services {
            readiness.extend(service.readiness);
            on_shutdown.extend(service.on_shutdown);
            background.extend(service.background);
            docs.push((service.name, service.openapi));
            descriptors.extend(service.descriptors);
            app = app.merge(layers::service_stack(
                service.name,
                service.router,
                &layer_state,
            ));
            for (name, mount) in service.grpc {
                grpc_names.push(name);
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
                let grpc = mount(methods.get(name).map_or(&[][..], Vec::as_slice));
                app = app.merge(layers::service_stack(service.name, grpc, &layer_state));
            }
        }
        let health = Arc::new(Health::new(readiness, reporter, grpc_names));
        let doc = ops::openapi(
            docs,
            ops::Enforced {
                auth: !config.tokens.is_empty(),
                rate_limit: config.rate_limit.is_some(),
                auth_failure_limit: config.auth_failure_limit.is_some(),
            },
        );
        let reflection = reflection(&descriptors)?;
        let app = app
            .merge(layers::ops_stack(
                ops::router(health.clone(), telemetry::metrics_handle(), doc)
                    .merge(grpc_router(health_service, &[]))
                    .merge(reflection),
            ))
            .fallback(crate::error::not_found_or_unimplemented)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
            .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid));

        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|e| BindError::new(config.addr, "--addr, QUINTET_ADDR or PORT", e))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            tls,
            app,
            health,
            config,
            on_shutdown,
            background,
        })
    }

    /// The bound address (the port chosen when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients use, e.g. `https://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Liveness and readiness, as the ops routes report them.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains and closes: readiness
    /// turns false, the listener closes after `--shutdown-delay`, open
    /// connections finish (bounded by `--shutdown-timeout`), background tasks
    /// stop, and the services' shutdown hooks run.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server {
            listener,
            tls,
            app,
            health,
            config,
            on_shutdown,
            background,
            ..
        } = self;
        let upkeep = tokio::spawn(metrics_upkeep(shutdown.clone()));
        let grpc_readiness = tokio::spawn(grpc_follows_readiness(health.clone(), shutdown.clone()));
        let background = Background::start(background);
        let stop_accepting = stop_accepting_after_delay(&shutdown, health, config.shutdown_delay);
        // As many connection runtimes as the main runtime has workers.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let runtimes = ConnectionRuntimes::start(workers)
            .context("cannot start the runtimes connections are served on")?;
        let connections = Connections::new(&config, tls, app, runtimes);
        connections.accept_until(listener, &stop_accepting).await;
        connections.drain(config.shutdown_timeout).await;
        background.stop(config.shutdown_timeout).await;
        for hook in on_shutdown {
            hook.await;
        }
        // Last: a hook may still need what a request spawned on them.
        connections.runtimes.stop().await;
        upkeep.abort();
        grpc_readiness.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The services' background tasks, running until the listener has drained.
struct Background {
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<&'static str>,
}

impl Background {
    /// Starts every task. They stop after the listener drains, so work that
    /// in-flight requests handed them is still done (e.g. a final flush).
    fn start(background: Vec<(&'static str, BackgroundTask)>) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (name, task) in background {
            let future = task(stop.clone());
            tasks.spawn(async move {
                future.await;
                name
            });
        }
        Self { stop, tasks }
    }

    /// Tells every task to stop and waits for them, at most `timeout`.
    async fn stop(mut self, timeout: Duration) {
        self.stop.cancel();
        let stopping = async {
            while let Some(done) = self.tasks.join_next().await {
                match done {
                    Ok(name) => tracing::info!(task = name, "background task stopped"),
                    Err(error) => tracing::error!(%error, "background task failed"),
                }
            }
        };
        if tokio::time::timeout(timeout, stopping).await.is_err() {
            tracing::warn!("shutdown timeout passed; abandoning background tasks still running");
        }
    }
}

/// A token cancelled once the listener should stop accepting. `shutdown`
/// turns readiness false at once; the listener keeps accepting for `delay`
/// (`--shutdown-delay`) so load balancers notice before connections are refused.
fn stop_accepting_after_delay(
    shutdown: &CancellationToken,
    health: Arc<Health>,
    delay: Duration,
) -> CancellationToken {
    let stop_accepting = CancellationToken::new();
    tokio::spawn({
        let (shutdown, stop_accepting) = (shutdown.clone(), stop_accepting.clone());
        async move {
            shutdown.cancelled().await;
            health.start_draining().await;
            if !delay.is_zero() {
                tracing::info!(delay = %humantime::format_duration(delay), "readiness is false; still accepting");
                tokio::time::sleep(delay).await;
            }
            stop_accepting.cancel();
        }
    });
    stop_accepting
}

/// The HTTP/1.1 and HTTP/2 connection settings.
fn connection_builder(config: &ResolvedConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.timeouts.header)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Pings find peers that vanished without a FIN; the idle deadline
        // (connections::drive) closes peers that are there but quiet.
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(256)
        // Flow-control windows sized for MiB-scale bodies: at the 64 KiB
        // protocol default a 1 MiB request body waits on ~16 window
        // updates. Windows are permissions, not buffers; the body limits
        // still bound what is held per request.
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    builder
}

/// The accepted connections: what each is served with, and what tracks them
/// until they drain.
struct Connections {
    app: Router,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    handshake: Duration,
    registry: Arc<connections::Registry>,
    slots: Arc<Semaphore>,
    /// Cancelled when the listener has closed: connections finish their
    /// in-flight requests and close.
    drain: CancellationToken,
    tracker: TaskTracker,
    /// Where accepted connections are served (see [`crate::workers`]).
    runtimes: ConnectionRuntimes,
}

impl Connections {
    fn new(
        config: &ResolvedConfig,
        tls: Option<TlsAcceptor>,
        app: Router,
        runtimes: ConnectionRuntimes,
    ) -> Self {
        Self {
            app,
            tls,
            builder: Arc::new(connection_builder(config)),
            handshake: config.timeouts.handshake,
            registry: connections::Registry::new(config.timeouts),
            slots: Arc::new(Semaphore::new(config.max_connections)),
            drain: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtimes,
        }
    }

    /// Accepts and serves connections until `stop_accepting` is cancelled,
    /// then closes the listener (new connections are refused).
    async fn accept_until(&self, listener: TcpListener, stop_accepting: &CancellationToken) {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop_accepting.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Some(permit) = (tokio::select! {
                () = stop_accepting.cancelled() => break,
                permit = take_slot(&self.slots, &self.registry) => permit,
            }) else {
                continue;
            };
            self.serve(stream, peer, permit);
        }
        drop(listener);
    }

    /// Serves one accepted connection on its own task on the next connection
    /// runtime (TLS handshake first, when configured), holding its slot
    /// until it ends.
    fn serve(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        // Moved to the connection runtime's reactor there.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "cannot hand the connection over");
                return;
            }
        };
        let registered = self.registry.open();
        let conn_state = registered.conn().clone();
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let activity = conn_state.begin();
            let response = app.clone().oneshot(req);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| connections::Tracked::new(body, activity)),
                )
            }
        });
        let builder = self.builder.clone();
        let tls = self.tls.clone();
        let drain = self.drain.clone();
        let handshake = self.handshake;
        let served = async move {
            let _permit = permit;
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%peer, %error, "cannot serve the connection");
                    return;
                }
            };
            // Plain or TLS, the connection is then served the same way.
            let io = match tls {
                None => Either::Left(stream),
                Some(acceptor) => {
                    let accepted = tokio::select! {
                        accepted = tokio::time::timeout(handshake, acceptor.accept(stream)) => accepted,
                        () = registered.evicted() => {
                            Closed::Evicted.count();
                            return;
                        }
                    };
                    match accepted {
                        Ok(Ok(stream)) => Either::Right(stream),
                        Ok(Err(error)) => {
                            Closed::TlsFailed.count();
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            Closed::HandshakeTimeout.count();
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let result = connections::drive(
                conn,
                UpgradeableConnection::graceful_shutdown,
                &registered,
                &drain,
            )
            .await;
            if let Some(Err(error)) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        };
        self.runtimes
            .next()
            .spawn(self.tracker.track_future(served));
    }

    /// Lets open connections finish their in-flight requests, then cuts
    /// what remains after `timeout`.
    async fn drain(&self, timeout: Duration) {
        tracing::info!(
            open_connections = self.registry.len(),
            timeout = %humantime::format_duration(timeout),
            "shutting down: listener closed, draining in-flight requests"
        );
        self.drain.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            tracing::info!("all connections drained");
        } else {
            tracing::warn!("shutdown timeout passed; cutting the remaining connections");
        }
    }
}

/// A slot for a connection just accepted. At the limit, the connection that
/// has been quiet longest is asked to close, and this one waits briefly for
/// its slot; when every connection is busy, it waits until one ends (the
/// listener accepts nothing meanwhile, as before the limit existed).
/// `None`: the connection is refused (no slot came free while others were
/// being closed).
async fn take_slot(
    slots: &Arc<Semaphore>,
    registry: &connections::Registry,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        let evicted = registry.evict_longest_quiet();
        match tokio::time::timeout(SLOT_WAIT, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => return Some(permit),
            Ok(Err(_)) => return None,
            Err(_) if evicted => {
                Closed::Refused.count();
                return None;
            }
            // Every connection was busy: keep waiting (one may go quiet).
            Err(_) => {}
        }
    }
}

/// gRPC server reflection over every mounted service's protos (both API
/// versions: grpcurl and older tools still ask v1alpha). Public like health:
/// it describes the API, it calls nothing.
fn reflection(descriptors: &[&'static [u8]]) -> anyhow::Result<Router> {
    let builder = || {
        descriptors
            .iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, d| {
                b.register_encoded_file_descriptor_set(d)
            })
    };
    let v1 = builder()
        .build_v1()
        .context("building gRPC reflection (v1)")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?;
    Ok(grpc_router(v1, &[]).merge(grpc_router(v1alpha, &[])))
}

async fn metrics_upkeep(shutdown: CancellationToken) {
    let handle = telemetry::metrics_handle();
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// How often each gRPC service's health status is set from readiness
/// (Kubernetes probes every 5 s by default).
const GRPC_READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps each gRPC service's health status equal to readiness (see
/// [`Health::sync_grpc`]) until shutdown, logging when it changes.
async fn grpc_follows_readiness(health: Arc<Health>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(GRPC_READINESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_ready = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let ready = health.sync_grpc().await;
                if ready != was_ready && !health.is_draining() {
                    if ready {
                        tracing::info!("ready: gRPC services report SERVING");
                    } else {
                        tracing::warn!("not ready: gRPC services report NOT_SERVING until /readyz passes");
                    }
                }
                was_ready = ready;
            }
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT. The handlers are
/// installed before this returns, so a signal sent as soon as the caller
/// says it is ready (e.g. after the `listening` line) is not lost to the
/// default action, which would end the process without draining.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
                        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
                    }
                    trigger.cancel();
                });
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGTERM and SIGINT");
            }
        }
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "SIGINT", "shutdown requested");
            trigger.cancel();
        }
    });
    token
}
