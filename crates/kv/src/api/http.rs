//! REST routes of the kv service, the seed's REST twin, and the one place
//! where kv errors become HTTP statuses ([`ApiError`]'s `IntoResponse`).

use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use http::{StatusCode, header};
use platform::ErrorResponse;
use platform::error::ErrorBody;
use platform::extract::{JsonBody, JsonExample};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{KeyPrefix, KvKey, PageLimit, RecordFormat};
use crate::engine::vault::{KvError, RotateReport, Vault};

/// kv's REST routes (`/kv/…`, the seed's twin `/api/…`, `/admin/kv/rotate`).
pub fn router(vault: Arc<Vault>) -> Router {
    let body_limit = body_limit(vault.max_value_bytes());
    let router = Router::new()
        .route("/kv", get(list))
        .route("/kv/{*key}", put(set).get(fetch).delete(remove))
        .route("/api/save", post(seed_save))
        .route("/api/get/{*key}", get(seed_get))
        .route("/admin/kv/rotate", post(rotate));
    platform::extract::limit_bodies(router, body_limit).with_state(vault)
}

/// Largest request body: bodies may exceed the value limit a little (JSON
/// escaping in the seed twin); the vault refuses values over it with a 413
/// that names the limit.
fn body_limit(max_value_bytes: usize) -> usize {
    max_value_bytes.saturating_mul(2).saturating_add(64 * 1024)
}

#[derive(OpenApi)]
#[openapi(
    paths(set, fetch, remove, list, seed_save, seed_get, rotate),
    components(schemas(SeedPair, PageBody, EntryBody, RotateReport, ErrorBody)),
    tags((name = "kv", description = "Envelope-encrypted key-value store"))
)]
struct KvApi;

/// kv's `OpenAPI` document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    KvApi::openapi()
}

/// Everything a kv route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (a key, a query parameter, a body).
    #[error("{0}")]
    BadRequest(String),
    /// The body could not be read (too large, wrong media type).
    #[error("{}", .0.message)]
    Body(ErrorResponse),
    /// The vault refused or failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

/// What a caller is told when the store or the key provider fails; the
/// cause is logged with the request id.
pub const UNAVAILABLE: &str = "kv store or key provider unavailable; retry later";

/// The HTTP status of each kv error: every failure behind the service
/// (store, key provider, its rate limit, sealing) is a 503 with
/// `Retry-After`, whatever its kind.
pub fn status(error: &KvError) -> StatusCode {
    match error {
        KvError::InvalidKey(_) => StatusCode::BAD_REQUEST,
        KvError::SeedLayoutUnsupported => StatusCode::CONFLICT,
        KvError::NotFound(_) => StatusCode::NOT_FOUND,
        KvError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        KvError::Store(_) | KvError::Provider(_) | KvError::Seal(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        KvError::Integrity { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Body(e) => e.status,
            ApiError::Kv(e) => status(e),
        };
        if let ApiError::Kv(error) = &self
            && error.is_unavailable()
        {
            // Logged with the request id by the observe layer, never sent.
            let detail = platform::backend::chain(error);
            return ErrorResponse::hidden(status, UNAVAILABLE, detail).into_response();
        }
        if let ApiError::Kv(KvError::Integrity { key, reason }) = &self {
            metrics::counter!(crate::metrics::CORRUPT_RECORDS).increment(1);
            tracing::error!(
                key,
                %reason,
                "refused to serve a kv record that failed its check"
            );
            return ErrorResponse::new(
                status,
                format!("{self}; {}", platform::integrity::VERIFY_HINT),
            )
            .into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "kv request failed");
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            tracing::warn!(error = %self, "kv request refused");
        }
        ErrorResponse::new(status, self.to_string()).into_response()
    }
}

fn key(raw: String) -> Result<KvKey, ApiError> {
    KvKey::new(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| ApiError::Body(ErrorResponse::from_body_rejection(r, limit)))
}

