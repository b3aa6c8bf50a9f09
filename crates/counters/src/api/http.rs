//! REST routes of the counters service, and the one place where its errors
//! become HTTP statuses ([`ApiError`]'s `IntoResponse`).

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use platform::ErrorResponse;
use platform::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{CounterKey, DomainError, KeyPrefix, PageLimit};
use crate::engine::{Engine, EngineError};
use crate::ports::StoreError;

/// Largest `POST /increment` body: a key of the maximum size, JSON-escaped, and a number.
fn body_limit(max_key_bytes: usize) -> usize {
    max_key_bytes.saturating_mul(6).saturating_add(1024)
}

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    max_key_bytes: usize,
}

pub fn router(engine: Arc<Engine>, max_key_bytes: usize) -> Router {
    Router::new()
        .route("/increment", post(increment))
        .route("/counters", get(list))
        .route("/counters/{key}", get(fetch))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit(
            max_key_bytes,
        )))
        .with_state(AppState {
            engine,
            max_key_bytes,
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(increment, fetch, list),
    components(schemas(IncrementBody, Incremented, CounterBody, PageBody, ErrorBody)),
    tags((name = "counters", description = "Write-behind counters"))
)]
struct CountersApi;

/// The document of the counters routes; `max_key_bytes` is the server's
/// --counter-max-key-bytes.
pub fn openapi(max_key_bytes: usize) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let mut doc = CountersApi::openapi();
    if let Some(RefOr::T(Schema::Object(body))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("IncrementBody"))
        && let Some(RefOr::T(Schema::Object(key))) = body.properties.get_mut("key")
    {
        key.max_length = Some(max_key_bytes);
    }
    for item in doc.paths.paths.values_mut() {
        for operation in item.get.iter_mut() {
            for parameter in operation.parameters.iter_mut().flatten() {
                if parameter.name == "key"
                    && let Some(RefOr::T(Schema::Object(key))) = parameter.schema.as_mut()
                {
                    key.max_length = Some(max_key_bytes);
                }
            }
        }
    }
    doc
}

/// Stored records found corrupt when read (a read answered 500, or a page
/// skipped one).
pub const CORRUPT_RECORDS: &str = "quintet_counters_corrupt_records_total";

/// Everything a counters route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{}", .0.message)]
    Body(ErrorResponse),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) | ApiError::Engine(EngineError::Invalid(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Body(e) => e.status,
            ApiError::Engine(EngineError::NotFound) => StatusCode::NOT_FOUND,
            ApiError::Engine(EngineError::Store(
                StoreError::Overflow { .. } | StoreError::Corrupt { .. },
            )) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Engine(
                EngineError::Store(_)
                | EngineError::TooManyPending(_)
                | EngineError::JournalBusy
                | EngineError::Journal(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let ApiError::Engine(
            EngineError::Store(StoreError::Unavailable(_)) | EngineError::Journal(_),
        ) = &self
        {
            // Logged with the request id by the observe layer, never sent.
            return ErrorResponse::hidden(status, "counters store unavailable; retry later", &self)
                .into_response();
        }
        if let ApiError::Engine(EngineError::Store(StoreError::Corrupt { key, reason })) = &self {
            metrics::counter!(CORRUPT_RECORDS).increment(1);
            tracing::error!(key, reason, "refused to serve a corrupt counter total");
            return ErrorResponse::new(
                status,
                format!(
                    "the stored total of counter '{key}' failed its integrity check and is not \
                     served; {}",
                    platform::integrity::VERIFY_HINT
                ),
            )
            .into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "counters request failed");
        }
        // A 503 gets its Retry-After from ErrorResponse.
        ErrorResponse::new(status, self.to_string()).into_response()
    }
}

/// An increment: add `value` to `key`'s total (a new key starts at 0).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IncrementBody {
    /// 1..=256 bytes of UTF-8 (--counter-max-key-bytes; a key within maxLength characters
    /// that is over that many bytes is refused with 422).
    #[schema(min_length = 1, max_length = 256)]
    pub key: String,
    /// A signed 64-bit integer.
    pub value: i64,
}

/// The key's total after the increment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CounterBody {
    pub key: String,
    pub value: i64,
}

/// The answer to an increment, in the original service's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Incremented {
    pub data: CounterBody,
}

/// One page of counters in key order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageBody {
    pub items: Vec<CounterBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next: Option<String>,
    /// Keys in this page's range whose stored total failed its integrity check:
    /// left out of `items` (run `quintet verify`). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only keys starting with this (at most --counter-max-key-bytes bytes).
    #[param(max_length = 256)]
    prefix: Option<String>,
    /// Counters per page, 1..=1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next` value of the previous page; empty means from the start.
    #[param(max_length = 256)]
    cursor: Option<String>,
}

