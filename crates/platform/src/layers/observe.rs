//! Observes every request: RED metrics and the access log.
//!
//! Metrics: `quintet_<service>_http_requests_total{method,route,status}`,
//! `quintet_<service>_http_request_duration_seconds{method,route,status}` and
//! `quintet_<service>_http_requests_in_flight{method,route}`, labelled by the
//! route template (never the raw path; a gRPC method has its own route,
//! `/package.Service/Method`, from the service's descriptors, and any other
//! path under the service shares `/package.Service/{*rest}`) and by the
//! method when it is one of
//! the nine of RFC 9110 and RFC 5789, else `OTHER`: nothing a client sends
//! becomes a label value, so label cardinality stays bounded. A gRPC answer
//! is counted under the HTTP status its `grpc-status` maps to
//! ([`grpc_code_as_http`]), so gRPC failures are 4xx and 5xx like REST's;
//! one whose status comes in its trailers (every answer with messages, a
//! stream's above all) is counted and timed when its body ends.
//! Metric handles are resolved once per route and method (the service
//! stack keeps its route's handles beside the route, see [`super::guard`]),
//! so a request does no label lookup and allocates nothing for its metrics.
//!
//! Logs: a `request` span and a completion line at `debug` (off by default:
//! at `info` they would cost more than the request); a server error (5xx) is
//! always logged at `error` with its method, route, status and request id.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, Method};
use metrics::{Counter, Gauge, Histogram};
use pin_project_lite::pin_project;
use tracing::Instrument;

use crate::grpc::is_grpc;

/// The metrics of one service's routes, built once when its routes are stacked.
pub struct RouteMetrics {
    total: &'static str,
    duration: &'static str,
    in_flight: &'static str,
    /// route template → its handles; filled on first use, read after.
    routes: RwLock<HashMap<String, &'static RouteHandles>>,
}

/// The metric handles of one route template: per method, resolved on the
/// first request of that method and kept, so a request does no label lookup.
pub struct RouteHandles {
    route: String,
    total: &'static str,
    duration: &'static str,
    in_flight: &'static str,
    /// Indexed by [`method_slot`]: the nine standard methods, then `OTHER`.
    methods: [OnceLock<MethodHandles>; 10],
}

struct MethodHandles {
    method: Method,
    total: &'static str,
    duration: &'static str,
    in_flight: Gauge,
    by_status: RwLock<Vec<(u16, Counter, Histogram)>>,
}

impl RouteMetrics {
    /// Leaked on purpose: one small value per service for the life of the process.
    pub fn for_service(service: &str) -> &'static RouteMetrics {
        let names = crate::metrics::RouteNames::for_service(service);
        Box::leak(Box::new(RouteMetrics {
            total: names.requests_total,
            duration: names.request_duration_seconds,
            in_flight: names.requests_in_flight,
            routes: RwLock::new(HashMap::new()),
        }))
    }

    /// The handles of `route`, created on its first request. Leaked on
    /// purpose: route templates come from the router, never from a client,
    /// so there is one per route (plus `unmatched`) for the life of the process.
    pub fn route(&self, route: &str) -> &'static RouteHandles {
        if let Some(&found) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return found;
        }
        let mut map = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(route.to_owned()).or_insert_with(|| {
            Box::leak(Box::new(RouteHandles {
                route: route.to_owned(),
                total: self.total,
                duration: self.duration,
                in_flight: self.in_flight,
                methods: Default::default(),
            }))
        })
    }

    /// The handles of the route `req` matched (`unmatched` when none did).
    pub fn route_of(&self, req: &Request) -> &'static RouteHandles {
        self.route(route_template(req))
    }
}

