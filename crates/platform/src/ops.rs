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

/// What the server enforces on every service route, so the document can
/// say it: the contract of the running process, not of every possible one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enforced {
    /// Bearer tokens are configured: service routes answer 401 without one.
    pub auth: bool,
    /// A per-client rate limit is on: service routes may answer 429.
    pub rate_limit: bool,
    /// Failed authentications are rate-limited: with `auth`, 429 too.
    pub auth_failure_limit: bool,
}

/// The OpenAPI document of the ops routes merged with every service's.
///
/// Each service's component schemas are named `<service>.<Name>` (two
/// services may both have a `PageBody`; merged under one name, one would
/// describe the other's answers), except those the ops document defines
/// too (`ErrorBody`). Every service operation documents what the platform
/// layers answer before the handler runs: 401 and the bearer requirement
/// when tokens are configured, 429 when a rate limit is on, 413 when it
/// takes a body, 414 and 503 (timeout or unavailable store) always. Ops routes are
/// public.
pub fn openapi(
    services: impl IntoIterator<Item = (&'static str, utoipa::openapi::OpenApi)>,
    enforced: Enforced,
) -> utoipa::openapi::OpenApi {
    let mut doc = OpsApi::openapi();
    env!("CARGO_PKG_VERSION").clone_into(&mut doc.info.version);
    if enforced.auth {
        doc.info.description = Some(
            "One binary, five backend services. This server has bearer tokens configured: \
             service routes need `Authorization: Bearer <token>` (401 without a valid one); the \
             ops routes (/healthz, /readyz, /metrics, /openapi.json, /docs) are public. Errors \
             are `{\"error\": \"...\"}`."
                .into(),
        );
    } else {
        doc.info.description = Some(
            "One binary, five backend services. This server has no bearer tokens configured: \
             every route is open (with --tokens, service routes need `Authorization: Bearer \
             <token>`; the ops routes stay public). Errors are `{\"error\": \"...\"}`."
                .into(),
        );
    }
    let shared: Vec<String> = doc
        .components
        .as_ref()
        .map(|c| c.schemas.keys().cloned().collect())
        .unwrap_or_default();
    for (name, service) in services {
        doc.merge(service_document(name, service, &shared, enforced));
    }
    if enforced.auth {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
    doc
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];
const SCHEMA_REF: &str = "#/components/schemas/";

/// One service's document with its schemas named for it and the platform's
/// answers added to every operation (see [`openapi`]).
fn service_document(
    service: &str,
    doc: utoipa::openapi::OpenApi,
    shared: &[String],
    enforced: Enforced,
) -> utoipa::openapi::OpenApi {
    use serde_json::{Value, json};
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    let renamed: Vec<String> = value["components"]["schemas"]
        .as_object()
        .map(|s| s.keys().filter(|k| !shared.contains(k)).cloned().collect())
        .unwrap_or_default();
    rename_refs(&mut value, service, &renamed);
    if let Some(schemas) = value["components"]["schemas"].as_object_mut() {
        for name in &renamed {
            if let Some(schema) = schemas.remove(name) {
                schemas.insert(format!("{service}.{name}"), schema);
            }
        }
    }
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("{SCHEMA_REF}ErrorBody")}}}
        })
    };
    if let Some(paths) = value["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let admin = path.starts_with("/admin/");
            for method in METHODS {
                let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                    continue;
                };
                let has_body = operation.contains_key("requestBody");
                if enforced.auth {
                    operation.insert("security".into(), json!([{"bearer": []}]));
                } else {
                    operation.remove("security");
                }
                let Some(responses) = operation
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                else {
                    continue;
                };
                let mut add = |status: &str, description: &str| {
                    if !responses.contains_key(status) {
                        responses.insert(status.into(), error(description));
                    }
                };
                if enforced.auth {
                    add("401", "No bearer token, or one this server does not accept");
                    if admin {
                        add(
                            "403",
                            "The token lacks the admin scope (configure it as name:secret:admin)",
                        );
                    }
                }
                if enforced.rate_limit || (enforced.auth && enforced.auth_failure_limit) {
                    add(
                        "429",
                        "Over this client's rate limit, or too many failed authentications from \
                         its address; retry after Retry-After seconds",
                    );
                }
                if has_body {
                    add("413", "The body is larger than this route accepts");
                }
                add("414", "The request URI is over 16 KiB");
                add(
                    "503",
                    "The request timed out, or the service's store is unavailable; retry later",
                );
            }
        }
    }
    serde_json::from_value(value).unwrap_or(doc)
}

/// Points every `$ref` to one of `names` at its per-service name.
fn rename_refs(value: &mut serde_json::Value, service: &str, names: &[String]) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "$ref"
                    && let Some(target) = inner.as_str().and_then(|r| r.strip_prefix(SCHEMA_REF))
                    && names.iter().any(|n| n == target)
                {
                    *inner = serde_json::Value::String(format!("{SCHEMA_REF}{service}.{target}"));
                } else {
                    rename_refs(inner, service, names);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                rename_refs(item, service, names);
            }
        }
        _ => {}
    }
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
