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

/// Wraps a service's routes, outermost first: observe (metrics and access
/// log, so every answer below is counted, 401 and 429 included), then the
/// guard (size limits of the URI and the announced body, bearer auth with
/// failed attempts rate-limited per address, the admin scope on admin
/// routes, the per-client rate limit, and the request timeout around the
/// rest), concurrency limit, body limit, then the handler.
pub fn service_stack(service: &'static str, router: Router, state: &LayerState) -> Router {
    let guard = Arc::new(Guard {
        tokens: state.config.tokens.clone(),
        limiter: state.limiter.clone(),
        auth_failures: state.auth_failures.clone(),
        timeout: state.config.request_timeout,
        max_body_bytes: state.config.max_body_bytes,
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
    tokens: crate::tokens::TokenSet,
    limiter: Option<Arc<rate_limit::ClientRateLimiter>>,
    auth_failures: Option<Arc<rate_limit::ClientRateLimiter>>,
    timeout: std::time::Duration,
    max_body_bytes: usize,
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
    if let Some(refused) = body_too_large(&req, guard.max_body_bytes) {
        return refused;
    }
    if let Some(refused) = auth::authenticate(&guard.tokens, &mut req) {
        return rate_limit::throttle_failure(guard.auth_failures.as_deref(), &req, refused);
    }
    if let Some(refused) = auth::require_admin(&guard.tokens, &req) {
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

/// A body announced (`Content-Length`) over the server's limit is refused
/// before a byte of it is read; the connection is closed after the answer,
/// since the rest of the body is not read.
fn body_too_large(req: &axum::extract::Request, limit: usize) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let announced = req
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    if announced <= limit as u64 {
        return None;
    }
    let message = format!(
        "the request body is {announced} bytes; the limit is {limit} bytes (--max-body-bytes)"
    );
    let mut response = if crate::grpc::is_grpc(req.headers()) {
        tonic::Status::resource_exhausted(message).into_http()
    } else {
        crate::ErrorResponse::new(http::StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
    };
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    Some(response)
}

/// Ops routes are public and unthrottled: they are only observed.
pub fn ops_stack(router: Router) -> Router {
    router.layer(middleware::from_fn_with_state(
        observe::RouteMetrics::for_service("ops"),
        observe::record,
    ))
}