/// The route template `req` matched, or `unmatched` when none did.
fn route_template(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

impl RouteHandles {
    /// Whether these are the handles of the route `req` matched.
    pub fn matches(&self, req: &Request) -> bool {
        route_template(req) == self.route
    }

    fn method(&self, method: &Method) -> &MethodHandles {
        let method = method_label(method);
        self.methods[method_slot(method)].get_or_init(|| {
            let labels = [
                ("method", method.as_str().to_owned()),
                ("route", self.route.clone()),
            ];
            MethodHandles {
                method: method.clone(),
                total: self.total,
                duration: self.duration,
                in_flight: metrics::gauge!(self.in_flight, &labels),
                by_status: RwLock::new(Vec::new()),
            }
        })
    }
}

impl MethodHandles {
    /// The request counter and latency histogram of `status`.
    fn completed(&self, route: &str, status: u16) -> (Counter, Histogram) {
        let found = self
            .by_status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(s, ..)| *s == status)
            .map(|(_, c, d)| (c.clone(), d.clone()));
        if let Some(found) = found {
            return found;
        }
        let labels = [
            ("method", self.method.as_str().to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let counter = metrics::counter!(self.total, &labels);
        let histogram = metrics::histogram!(self.duration, &labels);
        let mut by_status = self
            .by_status
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !by_status.iter().any(|(s, ..)| *s == status) {
            by_status.push((status, counter.clone(), histogram.clone()));
        }
        (counter, histogram)
    }
}

/// One request seen from the outside: started when it enters the stack,
/// finished with its response. Dropped unfinished (client gone, future
/// dropped), it still takes itself out of the in-flight gauge.
pub struct Observation {
    route: &'static RouteHandles,
    handles: &'static MethodHandles,
    request_id: Option<HeaderValue>,
    started: Instant,
    finished: bool,
}

impl Observation {
    /// Counts `req` in flight on `route` and starts its clock.
    pub fn start(route: &'static RouteHandles, req: &Request) -> Self {
        let handles = route.method(req.method());
        handles.in_flight.increment(1.0);
        Self {
            route,
            handles,
            request_id: req.headers().get("x-request-id").cloned(),
            started: Instant::now(),
            finished: false,
        }
    }

    fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
    }

    /// The request's span (disabled unless `debug` is on for this module).
    pub fn span(&self) -> tracing::Span {
        let (method, route, request_id) = (
            &self.handles.method,
            self.route.route.as_str(),
            self.request_id(),
        );
        tracing::debug_span!("request", %method, route, request_id)
    }

    /// Counts and times the answer, and logs it (a server error always,
    /// with its hidden detail if any, which the caller then sees replaced
    /// by its class and the request id). A gRPC answer whose status is not
    /// in its headers has it in its trailers, after its messages: it is
    /// counted, timed and taken out of the in-flight gauge when its body
    /// ends ([`GrpcBody`]), so a stream that fails after its first message
    /// counts under its real status, and a stream's time is all of it.
    pub fn finish(mut self, response: &mut Response) {
        if is_grpc(response.headers()) && !response.headers().contains_key(GRPC_STATUS) {
            let body = std::mem::take(response.body_mut());
            *response.body_mut() = axum::body::Body::new(GrpcBody {
                inner: body,
                observation: Some(self),
            });
            return;
        }
        let status = grpc_as_http(response).unwrap_or_else(|| response.status().as_u16());
        let hidden = response
            .extensions_mut()
            .remove::<crate::error::HiddenDetail>();
        self.complete(status, hidden.as_ref());
        if let Some(hidden) = hidden {
            reveal_request_id(response, &hidden.class, self.request_id());
        }
    }

    /// Counts and times the request under `status`, and logs it.
    fn complete(&mut self, status: u16, hidden: Option<&crate::error::HiddenDetail>) {
        self.finished = true;
        self.handles.in_flight.decrement(1.0);
        let elapsed = self.started.elapsed();
        let route = self.route.route.as_str();
        let (total, duration) = self.handles.completed(route, status);
        total.increment(1);
        duration.record(elapsed.as_secs_f64());
        let method = &self.handles.method;
        let request_id = self.request_id();
        let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if let Some(hidden) = hidden {
            tracing::error!(%method, route, status, request_id, latency_ms, error = %hidden.detail, "request failed");
        } else if status >= 500 {
            tracing::error!(%method, route, status, request_id, latency_ms, "request failed");
        } else {
            tracing::debug!(%method, route, status, request_id, latency_ms, "request");
        }
    }
}

const GRPC_STATUS: &str = "grpc-status";

pin_project! {
    /// The body of a gRPC answer whose status comes in its trailers: it
    /// completes the request's [`Observation`] when the trailers pass (under
    /// the HTTP status their `grpc-status` maps to), when the body fails
    /// (500) or ends without them (500: not a gRPC ending), or when it is
    /// dropped first (499: the client went away mid-answer).
    struct GrpcBody {
        #[pin]
        inner: axum::body::Body,
        observation: Option<Observation>,
    }

    impl PinnedDrop for GrpcBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(mut observation) = this.project().observation.take() {
                observation.complete(499, None);
            }
        }
    }
}

