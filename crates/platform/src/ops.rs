//! The ops routes every quintet process serves, public and unthrottled:
//! `/metrics`, `/healthz`, `/readyz`, `/openapi.json` and `/docs`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::{StatusCode, header};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use crate::health::{Health, Readiness};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "quintet",
        description = "One binary, five backend services. Service routes take \
                       `Authorization: Bearer <token>` when the server has tokens configured; \
                       the ops routes are public. Errors are `{\"error\": \"...\"}`."
    ),
    paths(healthz, readyz, metrics_text),
    components(schemas(Readiness, crate::error::ErrorBody, Alive))
)]
struct OpsApi;

/// The OpenAPI document of the ops routes merged with every service's, plus the bearer scheme.
pub fn openapi(
    services: impl IntoIterator<Item = utoipa::openapi::OpenApi>,
) -> utoipa::openapi::OpenApi {
    let mut doc = OpsApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for service in services {
        doc.merge(service);
    }
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    doc
}

#[derive(Clone)]
struct OpsState {
    health: Arc<Health>,
    metrics: PrometheusHandle,
}

/// The ops router, its OpenAPI document and the interactive page at `/docs`.
pub fn router(
    health: Arc<Health>,
    metrics: PrometheusHandle,
    doc: utoipa::openapi::OpenApi,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(OpsState { health, metrics })
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Alive {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Alive)))]
async fn healthz() -> Json<Alive> {
    Json(Alive { status: "ok" })
}

/// Readiness: every store is reachable and the process is not shutting down.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready to serve", body = Readiness),
        (status = 503, description = "A check failed, or the process is draining", body = Readiness)
    )
)]
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    let readiness = state.health.readiness().await;
    let status = if readiness.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
async fn metrics_text(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