/// Stores the request body (raw bytes) under the key, replacing any value.
#[utoipa::path(put, path = "/kv/{key}", tag = "kv",
    params(("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\x00]*$", description = "1..=1024 bytes of UTF-8 without NUL (a key of up to 1,024 characters that is over 1,024 bytes is refused with 400)")),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "The value, raw bytes; an empty or absent body stores an empty value (as `/api/save` and gRPC Set do)"),
    responses((status = 204, description = "Stored"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn set(
    State(vault): State<Arc<Vault>>,
    Path(raw): Path<String>,
    value: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let key = key(raw)?;
    let value = body(value, vault.max_value_bytes())?;
    vault.set(&key, &value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The value stored under the key, as raw bytes.
#[utoipa::path(get, path = "/kv/{key}", tag = "kv",
    params(("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\x00]*$", description = "1..=1024 bytes of UTF-8 without NUL (a key of up to 1,024 characters that is over 1,024 bytes is refused with 400)")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody, description = "The key is over 1,024 bytes"),
        (status = 404, body = ErrorBody), (status = 500, body = ErrorBody, description = "The record failed authentication"),
        (status = 503, body = ErrorBody)))]
async fn fetch(
    State(vault): State<Arc<Vault>>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let value = vault.get(&key(raw)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
}

/// Removes the key.
#[utoipa::path(delete, path = "/kv/{key}", tag = "kv",
    params(("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\x00]*$", description = "1..=1024 bytes of UTF-8 without NUL (a key of up to 1,024 characters that is over 1,024 bytes is refused with 400)")),
    responses((status = 204, description = "Removed"), (status = 400, body = ErrorBody, description = "The key is over 1,024 bytes"),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove(
    State(vault): State<Arc<Vault>>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    vault.delete(&key(raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only keys starting with this (at most 1,024 bytes).
    #[param(max_length = 1024)]
    prefix: Option<String>,
    /// `next_cursor` of the previous page (a key: no NUL byte).
    #[param(max_length = 1024, pattern = r"^[^\x00]*$")]
    cursor: Option<String>,
    /// Keys per page, 1..=1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A listed key and its value's plaintext size in bytes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryBody {
    /// The key.
    pub key: String,
    /// Its value's plaintext size in bytes.
    pub size: u64,
}

/// One page of keys; `next_cursor` is null on the last page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageBody {
    /// The keys of this page.
    pub items: Vec<EntryBody>,
    /// The cursor for the next page (the last key of this one), null on the last page.
    pub next_cursor: Option<String>,
    /// Keys in this page's range whose stored record cannot be read: left out
    /// of `items` (run `quintet verify`). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<String>,
}

/// Keys starting with `prefix`, one page at a time (values are not returned).
#[utoipa::path(get, path = "/kv", tag = "kv", params(ListQuery),
    responses((status = 200, body = PageBody), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list(
    State(vault): State<Arc<Vault>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let prefix = KeyPrefix::new(query.prefix.unwrap_or_default())
        .map_err(|e| ApiError::BadRequest(format!("prefix: {e}")))?;
    let after = match query.cursor.filter(|c| !c.is_empty()) {
        Some(cursor) => {
            Some(KvKey::new(cursor).map_err(|e| ApiError::BadRequest(format!("cursor: {e}")))?)
        }
        None => None,
    };
    let limit = PageLimit::parse(query.limit.as_deref())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let page = vault.list(&prefix, after.as_ref(), limit).await?;
    if !page.corrupt.is_empty() {
        metrics::counter!(crate::metrics::CORRUPT_RECORDS)
            .increment(u64::try_from(page.corrupt.len()).unwrap_or(u64::MAX));
    }
    Ok(Json(PageBody {
        items: page
            .entries
            .into_iter()
            .map(|e| EntryBody {
                key: e.key.into_string(),
                size: e.size,
            })
            .collect(),
        next_cursor: page.next.map(KvKey::into_string),
        corrupt: page.corrupt,
    }))
}

/// The seed's REST twin: a key and a text value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeedPair {
    /// 1..=1024 bytes of UTF-8 without NUL.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\x00]*$")]
    pub key: String,
    /// Any text, the empty one too.
    pub value: String,
}

impl JsonExample for SeedPair {
    const EXAMPLE: &'static str = r#"{"key": "...", "value": "..."}"#;
}

/// The seed's `POST /api/save`: stores a text value; answers it back with 201.
#[utoipa::path(post, path = "/api/save", tag = "kv", request_body = SeedPair,
    responses((status = 201, body = SeedPair), (status = 400, body = ErrorBody, description = "Not the JSON object asked for, or the key is over 1,024 bytes"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody, description = "Content-Type is not application/json"),
        (status = 503, body = ErrorBody)))]
async fn seed_save(
    State(vault): State<Arc<Vault>>,
    body: Result<JsonBody<SeedPair>, ErrorResponse>,
) -> Result<(StatusCode, Json<SeedPair>), ApiError> {
    let (key, pair) = seed_pair(body.map(|JsonBody(pair)| pair))?;
    vault.set(&key, pair.value.as_bytes()).await?;
    Ok((StatusCode::CREATED, Json(pair)))
}

/// The seed twin's `{"key", "value"}` body, read as every JSON body is
/// ([`JsonBody`]: one UTF-8 JSON text), with its key checked: 415 for
/// another media type, 413 over the limit, 400 for anything else (the
/// seed's status for a body it cannot use).
pub fn seed_pair(body: Result<SeedPair, ErrorResponse>) -> Result<(KvKey, SeedPair), ApiError> {
    let pair = body.map_err(|e| match e.status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::Body(e),
        _ => ApiError::BadRequest(format!(
            "expected {{\"key\": string, \"value\": string}}: {}",
            e.message
        )),
    })?;
    Ok((key(pair.key.clone())?, pair))
}

/// The seed's `GET /api/get/{key}`: 200 `{"key","value"}` or 404 `{"error":"not_found"}`.
#[utoipa::path(get, path = "/api/get/{key}", tag = "kv",
    params(("key" = String, Path, min_length = 1, max_length = 1024, pattern = r"^[^\x00]*$", description = "1..=1024 bytes of UTF-8 without NUL")),
    responses((status = 200, body = SeedPair), (status = 400, body = ErrorBody, description = "The key is over 1,024 bytes"),
        (status = 404, body = ErrorBody, description = "{\"error\":\"not_found\"}"),
        (status = 500, body = ErrorBody, description = "The record failed authentication"),
        (status = 422, body = ErrorBody, description = "The value is not UTF-8 text; use GET /kv/{key}")))]
