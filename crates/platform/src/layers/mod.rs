//! The tower/axum layers every service route passes through, and the order
//! they are stacked in (see [`service_stack`]).

pub mod auth;
pub mod guard;
pub mod observe;
pub mod rate_limit;
pub mod timeout;
pub mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::sync::Semaphore;

use crate::config::ResolvedConfig;

/// Shared state the service layers need; built once per server.
#[derive(Clone)]
pub struct LayerState {
    /// The server's configuration (tokens, limits, timeouts).
    pub config: Arc<ResolvedConfig>,
    /// The per-client request rate limiter; `None` when `--rate-limit` is 0.
    pub limiter: Option<Arc<rate_limit::ClientRateLimiter>>,
    /// The per-address limiter of failed authentications; `None` when off.
    pub auth_failures: Option<Arc<rate_limit::ClientRateLimiter>>,
    /// Permits for `--max-concurrent-requests`, shared by every service.
    pub concurrency: Arc<Semaphore>,
}

impl LayerState {
    /// The limiters and permits `config` asks for.
    pub fn new(config: Arc<ResolvedConfig>) -> Self {
        let limiter = config
            .rate_limit
            .map(|rl| Arc::new(rate_limit::ClientRateLimiter::new(rl)));
        let auth_failures = config
            .auth_failure_limit
            .map(|rl| Arc::new(rate_limit::ClientRateLimiter::new(rl)));
        let concurrency = Arc::new(Semaphore::new(config.max_concurrent_requests));
        Self {
            config,
            limiter,
            auth_failures,
            concurrency,
        }
    }
}

/// Wraps a service's routes, outermost first: the request's trace span
/// (only with `--otlp-endpoint`, [`trace`]), observe (metrics and access
/// log, so every answer below is counted, 401 and 429 included), then the
/// guard (size limits of the URI and the announced body, bearer auth with
/// failed attempts rate-limited per address, the admin scope on admin
/// routes, the per-client rate limit, and the request timeout around the
/// rest), concurrency limit — all one layer, [`guard::ServiceLayer`] — then
/// the body limit and the handler.
pub fn service_stack(service: &'static str, router: Router, state: &LayerState) -> Router {
    let guard = guard::Guard {
        tokens: state.config.tokens.clone(),
        limiter: state.limiter.clone(),
        auth_failures: state.auth_failures.clone(),
        timeout: state.config.request_timeout,
        max_body_bytes: state.config.max_body_bytes,
        concurrency: state.concurrency.clone(),
    };
    let router = router
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(guard::ServiceLayer::new(
            guard,
            observe::RouteMetrics::for_service(service),
        ));
    // Outermost, so refusals (401, 429, 413) are traced too; only when
    // traces are exported, so a server without --otlp-endpoint pays nothing.
    if crate::trace::enabled() {
        router.layer(middleware::from_fn(trace::span))
    } else {
        router
    }
}

/// Ops routes are public and unthrottled: they are only observed.
pub fn ops_stack(router: Router) -> Router {
    router.layer(middleware::from_fn_with_state(
        observe::RouteMetrics::for_service("ops"),
        observe::record,
    ))
}
