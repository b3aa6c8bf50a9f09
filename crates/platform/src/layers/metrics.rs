//! RED metrics for every route: `quintet_<service>_http_requests_total`,
//! `quintet_<service>_http_request_duration_seconds` and
//! `quintet_<service>_http_requests_in_flight`, labelled by method and the
//! route template (never the raw path, to keep label cardinality bounded).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// The metric names of one service, built once when its routes are stacked.
#[derive(Debug)]
pub struct RouteMetrics {
    total: String,
    duration: String,
    in_flight: String,
}

impl RouteMetrics {
    /// Leaked on purpose: one small value per service for the life of the process.
    pub fn for_service(service: &str) -> &'static RouteMetrics {
        Box::leak(Box::new(RouteMetrics {
            total: format!("quintet_{service}_http_requests_total"),
            duration: format!("quintet_{service}_http_request_duration_seconds"),
            in_flight: format!("quintet_{service}_http_requests_in_flight"),
        }))
    }
}

/// Decrements the in-flight gauge even when the request future is dropped
/// (client gone, timeout).
struct InFlight(metrics::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

pub async fn record(
    State(names): State<&'static RouteMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let labels = [("method", method), ("route", route)];

    let gauge = metrics::gauge!(names.in_flight.clone(), &labels);
    gauge.increment(1.0);
    let in_flight = InFlight(gauge);
    let started = Instant::now();
    let response = next.run(req).await;
    drop(in_flight);

    let [method, route] = labels;
    let labels = [
        method,
        route,
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(names.total.clone(), &labels).increment(1);
    metrics::histogram!(names.duration.clone(), &labels).record(started.elapsed().as_secs_f64());
    response
}
