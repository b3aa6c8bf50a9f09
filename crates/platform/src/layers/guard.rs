//! The service stack as one tower [`Layer`]: observe, guard, concurrency
//! limit and request timeout in one [`Service`] with one named future.
//!
//! Stacked as separate middleware, each `from_fn` layer cloned and boxed the
//! inner service and boxed its future on every request, and the concurrency
//! limit and the timeout each wrapped the future again. Here a request costs
//! the checks themselves: no allocation on the way in unless it has to wait
//! for a concurrency permit (then the wait is boxed), and the route's metric
//! handles are looked up once per route, not per request.
//!
//! What a request passes, in order: it is counted in flight and timed
//! ([`Observation`], so every answer below is counted, 401 and 429
//! included); the URI and an announced body are checked against their
//! limits; the bearer token is authenticated (failures rate-limited per
//! address); admin routes require the admin scope; the caller's rate limit is
//! spent; then, within the request timeout, it waits for a permit of
//! `--max-concurrent-requests` and runs.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::{Instant, Sleep, error::Elapsed};
use tower::{Layer, Service};

use super::observe::{Observation, RouteHandles, RouteMetrics};
use super::{auth, rate_limit, timeout};

/// Longest request URI (path and query) a service route takes, in bytes.
/// hyper itself refuses a URI over 64 KiB with a bare 414 before any route
/// sees it; up to that, the refusal is JSON like every other.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// What every service request is checked against before it runs.
pub struct Guard {
    /// The bearer tokens; empty means open.
    pub tokens: crate::tokens::TokenSet,
    /// The per-client request rate limiter, if any.
    pub limiter: Option<Arc<rate_limit::ClientRateLimiter>>,
    /// The per-address limiter of failed authentications, if any.
    pub auth_failures: Option<Arc<rate_limit::ClientRateLimiter>>,
    /// `--request-timeout`.
    pub timeout: Duration,
    /// `--max-body-bytes`, checked here against an announced length.
    pub max_body_bytes: usize,
    /// Permits of `--max-concurrent-requests`, shared by every service.
    pub concurrency: Arc<Semaphore>,
}

impl Guard {
    /// The refusal of `req`, if it is refused before it runs; on the way,
    /// the authenticated caller is put in its extensions.
    fn check(&self, req: &mut Request) -> Option<Response> {
        if let Some(refused) = uri_too_long(req) {
            return Some(refused);
        }
        if let Some(refused) = body_too_large(req, self.max_body_bytes) {
            return Some(refused);
        }
        if let Some(refused) = auth::authenticate(&self.tokens, req) {
            return Some(rate_limit::throttle_failure(
                self.auth_failures.as_deref(),
                req,
                refused,
            ));
        }
        if let Some(refused) = auth::require_admin(&self.tokens, req) {
            return Some(refused);
        }
        rate_limit::admit(self.limiter.as_deref(), req)
    }
}

/// The layer of one service's routes: [`Guard`] and its metrics.
#[derive(Clone)]
pub struct ServiceLayer {
    guard: Arc<Guard>,
    metrics: &'static RouteMetrics,
}

impl ServiceLayer {
    /// The layer checking requests against `guard`, counted under `metrics`.
    pub fn new(guard: Guard, metrics: &'static RouteMetrics) -> Self {
        Self {
            guard: Arc::new(guard),
            metrics,
        }
    }
}

impl<S> Layer<S> for ServiceLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: self.guard.clone(),
            metrics: self.metrics,
            route: Arc::new(OnceLock::new()),
        }
    }
}

/// One route wrapped by [`ServiceLayer`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
    metrics: &'static RouteMetrics,
    /// The metric handles of the route this service answers, found on its
    /// first request and shared by every clone.
    route: Arc<OnceLock<&'static RouteHandles>>,
}

impl<S> Guarded<S> {
    fn route_handles(&self, req: &Request) -> &'static RouteHandles {
        if let Some(&route) = self.route.get()
            && route.matches(req)
        {
            return route;
        }
        // The first request, or a route reached under another template
        // (a nested router): the service's metrics table answers.
        let route = self.metrics.route_of(req);
        let _ = self.route.set(route);
        route
    }
}

impl<S> Service<Request> for Guarded<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardedFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let observation = Observation::start(self.route_handles(&req), &req);
        let span = observation.span();
        let grpc = crate::grpc::is_grpc(req.headers());
        let limit = self.guard.timeout;
        let state = if let Some(refused) = self.guard.check(&mut req) {
            State::Answered {
                response: Some(refused),
            }
        } else {
            // The service made ready by poll_ready runs this request; the
            // clone stays for the next one.
            let ready = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, ready);
            match self.guard.concurrency.clone().try_acquire_owned() {
                Ok(permit) => State::Running {
                    inner: inner.call(req),
                    deadline: tokio::time::sleep(limit),
                    permit: Some(permit),
                },
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                    let deadline = Instant::now() + limit;
                    let permits = self.guard.concurrency.clone();
                    State::Waiting {
                        acquire: Box::pin(tokio::time::timeout_at(
                            deadline,
                            permits.acquire_owned(),
                        )),
                        pending: Some((inner, req)),
                        deadline,
                    }
                }
            }
        };
        GuardedFuture {
            observation: Some(observation),
            span,
            grpc,
            limit,
            state,
        }
    }
}

type Acquire = Pin<
    Box<dyn Future<Output = Result<Result<OwnedSemaphorePermit, AcquireError>, Elapsed>> + Send>,
>;