impl http_body::Body for GrpcBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let status = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => trailers
                    .get(GRPC_STATUS)
                    .map_or(500, |code| grpc_code_as_http(code.as_bytes())),
                None => return polled,
            },
            Poll::Ready(Some(Err(_)) | None) => 500,
        };
        if let Some(mut observation) = this.observation.take() {
            observation.complete(status, None);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The HTTP status a gRPC answer's `grpc-status` header stands for, when
/// the answer is gRPC and carries its status in the headers: every error a
/// unary call answers at once (one whose status is in the trailers is
/// counted when they pass, see [`GrpcBody`]).
fn grpc_as_http(response: &Response) -> Option<u16> {
    if !is_grpc(response.headers()) {
        return None;
    }
    let code = response.headers().get(GRPC_STATUS)?;
    Some(grpc_code_as_http(code.as_bytes()))
}

/// The HTTP status a gRPC status code stands for (Google's mapping of its
/// canonical codes: `UNAVAILABLE` 503, `INTERNAL` 500, `INVALID_ARGUMENT`
/// 400, …). A gRPC answer is HTTP 200 whatever its outcome; counted this
/// way its failures show in the 5xx of the request metrics like REST's.
fn grpc_code_as_http(code: &[u8]) -> u16 {
    match code {
        b"0" => 200,
        b"1" => 499,
        b"3" | b"9" | b"11" => 400,
        b"4" => 504,
        b"5" => 404,
        b"6" | b"10" => 409,
        b"7" => 403,
        b"8" => 429,
        b"12" => 501,
        b"14" => 503,
        b"16" => 401,
        // UNKNOWN, INTERNAL, DATA_LOSS, and codes gRPC does not define.
        _ => 500,
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.finished {
            self.handles.in_flight.decrement(1.0);
        }
    }
}

/// Rewrites the body of an error whose detail was kept back to its class and
/// the request id, which is what the caller quotes to find the detail in the log.
fn reveal_request_id(response: &mut Response, class: &str, request_id: &str) {
    let body = crate::error::ErrorBody {
        error: format!("{class} (request id {request_id})"),
    };
    if let Ok(bytes) = serde_json::to_vec(&body) {
        response.headers_mut().remove(http::header::CONTENT_LENGTH);
        *response.body_mut() = axum::body::Body::from(bytes);
    }
}

/// Every method that is not a standard one, as one label value.
static OTHER: LazyLock<Method> = LazyLock::new(|| {
    Method::from_bytes(b"OTHER").unwrap_or(Method::GET) // a valid token: never the fallback
});

/// The method as a label: a standard method as itself, any other as `OTHER`.
pub fn method_label(method: &Method) -> &Method {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS
        | Method::CONNECT
        | Method::TRACE => method,
        _ => &OTHER,
    }
}

/// Where `method`'s handles sit in [`RouteHandles`]: the standard methods
/// first, any other (already labelled `OTHER`) last.
fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// The middleware of routes without a guard (the ops routes): counts,
/// times and logs each request as the service stack does.
pub async fn record(
    State(metrics): State<&'static RouteMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let observation = Observation::start(metrics.route_of(&req), &req);
    let span = observation.span();
    let mut response = next.run(req).instrument(span).await;
    observation.finish(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::{HeaderValue, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::ErrorResponse;

    #[tokio::test]
    async fn a_hidden_detail_reaches_the_log_and_only_the_class_and_request_id_the_caller() {
        let app = Router::new()
            .route(
                "/x",
                get(|| async {
                    ErrorResponse::hidden(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "x store unavailable; retry later",
                        "error connecting to db.internal:5432 as user app: password authentication failed",
                    )
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                RouteMetrics::for_service("observe_test"),
                record,
            ));
        let response = app
            .oneshot(
                Request::get("/x")
                    .header("x-request-id", "rid-7")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"error": "x store unavailable; retry later (request id rid-7)"})
        );
    }

    #[tokio::test]
    async fn a_grpc_stream_that_fails_after_its_first_message_counts_under_its_trailers_status() {
        use http_body_util::BodyExt as _;

        let handle = crate::telemetry::metrics_handle();
        let app = Router::new()
            .route(
                "/s",
                axum::routing::post(|| async {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert(GRPC_STATUS, HeaderValue::from_static("14"));
                    let frames = futures_util::stream::iter([
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                            bytes::Bytes::from_static(b"\0\0\0\0\0"),
                        )),
                        Ok(http_body::Frame::trailers(trailers)),
                    ]);
                    Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/grpc")
                        .body(Body::new(http_body_util::StreamBody::new(frames)))
                        .expect("response")
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                RouteMetrics::for_service("observe_grpc_test"),
                record,
            ));
        let response = app
            .oneshot(Request::post("/s").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let counted = |text: &str, status: &str| {
            text.lines().any(|l| {
                l.starts_with("quintet_observe_grpc_test_http_requests_total{")
                    && l.contains(&format!("status=\"{status}\""))
                    && l.ends_with(" 1")
            })
        };
        // Headers sent, messages still to come: not counted yet.
        assert!(!counted(&handle.render(), "200"));
        assert!(!counted(&handle.render(), "503"));
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(
            body.trailers().and_then(|t| t.get(GRPC_STATUS)),
            Some(&HeaderValue::from_static("14"))
        );
        let text = handle.render();
        assert!(
            counted(&text, "503"),
            "UNAVAILABLE in the trailers is a 503:\n{text}"
        );
        assert!(!counted(&text, "200"), "{text}");
    }

    #[test]
    fn only_standard_methods_are_labels() {
        assert_eq!(method_label(&Method::PATCH), &Method::PATCH);
        let odd = Method::from_bytes(b"M1234Z").expect("method");
        assert_eq!(method_label(&odd).as_str(), "OTHER");
    }
}