async fn seed_get(
    State(vault): State<Arc<Vault>>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let key = key(raw)?;
    match vault.get(&key).await {
        Ok(value) => match String::from_utf8(value) {
            Ok(value) => Ok(Json(SeedPair {
                key: key.into_string(),
                value,
            })
            .into_response()),
            Err(_) => Ok(ErrorResponse::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the value is not UTF-8 text; read it with GET /kv/{key}",
            )
            .into_response()),
        },
        Err(KvError::NotFound(_)) => {
            Ok(ErrorResponse::new(StatusCode::NOT_FOUND, "not_found").into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// What `POST /admin/kv/rotate` may be asked.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RotateQuery {
    /// Re-encrypt every record not already in this layout into it: `quintet`
    /// (namespace and key bound as associated data) or `seed` (the original
    /// services' `DynamoDB` layout; `DynamoDB` store only). Without it each
    /// record keeps its layout.
    #[param(pattern = "^(quintet|seed)$")]
    convert: Option<String>,
}

/// Re-wraps every stored data key under the key provider's current key
/// (the local provider with a key directory makes a new master key first).
/// Each record keeps its layout unless `convert` names one; the report
/// says how many were converted.
#[utoipa::path(post, path = "/admin/kv/rotate", tag = "kv", params(RotateQuery),
    responses((status = 200, body = RotateReport), (status = 400, body = ErrorBody, description = "convert names no layout"),
        (status = 409, body = ErrorBody, description = "convert=seed, and this server's store keeps quintet's layout only"),
        (status = 500, body = ErrorBody, description = "A record failed authentication"),
        (status = 503, body = ErrorBody)))]
async fn rotate(
    State(vault): State<Arc<Vault>>,
    query: Result<Query<RotateQuery>, QueryRejection>,
) -> Result<Json<RotateReport>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let convert = match query.convert.as_deref() {
        None => None,
        Some(name) => Some(parse_format(name).map_err(|e| ApiError::BadRequest(e.to_string()))?),
    };
    Ok(Json(vault.rotate(convert).await?))
}

/// A layout name that is neither `quintet` nor `seed` (its first 40 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("convert must be quintet or seed, not '{0}'")]
pub struct UnknownFormat(pub String);