fn is_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match platform::error::media_type(headers).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type '{}': send application/json {{\"key\": \"...\", \"value\": 1}}",
            other.chars().take(100).collect::<String>()
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "missing Content-Type: send application/json {\"key\": \"...\", \"value\": 1}".into(),
        )),
    }
}

/// Add to a key's total and get the new total.
#[utoipa::path(
    post,
    path = "/increment",
    tag = "counters",
    request_body(content = IncrementBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The key's total after this increment", body = Incremented),
        (status = 400, description = "Body is not valid JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing or of the wrong type, the key is empty or too long, \
            or the total would overflow (nothing applied)", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded; see Retry-After", body = ErrorBody),
        (status = 503, description = "Store unreachable for a new key, or too many keys pending; retry", body = ErrorBody)
    )
)]
async fn increment(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Incremented>, ApiError> {
    is_json(&headers)?;
    let body = body.map_err(|r| {
        ApiError::Body(ErrorResponse::from_body_rejection(
            r,
            body_limit(state.max_key_bytes),
        ))
    })?;
    let deserializer = &mut serde_json::Deserializer::from_slice(&body);
    let parsed: IncrementBody = match serde_path_to_error::deserialize(deserializer) {
        Ok(parsed) => parsed,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(if inner.is_data() {
                // Name the field: `value: invalid type: floating point ...`.
                let field = if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                };
                ApiError::Unprocessable(format!("{field}{inner}"))
            } else {
                ApiError::BadJson(inner.to_string())
            });
        }
    };
    let key = CounterKey::parse(parsed.key, state.max_key_bytes)
        .map_err(|e| ApiError::Unprocessable(format!("key: {e}")))?;
    let total = state.engine.increment(key.clone(), parsed.value).await?;
    Ok(Json(Incremented {
        data: CounterBody {
            key: key.into_string(),
            value: total,
        },
    }))
}

/// A key's total: what the store holds plus what this instance has pending.
#[utoipa::path(
    get,
    path = "/counters/{key}",
    tag = "counters",
    params(("key" = String, Path, min_length = 1, max_length = 256, description = "The counter's key (percent-encoded), 1..=256 bytes of UTF-8 (--counter-max-key-bytes)")),
    responses(
        (status = 200, description = "The total", body = CounterBody),
        (status = 400, description = "Key empty or too long", body = ErrorBody),
        (status = 404, description = "Never incremented", body = ErrorBody),
        (status = 500, description = "The stored total failed its integrity check (named in the error; run `quintet verify`)", body = ErrorBody),
        (status = 503, description = "Store unreachable; retry", body = ErrorBody)
    )
)]
async fn fetch(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<CounterBody>, ApiError> {
    let key = CounterKey::parse(key, state.max_key_bytes)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let value = state.engine.get(&key).await?;
    Ok(Json(CounterBody {
        key: key.into_string(),
        value,
    }))
}

/// Page through counters in key order, optionally by prefix.
#[utoipa::path(
    get,
    path = "/counters",
    tag = "counters",
    params(ListParams),
    responses(
        (status = 200, description = "A page; follow `next` for more. Corrupt stored totals are left out and named in `corrupt`", body = PageBody),
        (status = 400, description = "Bad limit, prefix or cursor", body = ErrorBody),
        (status = 503, description = "Store unreachable; retry", body = ErrorBody)
    )
)]
async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let bad = |e: DomainError| ApiError::BadRequest(e.to_string());
    let limit = PageLimit::parse(params.limit.as_deref()).map_err(|e| bad(e.into()))?;
    let prefix = KeyPrefix::parse(params.prefix, state.max_key_bytes).map_err(bad)?;
    let after = params
        .cursor
        .filter(|c| !c.is_empty())
        .map(|c| CounterKey::parse(c, state.max_key_bytes))
        .transpose()
        .map_err(|_| ApiError::BadRequest("cursor is not one this server handed out".into()))?;
    let page = state.engine.page(&prefix, after.as_ref(), limit).await?;
    if !page.corrupt.is_empty() {
        metrics::counter!(CORRUPT_RECORDS).increment(page.corrupt.len() as u64);
    }
    Ok(Json(PageBody {
        items: page
            .items
            .into_iter()
            .map(|c| CounterBody {
                key: c.key.into_string(),
                value: c.value,
            })
            .collect(),
        next: page.next.map(CounterKey::into_string),
        corrupt: page.corrupt,
    }))
}
