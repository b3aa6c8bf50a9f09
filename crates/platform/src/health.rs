//! Liveness and readiness. Liveness is "the process answers"; readiness is
//! "every store this process needs is reachable, and it is not shutting down".
//! Readiness turns false first on shutdown so load balancers stop sending.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Something a service needs to be reachable before it can serve (a store, a queue).
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    /// A short name shown in `/readyz` (e.g. `messages-store`).
    fn name(&self) -> &str;
    /// `Ok` when reachable; the error says what is wrong (no secrets).
    async fn check(&self) -> Result<(), String>;
}

/// The process-wide health state.
pub struct Health {
    draining: AtomicBool,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    grpc: tonic_health::server::HealthReporter,
    grpc_services: Vec<&'static str>,
}

/// The outcome of a readiness probe.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each check by name: `ok` or what failed.
    pub checks: BTreeMap<String, String>,
}

impl Health {
    /// `grpc_services` are the gRPC service names reported NOT_SERVING on shutdown (with `""`).
    pub fn new(
        checks: Vec<Arc<dyn ReadinessCheck>>,
        grpc: tonic_health::server::HealthReporter,
        grpc_services: Vec<&'static str>,
    ) -> Self {
        Self {
            draining: AtomicBool::new(false),
            checks,
            grpc,
            grpc_services,
        }
    }

    /// Marks the process as shutting down: readiness false, gRPC health NOT_SERVING.
    pub async fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        for name in std::iter::once("").chain(self.grpc_services.iter().copied()) {
            self.grpc
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn readiness(&self) -> Readiness {
        let results = futures_util::future::join_all(self.checks.iter().map(|check| async move {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(reason)) => reason,
                Err(_) => format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
            };
            (check.name().to_owned(), outcome)
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
        Readiness {
            status,
            checks: results.into_iter().collect(),
        }
    }
}