pin_project! {
    /// The answer of a [`Guarded`] route.
    pub struct GuardedFuture<S>
    where
        S: Service<Request>,
    {
        observation: Option<Observation>,
        span: tracing::Span,
        grpc: bool,
        limit: Duration,
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<Request>,
    {
        /// Refused by the guard; the answer is ready.
        Answered { response: Option<Response> },
        /// Waiting for a concurrency permit, within the request's deadline.
        Waiting { acquire: Acquire, pending: Option<(S, Request)>, deadline: Instant },
        /// Running, holding its permit, until the answer or the deadline.
        Running {
            #[pin]
            inner: S::Future,
            #[pin]
            deadline: Sleep,
            permit: Option<OwnedSemaphorePermit>,
        },
        /// Answered; the inner future and the permit are gone.
        Done,
    }
}

impl<S> Future for GuardedFuture<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let mut response = loop {
            match this.state.as_mut().project() {
                StateProj::Answered { response } => {
                    break response.take().unwrap_or_else(answered_twice);
                }
                StateProj::Waiting {
                    acquire,
                    pending,
                    deadline,
                } => match ready!(acquire.as_mut().poll(cx)) {
                    Ok(Ok(permit)) => {
                        let Some((mut inner, req)) = pending.take() else {
                            break answered_twice();
                        };
                        let deadline = *deadline;
                        this.state.set(State::Running {
                            inner: inner.call(req),
                            deadline: tokio::time::sleep_until(deadline),
                            permit: Some(permit),
                        });
                    }
                    // The permits are never closed; if they were, the
                    // server is going away.
                    Ok(Err(_closed)) => break unavailable(*this.grpc),
                    Err(_elapsed) => break timeout::timed_out(*this.limit, *this.grpc),
                },
                StateProj::Running {
                    inner,
                    deadline,
                    permit,
                } => {
                    if let Poll::Ready(answer) = inner.poll(cx) {
                        drop(permit.take());
                        break match answer {
                            Ok(response) => response,
                            Err(never) => match never {},
                        };
                    }
                    ready!(deadline.poll(cx));
                    break timeout::timed_out(*this.limit, *this.grpc);
                }
                StateProj::Done => break answered_twice(),
            }
        };
        // The handler's future and its permit go now, not when hyper drops us.
        this.state.set(State::Done);
        if let Some(observation) = this.observation.take() {
            observation.finish(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// A future polled after it answered: a bug in the caller, answered as a 500.
fn answered_twice() -> Response {
    crate::ErrorResponse::new(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: a request was answered twice",
    )
    .into_response()
}

fn unavailable(grpc: bool) -> Response {
    let message = "the server is shutting down; retry on another instance";
    if grpc {
        tonic::Status::unavailable(message).into_http()
    } else {
        crate::ErrorResponse::new(http::StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    }
}

fn uri_too_long(req: &Request) -> Option<Response> {
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
fn body_too_large(req: &Request, limit: usize) -> Option<Response> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;

    fn guard(tokens: &[&str], permits: usize, timeout: Duration) -> Guard {
        Guard {
            tokens: crate::tokens::TokenSet::new(tokens.iter().map(|t| (*t).to_owned())),
            limiter: None,
            auth_failures: None,
            timeout,
            max_body_bytes: 1024,
            concurrency: Arc::new(Semaphore::new(permits)),
        }
    }

    /// A route that notes how many of its calls run at once, the most seen.
    fn counting_app(guard: Guard) -> (Router, Arc<AtomicUsize>) {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let seen = most.clone();
        let app = Router::new()
            .route(
                "/work",
                get(move || {
                    let (running, most) = (running.clone(), most.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        "done"
                    }
                }),
            )
            .layer(ServiceLayer::new(
                guard,
                RouteMetrics::for_service("guard_test"),
            ));
        (app, seen)
    }

    async fn get_status(app: &Router, authorization: Option<&str>) -> (StatusCode, String) {
        let mut request = http::Request::get("/work");
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn requests_over_the_concurrency_limit_wait_for_a_permit_then_run() {
        let (app, most) = counting_app(guard(&[], 2, Duration::from_secs(10)));
        let calls: Vec<_> = (0..6)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { get_status(&app, None).await })
            })
            .collect();
        for call in calls {
            let (status, body) = call.await.expect("task");
            assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
        }
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "more calls ran at once than permits"
        );
    }

    #[tokio::test]
    async fn a_request_still_waiting_for_a_permit_at_its_deadline_is_answered_timed_out() {
        let (app, most) = counting_app(guard(&[], 0, Duration::from_millis(50)));
        let (status, body) = get_status(&app, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("request timed out after 50ms"), "{body}");
        assert_eq!(
            most.load(Ordering::SeqCst),
            0,
            "the handler ran without a permit"
        );
    }

    #[tokio::test]
    async fn a_request_running_past_its_deadline_is_cut_and_gives_its_permit_back() {
        let limits = guard(&[], 1, Duration::from_millis(5));
        let permits = limits.concurrency.clone();
        let (app, _) = counting_app(limits);
        let (status, body) = get_status(&app, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("request timed out after 5ms"), "{body}");
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn the_guard_refuses_before_a_permit_is_asked_for() {
        // No permit at all: a refused request must still be answered at once.
        let (app, most) = counting_app(guard(&["s3cret"], 0, Duration::from_secs(10)));
        let (status, body) = get_status(&app, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("missing bearer token"), "{body}");
        let (status, _) = get_status(&app, Some("Bearer wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(most.load(Ordering::SeqCst), 0);
        let (app, _) = counting_app(guard(&["s3cret"], 1, Duration::from_secs(10)));
        assert_eq!(
            get_status(&app, Some("Bearer s3cret")).await,
            (StatusCode::OK, "done".to_owned())
        );
    }
}