/// A layout by name (`quintet` or `seed`), as `convert` and `--kv-write-format` spell it.
pub fn parse_format(name: &str) -> Result<RecordFormat, UnknownFormat> {
    match name {
        "quintet" => Ok(RecordFormat::V1),
        "seed" => Ok(RecordFormat::SeedLegacy),
        other => Err(UnknownFormat(other.chars().take(40).collect())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use super::*;
    use crate::ports::{BackendError, FailureKind};

    #[tokio::test]
    async fn backend_failures_of_every_kind_are_503_with_retry_after_and_no_driver_text() {
        for kind in [
            FailureKind::Throttled,
            FailureKind::Timeout,
            FailureKind::Unreachable,
            FailureKind::Rejected,
        ] {
            let driver = std::io::Error::other("driver secret text");
            let error = KvError::Provider(BackendError::new("aws-kms", "Decrypt", kind, driver));
            assert_eq!(
                super::super::grpc::status(&error).code(),
                tonic::Code::Unavailable
            );
            let response = ApiError::Kv(error).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{kind}");
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains(UNAVAILABLE), "{body}");
            assert!(!body.contains("driver secret text"), "{body}");
            let store = KvError::Store(BackendError::bare("redb", "get", kind));
            assert_eq!(super::status(&store), StatusCode::SERVICE_UNAVAILABLE);
        }
        let integrity = KvError::Integrity {
            key: "k".into(),
            reason: crate::engine::vault::IntegrityFailure::Refused(
                crate::ports::Refusal::Authentication,
            ),
        };
        assert_eq!(super::status(&integrity), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            super::super::grpc::status(&integrity).code(),
            tonic::Code::DataLoss
        );
    }

    fn read(body: &[u8]) -> Result<(KvKey, SeedPair), ApiError> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        seed_pair(platform::extract::json_body(
            &headers,
            Ok(Bytes::copy_from_slice(body)),
            1 << 20,
            SeedPair::EXAMPLE,
        ))
    }

    fn status(error: ApiError) -> StatusCode {
        error.into_response().status()
    }

    /// The pair a JSON value is, if it is one (an object, or serde's array
    /// form `[key, value]`) with a valid key.
    fn expected(value: &Value) -> Option<(String, String)> {
        let (key, text) = match value {
            Value::Object(object) => (object.get("key")?, object.get("value")?),
            Value::Array(items) if items.len() == 2 => (&items[0], &items[1]),
            _ => return None,
        };
        let key = KvKey::new(key.as_str()?).ok()?;
        Some((key.into_string(), text.as_str()?.to_owned()))
    }

    #[test]
    fn a_seed_pair_with_trailing_data_or_bytes_that_are_not_utf8_is_refused() {
        for body in [
            &br#"{"key": "k", "value": "v"} x"#[..],
            b"{\"key\": \"k\", \"value\": \"v\", \"note\": \"\xff\"}",
        ] {
            assert_eq!(
                status(read(body).expect_err("not one JSON text")),
                StatusCode::BAD_REQUEST
            );
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let refused = seed_pair(platform::extract::json_body(
            &headers,
            Ok(Bytes::from_static(b"{}")),
            1 << 20,
            SeedPair::EXAMPLE,
        ));
        assert_eq!(
            status(refused.expect_err("not JSON")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    fn pair_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "key",
                fuzz::plausible(
                    prop_oneof![
                        fuzz::text(12).prop_map(Value::from),
                        Just(Value::from("k".repeat(crate::domain::MAX_KEY_BYTES + 1))),
                    ]
                    .boxed(),
                ),
            ),
            (
                "value",
                fuzz::plausible(fuzz::text(40).prop_map(Value::from).boxed()),
            ),
        ])
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any body to the seed twin's save: never a panic; bytes that are
        /// not one JSON text are a 400; a JSON text is a pair exactly when
        /// it holds a string key of 1..=1024 bytes and a string value.
        #[test]
        fn fuzz_seed_pair_body(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(pair_object()),
            ]),
        ) {
            let answer = read(&body);
            match fuzz::json(&body) {
                None if fuzz::is_json(&body) => {}
                None => prop_assert_eq!(status(answer.expect_err("not one JSON text")), StatusCode::BAD_REQUEST),
                Some(value) => match (expected(&value), answer) {
                    (Some((key, text)), Ok((read_key, pair))) => {
                        prop_assert_eq!(read_key.as_str(), key.as_str());
                        prop_assert_eq!(pair.value, text);
                    }
                    (None, Err(error)) => prop_assert_eq!(status(error), StatusCode::BAD_REQUEST),
                    (expected, answer) => {
                        prop_assert!(false, "{} gave {:?}, expected {:?}", value, answer, expected);
                    }
                },
            }
        }
    }
}
