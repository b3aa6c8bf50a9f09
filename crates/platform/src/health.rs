//! Liveness and readiness. Liveness is "the process answers"; readiness is
//! "every store this process needs is reachable, and it is not shutting down".
//! Readiness turns false first on shutdown so load balancers stop sending.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{BackendError, BoxError, chain};

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Something a service needs to be reachable before it can serve (a store, a queue).
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// A short name shown in `/readyz` (e.g. `messages-store`).
    fn name(&self) -> &str;
    /// `Ok` when reachable; the error's chain says what is wrong (no
    /// secrets). It goes to the log, never to `/readyz`.
    async fn check(&self) -> Result<(), ReadinessError>;
}

/// A readiness check that passes when `ping` does: the usual check over a
/// store's or log's own `ping` (`Service::readiness(Ping::new("kv-store", …))`).
pub struct Ping<F> {
    name: &'static str,
    ping: F,
}

impl<F, Fut, E> Ping<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    /// A check shown as `name` in `/readyz`, passing when `ping()` is `Ok`.
    pub fn new(name: &'static str, ping: F) -> Arc<Self> {
        Arc::new(Self { name, ping })
    }
}

#[async_trait]
impl<F, Fut, E> ReadinessCheck for Ping<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    fn name(&self) -> &str {
        self.name
    }

    async fn check(&self) -> Result<(), ReadinessError> {
        (self.ping)().await.map_err(ReadinessError::new)
    }
}

/// Why a readiness check failed: the dependency's own error (a port's
/// error, a [`BackendError`]) kept as the source, for the log.
#[derive(Debug, thiserror::Error)]
#[error("not ready")]
pub struct ReadinessError(#[source] BoxError);

impl ReadinessError {
    /// A failed check, caused by `source`.
    pub fn new(source: impl Into<BoxError>) -> Self {
        Self(source.into())
    }
}

impl From<BackendError> for ReadinessError {
    fn from(error: BackendError) -> Self {
        Self::new(error)
    }
}

/// The process-wide health state.
pub struct Health {
    draining: AtomicBool,
    /// Held while gRPC statuses are written, so a readiness sync never
    /// writes SERVING over the `NOT_SERVING` of a shutdown that began meanwhile.
    grpc_writes: tokio::sync::Mutex<()>,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    grpc: tonic_health::server::HealthReporter,
    grpc_services: Vec<&'static str>,
    /// Each check's last failure reason, so a failure is logged when it
    /// starts or changes, not at every probe.
    last_failures: std::sync::Mutex<BTreeMap<String, String>>,
}

/// The outcome of a readiness probe.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each check by name: `ok`, `unavailable` or `timeout` (`/readyz` is
    /// public: why a check failed is in the server's log, not here).
    pub checks: BTreeMap<String, String>,
}

impl Health {
    /// `grpc_services` are the gRPC service names reported `NOT_SERVING` on shutdown (with `""`).
    pub fn new(
        checks: Vec<Arc<dyn ReadinessCheck>>,
        grpc: tonic_health::server::HealthReporter,
        grpc_services: Vec<&'static str>,
    ) -> Self {
        Self {
            draining: AtomicBool::new(false),
            grpc_writes: tokio::sync::Mutex::new(()),
            checks,
            grpc,
            grpc_services,
            last_failures: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Marks the process as shutting down: readiness false, gRPC health `NOT_SERVING`.
    pub async fn start_draining(&self) {
        let _writing = self.grpc_writes.lock().await;
        self.draining.store(true, Ordering::SeqCst);
        for name in std::iter::once("").chain(self.grpc_services.iter().copied()) {
            self.grpc
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    }

    /// Makes each service's gRPC health status follow readiness: SERVING
    /// when every check passes, `NOT_SERVING` otherwise, so a probe of a
    /// service's status (Kubernetes' gRPC readiness probe) holds traffic back
    /// exactly when `/readyz` does. The overall status (`""`) is liveness
    /// and stays SERVING until shutdown: a pod waiting for its engine must
    /// not be restarted for it.
    pub async fn sync_grpc(&self) -> bool {
        let ready = self.readiness().await.status == "ready";
        let _writing = self.grpc_writes.lock().await;
        if self.is_draining() {
            return false;
        }
        let status = if ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for name in &self.grpc_services {
            self.grpc.set_service_status(name, status).await;
        }
        ready
    }

    /// Whether shutdown has begun (readiness then stays false).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Logs a check's failure when it starts or its reason changes, and its recovery.
    fn note_failure(&self, name: &str, reason: Option<String>) {
        let mut last = self
            .last_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(reason) if last.get(name) != Some(&reason) => {
                tracing::warn!(check = name, %reason, "readiness check failed");
                last.insert(name.to_owned(), reason);
            }
            Some(_) => {}
            None => {
                if last.remove(name).is_some() {
                    tracing::info!(check = name, "readiness check passes again");
                }
            }
        }
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn readiness(&self) -> Readiness {
        let results = futures_util::future::join_all(self.checks.iter().map(|check| async move {
            let (outcome, reason) = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => ("ok", None),
                Ok(Err(error)) => ("unavailable", Some(chain(&error))),
                Err(_) => (
                    "timeout",
                    Some(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
                ),
            };
            self.note_failure(check.name(), reason);
            metrics::gauge!(crate::metrics::READINESS_CHECK_UP, "check" => check.name().to_owned())
                .set(if outcome == "ok" { 1.0 } else { 0.0 });
            (check.name().to_owned(), outcome.to_owned())
        }))
        .await;
        let all_ok = results.iter().all(|(_, outcome)| outcome == "ok");
        let status = if self.is_draining() {
            "draining"
        } else if all_ok {
            "ready"
        } else {
            "not_ready"
        };
        metrics::gauge!(crate::metrics::READY).set(if status == "ready" { 1.0 } else { 0.0 });
        Readiness {
            status,
            checks: results.into_iter().collect(),
        }
    }
}
