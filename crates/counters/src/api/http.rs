//! REST routes of the counters service, and the one place where its errors
//! become HTTP statuses ([`ApiError`]'s `IntoResponse`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use platform::ErrorResponse;
use platform::error::ErrorBody;
use platform::extract::{JsonBody, JsonExample};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{CounterKey, DomainError, KeyPrefix, PageLimit};
use crate::engine::{Engine, EngineError};
use crate::metrics::CORRUPT_RECORDS;
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

/// The counters routes (`/increment`, `/counters`, `/counters/{key}`), with
/// keys of at most `max_key_bytes` bytes.
pub fn router(engine: Arc<Engine>, max_key_bytes: usize) -> Router {
    let router = Router::new()
        .route("/increment", post(increment))
        .route("/counters", get(list))
        .route("/counters/{key}", get(fetch));
    platform::extract::limit_bodies(router, body_limit(max_key_bytes)).with_state(AppState {
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
        if let Some(operation) = &mut item.get {
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

/// Everything a counters route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An increment whose key is refused (422).
    #[error("{0}")]
    Unprocessable(String),
    /// A key, query, prefix or cursor that is not valid where it was read (400).
    #[error("{0}")]
    BadRequest(String),
    /// The body could not be read (too large, cut short): the answer is ready.
    #[error("{}", .0.message)]
    Body(ErrorResponse),
    /// The engine refused or failed (422, 404, 500 or 503 by its kind).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) | ApiError::Engine(EngineError::Invalid(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Body(e) => e.status,
            ApiError::Engine(EngineError::NotFound) => StatusCode::NOT_FOUND,
            ApiError::Engine(EngineError::Store(
                StoreError::Overflow { .. } | StoreError::Corrupt { .. },
            )) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Engine(
                EngineError::Store(_)
                | EngineError::TooManyPending(_)
                | EngineError::JournalBusy
                | EngineError::Journal(_)
                | EngineError::BaseUnreadable,
            ) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let ApiError::Engine(
            EngineError::Store(StoreError::Unavailable(_))
            | EngineError::Journal(_)
            | EngineError::BaseUnreadable,
        ) = &self
        {
            // The chain is logged with the request id by the observe layer,
            // never sent.
            return ErrorResponse::hidden(
                status,
                "counters store unavailable; retry later",
                platform::backend::chain(&self),
            )
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

impl JsonExample for IncrementBody {
    const EXAMPLE: &'static str = r#"{"key": "...", "value": 1}"#;
}

/// The key's total after the increment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CounterBody {
    /// The counter's key.
    pub key: String,
    /// Its total.
    pub value: i64,
}

/// The answer to an increment, in the original service's shape.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Incremented {
    /// The key and its new total.
    pub data: CounterBody,
}

/// One page of counters in key order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageBody {
    /// The page's counters, in key order.
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
struct ListParams {
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

/// An increment body (read as every JSON body is, by [`JsonBody`]: 415,
/// 413, 400 or 422 naming the field) with its key checked against
/// `max_key_bytes`.
pub fn increment_request(
    parsed: IncrementBody,
    max_key_bytes: usize,
) -> Result<(CounterKey, i64), ApiError> {
    let key = CounterKey::parse(parsed.key, max_key_bytes)
        .map_err(|e| ApiError::Unprocessable(format!("key: {e}")))?;
    Ok((key, parsed.value))
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
    JsonBody(body): JsonBody<IncrementBody>,
) -> Result<Json<Incremented>, ApiError> {
    let (key, value) = increment_request(body, state.max_key_bytes)?;
    let total = state.engine.increment(key.clone(), value).await?;
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use bytes::Bytes;
    use http::HeaderMap;

    use super::*;

    const MAX_KEY_BYTES: usize = 16;

    fn read(body: &[u8]) -> Result<(CounterKey, i64), ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let parsed = platform::extract::json_body(
            &headers,
            Ok(Bytes::copy_from_slice(body)),
            body_limit(MAX_KEY_BYTES),
            IncrementBody::EXAMPLE,
        )
        .map_err(ApiError::Body)?;
        increment_request(parsed, MAX_KEY_BYTES)
    }

    fn status(error: ApiError) -> StatusCode {
        error.into_response().status()
    }

    /// The increment a JSON value asks for, if it is one (an object, or
    /// serde's array form `[key, value]`).
    fn expected(value: &Value) -> Option<(String, i64)> {
        let (key, delta) = match value {
            Value::Object(object) => (object.get("key")?, object.get("value")?),
            Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
            _ => return None,
        };
        let key = key.as_str()?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return None;
        }
        Some((key.to_owned(), delta.as_i64()?))
    }

    #[test]
    fn a_body_with_trailing_data_or_bytes_that_are_not_utf8_is_refused() {
        for body in [
            &br#"{"key": "k", "value": 1} x"#[..],
            br#"{"key": "k", "value": 1}{"key": "k", "value": 1}"#,
            b"{\"key\": \"k\", \"value\": 1, \"note\": \"\xff\"}",
        ] {
            let error = read(body).expect_err("not one JSON text");
            assert_eq!(status(error), StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            read(br#"{"key": "k", "value": -2}"#).expect("an increment"),
            (
                CounterKey::parse("k".into(), MAX_KEY_BYTES).expect("key"),
                -2
            )
        );
    }

    fn increment_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "key",
                fuzz::plausible(
                    prop_oneof![fuzz::text(6), fuzz::text(24)]
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
            ("value", fuzz::plausible(fuzz::json_number().boxed())),
        ])
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any body: never a panic; bytes that are not one JSON text are
        /// refused with 400 (or 422 when a field is wrong before the text
        /// goes bad); a JSON text is an increment exactly when it has a key
        /// of 1..=max bytes and an int64 value, else 422.
        #[test]
        fn fuzz_increment_body(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(increment_object()),
            ]),
        ) {
            let answer = read(&body);
            match fuzz::json(&body) {
                None if fuzz::is_json(&body) => {
                    // A JSON text with a number beyond f64's range: held to
                    // nothing but not panicking.
                }
                None => {
                    let status = status(answer.expect_err("not one JSON text"));
                    prop_assert!(
                        status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
                        "{}", status
                    );
                }
                Some(value) => match (expected(&value), answer) {
                    (Some((key, delta)), Ok((read_key, read_delta))) => {
                        prop_assert_eq!(read_key.as_str(), key.as_str());
                        prop_assert_eq!(read_delta, delta);
                    }
                    (None, Err(error)) => {
                        let status = status(error);
                        prop_assert!(
                            status == StatusCode::UNPROCESSABLE_ENTITY
                                || (value.is_array() && status == StatusCode::BAD_REQUEST),
                            "{} gave {}", value, status
                        );
                    }
                    (expected, answer) => {
                        prop_assert!(false, "{} gave {:?}, expected {:?}", value, answer, expected);
                    }
                },
            }
        }
    }
}
