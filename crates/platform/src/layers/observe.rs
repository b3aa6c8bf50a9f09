//! Observes every request: RED metrics and the access log.
//!
//! Metrics: `quintet_<service>_http_requests_total{method,route,status}`,
//! `quintet_<service>_http_request_duration_seconds{method,route,status}` and
//! `quintet_<service>_http_requests_in_flight{method,route}`, labelled by the
//! route template (never the raw path) and by the method when it is one of
//! the nine of RFC 9110 and RFC 5789, else `OTHER`: nothing a client sends
//! becomes a label value, so label cardinality stays bounded.
//! Metric handles are cached per label set, so the hot path allocates nothing.
//!
//! Logs: a `request` span and a completion line at `debug` (off by default:
//! at `info` they would cost more than the request); a server error (5xx) is
//! always logged at `error` with its method, route, status and request id.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use metrics::{Counter, Gauge, Histogram};
use tracing::Instrument;

/// The metrics of one service's routes, built once when its routes are stacked.
pub struct RouteMetrics {
    total: &'static str,
    duration: &'static str,
    in_flight: &'static str,
    /// route template → its handles per method; filled on first use, read after.
    handles: RwLock<HashMap<String, Vec<MethodHandles>>>,
}

struct MethodHandles {
    method: Method,
    in_flight: Gauge,
    by_status: Vec<(u16, Counter, Histogram)>,
}

impl RouteMetrics {
    /// Leaked on purpose: one small value per service for the life of the process.
    pub fn for_service(service: &str) -> &'static RouteMetrics {
        let names = crate::metrics::RouteNames::for_service(service);
        Box::leak(Box::new(RouteMetrics {
            total: names.requests_total,
            duration: names.request_duration_seconds,
            in_flight: names.requests_in_flight,
            handles: RwLock::new(HashMap::new()),
        }))
    }

    /// Runs `f` on the handles of (route, method), creating them on first use.
    fn with<T>(
        &self,
        route: &str,
        method: &Method,
        f: impl Fn(&MethodHandles) -> Option<T>,
    ) -> Option<T> {
        let map = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        map.get(route)?
            .iter()
            .find(|h| h.method == *method)
            .and_then(f)
    }

    fn in_flight(&self, route: &str, method: &Method) -> Gauge {
        if let Some(gauge) = self.with(route, method, |h| Some(h.in_flight.clone())) {
            return gauge;
        }
        let mut map = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(route.to_owned()).or_default();
        if let Some(h) = entry.iter().find(|h| h.method == *method) {
            return h.in_flight.clone();
        }
        let labels = [
            ("method", method.as_str().to_owned()),
            ("route", route.to_owned()),
        ];
        let gauge = metrics::gauge!(self.in_flight, &labels);
        entry.push(MethodHandles {
            method: method.clone(),
            in_flight: gauge.clone(),
            by_status: Vec::new(),
        });
        gauge
    }

    /// The request counter and latency histogram of (route, method, status).
    /// Call after [`Self::in_flight`], which creates the route's entry.
    fn completed(&self, route: &str, method: &Method, status: u16) -> (Counter, Histogram) {
        let found = self.with(route, method, |h| {
            h.by_status
                .iter()
                .find(|(s, ..)| *s == status)
                .map(|(_, c, d)| (c.clone(), d.clone()))
        });
        if let Some(found) = found {
            return found;
        }
        let labels = [
            ("method", method.as_str().to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = (
            metrics::counter!(self.total, &labels),
            metrics::histogram!(self.duration, &labels),
        );
        let mut map = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = map
            .get_mut(route)
            .and_then(|v| v.iter_mut().find(|h| h.method == *method))
        {
            h.by_status
                .push((status, handles.0.clone(), handles.1.clone()));
        }
        handles
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

/// Decrements the in-flight gauge even when the request future is dropped
/// (client gone, timeout).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The middleware: counts and times the request under its route template,
/// and logs it (a server error always, with its hidden detail if any).
pub async fn record(
    State(metrics): State<&'static RouteMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(req.method()).clone();
    let request_id = req.headers().get("x-request-id").cloned();
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");

    let gauge = metrics.in_flight(route, &method);
    gauge.increment(1.0);
    let in_flight = InFlight(gauge);
    let started = Instant::now();
    let span = tracing::debug_span!("request", %method, route, request_id);
    let mut response = next.run(req).instrument(span).await;
    drop(in_flight);
    let elapsed = started.elapsed();

    let status = response.status().as_u16();
    let (total, duration) = metrics.completed(route, &method, status);
    total.increment(1);
    duration.record(elapsed.as_secs_f64());
    let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    if let Some(hidden) = response
        .extensions_mut()
        .remove::<crate::error::HiddenDetail>()
    {
        tracing::error!(%method, route, status, request_id, latency_ms, error = %hidden.detail, "request failed");
        reveal_request_id(&mut response, &hidden.class, request_id);
    } else if response.status().is_server_error() {
        tracing::error!(%method, route, status, request_id, latency_ms, "request failed");
    } else {
        tracing::debug!(%method, route, status, request_id, latency_ms, "request");
    }
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

    #[test]
    fn only_standard_methods_are_labels() {
        assert_eq!(method_label(&Method::PATCH), &Method::PATCH);
        let odd = Method::from_bytes(b"M1234Z").expect("method");
        assert_eq!(method_label(&odd).as_str(), "OTHER");
    }
}
