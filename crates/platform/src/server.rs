//! The one listener: every service's REST routes, every gRPC service and the
//! ops routes, over HTTP/1.1 and HTTP/2 (cleartext or TLS) on one port, with a
//! graceful shutdown that loses no in-flight request.
//!
//! Connections are served by `--io-threads` threads, each a single-threaded
//! runtime with its own SO_REUSEPORT listener on the same address; background
//! tasks and everything else run on the main runtime.
//!
//! Shutdown order: readiness turns false, the listeners close (new connections
//! are refused), open connections finish their in-flight requests (bounded by
//! `--shutdown-timeout`), background tasks stop, then each service's shutdown
//! hooks run (stores close).

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
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::ResolvedConfig;
use crate::health::Health;
use crate::layers::{self, LayerState};
use crate::service::{BackgroundTask, Service, grpc_router};
use crate::{ops, telemetry, tls};

/// Time a client has to finish the TLS handshake or send its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often histogram samples are folded into buckets when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, not yet serving, server.
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
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
        let layer_state = LayerState::new(config.clone());
        let mut app = Router::new();
        for service in services {
            readiness.extend(service.readiness);
            on_shutdown.extend(service.on_shutdown);
            background.extend(service.background);
            docs.push(service.openapi);
            app = app.merge(layers::service_stack(
                service.name,
                service.router,
                &layer_state,
            ));
            for (name, grpc) in service.grpc {
                grpc_names.push(name);
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::Serving)
                    .await;
                app = app.merge(layers::service_stack(service.name, grpc, &layer_state));
            }
        }
        let health = Arc::new(Health::new(readiness, reporter, grpc_names));
        let doc = ops::openapi(docs);
        let app = app
            .merge(layers::ops_stack(
                ops::router(health.clone(), telemetry::metrics_handle(), doc)
                    .merge(grpc_router(health_service)),
            ))
            .fallback(crate::error::not_found_or_unimplemented)
            .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
            .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid));

        let listeners = bind_listeners(config.addr, config.io_threads)?;
        let local_addr = listeners[0].local_addr()?;
        Ok(Self {
            listeners,
            local_addr,
            tls,
            app,
            health,
            config,
            on_shutdown,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients use, e.g. `https://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Serves until `shutdown` is cancelled, then drains and closes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Server {
            listeners,
            tls,
            app,
            health,
            config,
            on_shutdown,
            background,
            ..
        } = self;
        let upkeep = tokio::spawn(metrics_upkeep(shutdown.clone()));
        // Background tasks stop after the listener drains, so work that
        // in-flight requests handed them is still done (e.g. a final flush).
        let stop_background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (name, task) in background {
            let future = task(stop_background.clone());
            tasks.spawn(async move {
                future.await;
                name
            });
        }
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(256);
        let serving = Arc::new(Serving {
            app,
            builder,
            tls,
            connections,
            shutdown_timeout: config.shutdown_timeout,
        });

        // SIGTERM turns readiness false at once; the listeners keep accepting for
        // --shutdown-delay so load balancers notice before connections are refused.
        let stop_accepting = CancellationToken::new();
        tokio::spawn({
            let (shutdown, stop_accepting, health) =
                (shutdown.clone(), stop_accepting.clone(), health.clone());
            let delay = config.shutdown_delay;
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

        // One accept loop per I/O thread, each on its own single-threaded
        // runtime with its own SO_REUSEPORT listener: a connection lives on one
        // thread from accept to close, with no cross-thread wake-ups (measured:
        // these were a large share of a request's CPU on the shared runtime).
        let mut drained = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let (done, finished) = tokio::sync::oneshot::channel();
            let serving = serving.clone();
            let stop = stop_accepting.clone();
            std::thread::Builder::new()
                .name(format!("quintet-io-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    let outcome = match runtime {
                        Ok(runtime) => runtime.block_on(serving.accept_loop(listener, stop)),
                        Err(error) => {
                            Err(anyhow::Error::from(error).context("starting an I/O thread"))
                        }
                    };
                    let _ = done.send(outcome);
                })
                .context("starting an I/O thread")?;
            drained.push(finished);
        }
        let mut failure = None;
        for finished in drained {
            match finished.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failure = Some(error),
                Err(_) => failure = Some(anyhow::anyhow!("an I/O thread stopped unexpectedly")),
            }
        }
        if let Some(error) = &failure {
            tracing::error!(error = %format!("{error:#}"), "serving failed");
        }

        stop_background.cancel();
        let stopping = async {
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(name) => tracing::info!(task = name, "background task stopped"),
                    Err(error) => tracing::error!(%error, "background task failed"),
                }
            }
        };
        if tokio::time::timeout(config.shutdown_timeout, stopping)
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout passed; abandoning background tasks still running");
        }
        for hook in on_shutdown {
            hook.await;
        }
        upkeep.abort();
        tracing::info!("stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// What every I/O thread needs to serve connections.
struct Serving {
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    shutdown_timeout: Duration,
}

impl Serving {
    /// Accepts until `stop` is cancelled, then closes the listener and drains
    /// this thread's connections (bounded by the shutdown timeout).
    async fn accept_loop(
        self: Arc<Self>,
        listener: std::net::TcpListener,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let listener = TcpListener::from_std(listener).context("registering a listener")?;
        let graceful = GracefulShutdown::new();
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                permit = self.connections.clone().acquire_owned() => permit.context("connection limit closed")?,
            };
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
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
            let _ = stream.set_nodelay(true);
            let watcher = graceful.watcher();
            let serving = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let app = serving.app.clone();
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(req)
                });
                let result = match &serving.tls {
                    None => {
                        let conn = serving
                            .builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn).await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => {
                                let conn = serving
                                    .builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service);
                                watcher.watch(conn).await
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            });
        }
        // Refuse new connections by closing the listener, then drain.
        drop(listener);
        tracing::info!(
            open_connections = graceful.count(),
            timeout = %humantime::format_duration(self.shutdown_timeout),
            "shutting down: listener closed, draining in-flight requests"
        );
        match tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections drained"),
            Err(_) => tracing::warn!("shutdown timeout passed; cutting the remaining connections"),
        }
        Ok(())
    }
}

/// Binds `count` listeners on `addr` with SO_REUSEPORT (the first picks the
/// port when `addr` asks for port 0), so the kernel spreads connections.
fn bind_listeners(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    // SO_REUSEPORT would let us join another process's group on a busy port
    // silently: a plain bind first turns that into "address in use".
    if addr.port() != 0 {
        drop(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("cannot listen on {addr}"))?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

async fn metrics_upkeep(shutdown: CancellationToken) {
    let handle = telemetry::metrics_handle();
    let mut tick = tokio::time::interval(METRICS_UPKEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
            _ = term => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        }
        trigger.cancel();
    });
    token
}
