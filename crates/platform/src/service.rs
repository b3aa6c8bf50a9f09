//! What a service hands the platform to be served: its REST routes, its
//! OpenAPI document, its gRPC services, what must be reachable for it to be
//! ready, and what to close when the process stops.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tower::{Service as TowerService, ServiceExt};

use crate::health::ReadinessCheck;

/// A background task: started with the server, handed a token that is
/// cancelled once the listener has drained; it finishes its work (a final
/// flush, its in-flight jobs) and returns.
pub type BackgroundTask = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// What every service's `service()` constructor is given beside its own
/// config and backends: where the process keeps local state.
#[derive(Debug, Clone)]
pub struct Context {
    /// The data directory (owner-only, created by the binary).
    pub data_dir: std::path::PathBuf,
}

/// A gRPC service waiting to be mounted: given the names of its methods
/// (read from the descriptors), it routes each on its own path.
pub(crate) type GrpcMount = Box<dyn FnOnce(&[String]) -> Router + Send>;

/// One service, ready to mount.
pub struct Service {
    pub(crate) name: &'static str,
    pub(crate) router: Router,
    pub(crate) openapi: utoipa::openapi::OpenApi,
    pub(crate) grpc: Vec<(&'static str, GrpcMount)>,
    pub(crate) descriptors: Vec<&'static [u8]>,
    pub(crate) readiness: Vec<Arc<dyn ReadinessCheck>>,
    pub(crate) on_shutdown: Vec<BoxFuture<'static, ()>>,
    pub(crate) background: Vec<(&'static str, BackgroundTask)>,
}

impl Service {
    /// A service named `name` (used in metric names: `quintet_<name>_…`).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            router: Router::new(),
            openapi: utoipa::openapi::OpenApi::default(),
            grpc: Vec::new(),
            descriptors: Vec::new(),
            readiness: Vec::new(),
            on_shutdown: Vec::new(),
            background: Vec::new(),
        }
    }

    /// The service's name (`kv`, `messages`, …), as in its metric names.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The REST routes, with their state already applied.
    #[must_use]
    pub fn routes(mut self, router: Router) -> Self {
        self.router = self.router.merge(router);
        self
    }

    /// The OpenAPI document of the REST routes.
    #[must_use]
    pub fn openapi(mut self, doc: utoipa::openapi::OpenApi) -> Self {
        self.openapi = doc;
        self
    }

    /// A tonic-generated gRPC service, served on the same listener as REST.
    #[must_use]
    pub fn grpc<S>(mut self, svc: S) -> Self
    where
        S: TowerService<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let mount: GrpcMount = Box::new(move |methods: &[String]| grpc_router(svc, methods));
        self.grpc.push((S::NAME, mount));
        self
    }

    /// The encoded `FileDescriptorSet` of this service's gRPC protos, served
    /// by server reflection so tools like grpcurl can call it without the files.
    #[must_use]
    pub fn grpc_descriptors(mut self, encoded: &'static [u8]) -> Self {
        self.descriptors.push(encoded);
        self
    }

    /// Something that must be reachable before this service is ready.
    #[must_use]
    pub fn readiness(mut self, check: Arc<dyn ReadinessCheck>) -> Self {
        self.readiness.push(check);
        self
    }

    /// A task that runs while the server runs (see [`BackgroundTask`]).
    #[must_use]
    pub fn background(
        mut self,
        name: &'static str,
        task: impl FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send + 'static,
    ) -> Self {
        self.background.push((name, Box::new(task)));
        self
    }

    /// Work to do once the listener has drained and background tasks have stopped (flush, close a store).
    #[must_use]
    pub fn on_shutdown(mut self, hook: BoxFuture<'static, ()>) -> Self {
        self.on_shutdown.push(hook);
        self
    }
}

/// Routes `/<package.Service>/<Method>` for each of `methods`, and
/// `/<package.Service>/*` for any other, to a gRPC service (what tonic's
/// `Routes` does, minus its catch-all fallback, so routers from several
/// services merge). Each method its own route gives it its own request
/// metrics (a streaming `Primes` is not averaged with a unary `Add`); the
/// catch-all, where tonic answers UNIMPLEMENTED, keeps the label set bounded
/// whatever a client sends.
pub(crate) fn grpc_router<S>(svc: S, methods: &[String]) -> Router
where
    S: TowerService<http::Request<tonic::body::Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Response: axum::response::IntoResponse,
    S::Future: Send + 'static,
{
    let svc =
        svc.map_request(|req: http::Request<axum::body::Body>| req.map(tonic::body::Body::new));
    methods.iter().fold(
        Router::new().route_service(&format!("/{}/{{*rest}}", S::NAME), svc.clone()),
        |router, method| router.route_service(&format!("/{}/{method}", S::NAME), svc.clone()),
    )
}

/// The methods of every gRPC service the encoded `FileDescriptorSet`s
/// describe, by full service name (`quintet.calc.v1.Calculator` → `Add`, …).
pub(crate) fn grpc_methods(
    descriptors: &[&[u8]],
) -> Result<HashMap<String, Vec<String>>, prost::DecodeError> {
    let mut methods = HashMap::new();
    for encoded in descriptors {
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(*encoded)?;
        for file in set.file {
            for service in &file.service {
                let name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                methods.insert(
                    name,
                    service.method.iter().map(|m| m.name().to_owned()).collect(),
                );
            }
        }
    }
    Ok(methods)
}
