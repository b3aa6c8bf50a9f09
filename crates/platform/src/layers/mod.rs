//! The tower/axum layers every service route passes through, and the order
//! they are stacked in (see [`service_stack`]).

pub mod auth;
pub mod observe;
pub mod rate_limit;
pub mod timeout;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::middleware;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::config::ResolvedConfig;

/// Shared state the service layers need; built once per server.
#[derive(Clone)]
pub struct LayerState {
    pub config: Arc<ResolvedConfig>,
    pub limiter: Option<Arc<rate_limit::ClientRateLimiter>>,
    pub concurrency: Arc<Semaphore>,
}

impl LayerState {
    pub fn new(config: Arc<ResolvedConfig>) -> Self {
        let limiter = config
            .rate_limit
            .map(|rl| Arc::new(rate_limit::ClientRateLimiter::new(rl)));
        let concurrency = Arc::new(Semaphore::new(config.max_concurrent_requests));
        Self {
            config,
            limiter,
            concurrency,
        }
    }
}

/// Wraps a service's routes, outermost first: observe (metrics and access
/// log, so every answer below is counted, 401 and 429 included), then the
/// guard (bearer auth, per-client rate limit, and the request timeout around
/// the rest), concurrency limit, body limit, then the handler.
pub fn service_stack(service: &'static str, router: Router, state: &LayerState) -> Router {
    let guard = Arc::new(Guard {
        tokens: state.config.tokens.clone(),
        limiter: state.limiter.clone(),
        timeout: state.config.request_timeout,
    });
    router
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(
            state.concurrency.clone(),
        ))
        .layer(middleware::from_fn_with_state(guard, guard_request))
        .layer(middleware::from_fn_with_state(
            observe::RouteMetrics::for_service(service),
            observe::record,
        ))
}

/// What every service request is checked against before it runs.
struct Guard {
    tokens: auth::TokenSet,
    limiter: Option<Arc<rate_limit::ClientRateLimiter>>,
    timeout: std::time::Duration,
}

/// Auth, then the caller's rate limit, then the rest of the stack within the
/// request timeout — one middleware rather than three: each `from_fn` layer
/// costs a boxed service clone and a boxed future per request, and the two
/// checks are instant, so timing them changes nothing.
async fn guard_request(
    State(guard): State<Arc<Guard>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(refused) = uri_too_long(&req) {
        return refused;
    }
    if let Some(refused) = auth::authenticate(&guard.tokens, &mut req) {
        return refused;
    }
    if let Some(refused) = rate_limit::admit(guard.limiter.as_deref(), &req) {
        return refused;
    }
    timeout::run(guard.timeout, req, next).await
}

/// Longest request URI (path and query) a service route takes, in bytes.
/// hyper itself refuses a URI over 64 KiB with a bare 414 before any route
/// sees it; up to that, the refusal is JSON like every other.
pub const MAX_URI_BYTES: usize = 16 * 1024;

fn uri_too_long(req: &axum::extract::Request) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    (len > MAX_URI_BYTES).then(|| {
        crate::ErrorResponse::new(
            http::StatusCode::URI_TOO_LONG,
            format!(
                "the request URI is {len} bytes; the limit is {MAX_URI_BYTES}: send long values \
                 in the body"
            ),
        )
        .into_response()
    })
}

/// Ops routes are public and unthrottled: they are only observed.
pub fn ops_stack(router: Router) -> Router {
    router.layer(middleware::from_fn_with_state(
        observe::RouteMetrics::for_service("ops"),
        observe::record,
    ))
}

/// True for gRPC requests, whose errors must travel as `grpc-status`, not HTTP status.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}
