//! REST routes of the messages service, and the one place where its errors
//! become HTTP statuses ([`ApiError`]'s `IntoResponse`).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use platform::ErrorResponse;
use platform::error::ErrorBody;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::api::hot::{Answer, HotMessages};
use crate::config::MessagesConfig;
use crate::domain::{
    Cursor, Digest, DomainError, IntegrityError, Message, PageLimit, VerifiedMessage,
};
use crate::metrics::{CORRUPT_RECORDS, POSTED, STORE_DURATION};
use crate::ports::{MessageStore, PutOutcome, StoreError};
use metrics::{Counter, Histogram};
use platform::trace::{store_span, traced};

#[derive(Clone)]
struct AppState {
    store: Arc<dyn MessageStore>,
    max_message_bytes: usize,
    hot: Arc<HotMessages>,
    metrics: Arc<RouteMetrics>,
}

/// The handles of the metrics every request records, resolved once when the
/// router is built rather than by label lookup on each request.
struct RouteMetrics {
    put: Histogram,
    get: Histogram,
    page: Histogram,
    created: Counter,
    already_stored: Counter,
}

impl RouteMetrics {
    fn new() -> Self {
        Self {
            put: metrics::histogram!(STORE_DURATION, "op" => "put"),
            get: metrics::histogram!(STORE_DURATION, "op" => "get"),
            page: metrics::histogram!(STORE_DURATION, "op" => "page"),
            created: metrics::counter!(POSTED, "outcome" => "created"),
            already_stored: metrics::counter!(POSTED, "outcome" => "already_stored"),
        }
    }
}

/// The media type of a JSON answer, as axum's `Json` sets it.
const JSON_MEDIA_TYPE: &str = "application/json";

/// Digests never change what they name, so answers may be cached forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The routes, with their state applied.
pub fn router(store: Arc<dyn MessageStore>, config: &MessagesConfig) -> Router {
    Router::new()
        .route("/messages", post(create).get(list))
        .route("/messages/{digest}", get(fetch))
        .route("/message/{digest}", get(fetch_seed))
        .route("/all-messages", get(list_seed))
        .layer(DefaultBodyLimit::max(body_limit(config.max_message_bytes)))
        .with_state(AppState {
            store,
            max_message_bytes: config.max_message_bytes,
            hot: Arc::new(HotMessages::new(config.message_cache_bytes)),
            metrics: Arc::new(RouteMetrics::new()),
        })
}

#[derive(OpenApi)]
#[openapi(
    paths(create, fetch, fetch_seed, list, list_seed),
    components(schemas(NewMessage, PlainText, Created, MessageBody, PageBody, ErrorBody)),
    tags((name = "messages", description = "Content-addressed message store"))
)]
struct MessagesApi;

/// The `OpenAPI` document of the routes [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    MessagesApi::openapi()
}

/// Everything a messages route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A digest, message, cursor or limit the domain refused (400, or 413
    /// and 422 for a message too large or empty).
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// No message is stored under the digest (404).
    #[error("message not found")]
    NotFound,
    /// A `text/plain` body that is not UTF-8 (400).
    #[error("{0}")]
    BadBody(String),
    /// A `Content-Type` that is neither JSON nor `text/plain` (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body could not be read (too large, cut short) or, as JSON, is
    /// not one UTF-8 JSON text (400) or not of the shape asked for (422):
    /// the answer is ready.
    #[error("{}", .0.message)]
    Body(ErrorResponse),
    /// The store failed (503 when unavailable, 500 when corrupt).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored message that does not hash to its digest (500).
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(DomainError::EmptyMessage) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Invalid(DomainError::MessageTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) | ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Body(e) => e.status,
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Corrupt(_)) | ApiError::Integrity(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        match &self {
            ApiError::Integrity(e) => {
                metrics::counter!(CORRUPT_RECORDS).increment(1);
                tracing::error!(digest = %e.digest, "stored message failed its integrity check; refusing to serve it");
                return ErrorResponse::new(
                    status,
                    format!(
                        "stored message {} failed its integrity check (its bytes do not hash to \
                         its digest) and is not served; {}",
                        e.digest,
                        platform::integrity::VERIFY_HINT
                    ),
                )
                .into_response();
            }
            ApiError::Store(error @ StoreError::Unavailable(_)) => {
                // The chain is logged with the request id by the observe
                // layer, never sent.
                return ErrorResponse::hidden(
                    status,
                    "messages store unavailable; retry later",
                    platform::backend::chain(error),
                )
                .into_response();
            }
            ApiError::Store(e) => tracing::error!(error = %e, "messages store error"),
            _ => {}
        }
        // A 503 gets its Retry-After from ErrorResponse.
        ErrorResponse::new(status, self.to_string()).into_response()
    }
}

/// The JSON form of a new message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMessage {
    /// The text to store (UTF-8, non-empty, at most --max-message-bytes bytes).
    #[schema(min_length = 1)]
    pub message: String,
}

/// A message sent as the whole `text/plain` body (UTF-8, non-empty): in the
/// document only (the handler reads the body's bytes).
pub struct PlainText;

impl utoipa::PartialSchema for PlainText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .description(Some("The message text (UTF-8, non-empty)"))
            .into()
    }
}

impl ToSchema for PlainText {
    fn name() -> std::borrow::Cow<'static, str> {
        "PlainText".into()
    }
}

/// The answer to a stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// SHA-256 of the message's UTF-8 bytes, 64 lowercase hex characters.
    #[schema(example = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")]
    pub digest: String,
}

/// A stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageBody {
    /// SHA-256 of the message's UTF-8 bytes, 64 lowercase hex characters.
    pub digest: String,
    /// The message's text.
    pub message: String,
    /// When it was first stored (RFC 3339, UTC).
    pub created_at: String,
}

/// One page of messages, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PageBody {
    /// The messages of this page, oldest first.
    pub items: Vec<MessageBody>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next: Option<String>,
    /// Digests in this page's range whose stored record failed its integrity
    /// check: left out of `items` (run `quintet verify`). Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Messages per page, 1..=1000 (default 100). A page also ends early after 4 MiB of message text.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next` value of the previous page.
    #[param(pattern = "^(s[0-9]{1,19})?$")]
    cursor: Option<String>,
}

fn observe(histogram: &Histogram, started: Instant) {
    histogram.record(started.elapsed().as_secs_f64());
}

/// Store a message and get its digest.
#[utoipa::path(
    post,
    path = "/messages",
    tag = "messages",
    request_body(
        description = "`{\"message\": \"<text>\"}` as JSON, or the text itself as `text/plain`",
        content(
            (NewMessage = "application/json"),
            (PlainText = "text/plain")
        )
    ),
    responses(
        (status = 201, description = "Stored; `Location` names it", body = Created),
        (status = 200, description = "Already stored: nothing new was written, same digest", body = Created),
        (status = 400, description = "Body is not valid JSON (or not UTF-8)", body = ErrorBody),
        (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
        (status = 413, description = "Message over --max-message-bytes", body = ErrorBody),
        (status = 415, description = "Content-Type is neither application/json nor text/plain", body = ErrorBody),
        (status = 422, description = "`message` missing, not a string, or empty", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded; see Retry-After", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody)
    )
)]
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let message = new_message(&headers, body, state.max_message_bytes)?;
    let started = Instant::now();
    let outcome = traced(
        store_span(state.store.engine(), "put"),
        state.store.put(&message, now_ms()),
    )
    .await?;
    observe(&state.metrics.put, started);
    let digest = message.digest().to_string();
    match outcome {
        PutOutcome::Created => state.metrics.created.increment(1),
        PutOutcome::AlreadyStored => state.metrics.already_stored.increment(1),
    }
    let mut response = match outcome {
        PutOutcome::Created => (
            StatusCode::CREATED,
            Json(Created {
                digest: digest.clone(),
            }),
        )
            .into_response(),
        PutOutcome::AlreadyStored => (
            StatusCode::OK,
            Json(Created {
                digest: digest.clone(),
            }),
        )
            .into_response(),
    };
    if let Ok(location) = HeaderValue::from_str(&format!("/messages/{digest}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Reads a new message from a request body: `{"message": "<text>"}` as
/// one UTF-8 JSON text, or the text itself as `text/plain`; then checked
/// against `max_bytes` (415, 413, 400 or 422 naming what was wrong).
pub fn new_message(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_bytes: usize,
) -> Result<Message, ApiError> {
    let kind = content_kind(headers)?;
    let limit = body_limit(max_bytes);
    let text = match kind {
        ContentKind::Json => {
            platform::extract::read_json::<NewMessage>(body, limit)
                .map_err(ApiError::Body)?
                .message
        }
        ContentKind::Text => String::from_utf8(
            body.map_err(|r| ApiError::Body(ErrorResponse::from_body_rejection(r, limit)))?
                .to_vec(),
        )
        .map_err(|e| ApiError::BadBody(format!("text/plain body is not valid UTF-8: {e}")))?,
    };
    Ok(Message::new(text, max_bytes)?)
}

/// Largest `POST /messages` body: a JSON body may spell each byte of the
/// text as up to 6 (`\u0000`), plus the envelope.
fn body_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(6).saturating_add(4096)
}

enum ContentKind {
    Json,
    Text,
}

fn content_kind(headers: &HeaderMap) -> Result<ContentKind, ApiError> {
    let Some(essence) = platform::error::media_type(headers) else {
        return Err(ApiError::UnsupportedMediaType(
            "missing Content-Type: send application/json {\"message\": \"...\"} or text/plain"
                .into(),
        ));
    };
    match essence.as_str() {
        "application/json" => Ok(ContentKind::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(ContentKind::Json),
        "text/plain" => Ok(ContentKind::Text),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Type '{}': send application/json {{\"message\": \"...\"}} or text/plain",
            other.chars().take(100).collect::<String>()
        ))),
    }
}

fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

impl From<VerifiedMessage> for MessageBody {
    fn from(m: VerifiedMessage) -> Self {
        Self {
            digest: m.digest.to_string(),
            message: m.text,
            created_at: rfc3339(m.created_at_ms),
        }
    }
}

/// Get a message by its digest (any case). `ETag` is the digest; `If-None-Match` gives 304.
#[utoipa::path(
    get,
    path = "/messages/{digest}",
    tag = "messages",
    params(("digest" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "SHA-256 digest, 64 hex characters (either case)")),
    responses(
        (status = 200, description = "The message", body = MessageBody,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Matches If-None-Match"),
        (status = 400, description = "Not 64 hex characters", body = ErrorBody),
        (status = 404, description = "No message has this digest", body = ErrorBody),
        (status = 500, description = "Stored bytes failed the integrity check", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody)
    )
)]
async fn fetch(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest)?;
    let answer = if let Some(answer) = state.hot.get(&digest) {
        answer
    } else {
        let started = Instant::now();
        let stored = traced(
            store_span(state.store.engine(), "get"),
            state.store.get(&digest),
        )
        .await?;
        observe(&state.metrics.get, started);
        let message = stored.ok_or(ApiError::NotFound)?.verify()?;
        let body = serde_json::to_vec(&MessageBody::from(message)).map_err(|e| {
            ApiError::Body(ErrorResponse::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not encode the message: {e}"),
            ))
        })?;
        let answer = Answer::new(&digest, body);
        state.hot.insert(digest, answer.clone());
        answer
    };
    let cache_headers = [
        (header::ETAG, answer.etag),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
    ];
    if if_none_match(&headers, &digest) {
        return Ok((StatusCode::NOT_MODIFIED, cache_headers).into_response());
    }
    Ok((
        cache_headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_MEDIA_TYPE),
        )],
        answer.body,
    )
        .into_response())
}

/// The seed's path for [`fetch`]: `GET /message/{sha}`.
#[utoipa::path(
    get,
    path = "/message/{digest}",
    tag = "messages",
    params(("digest" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "SHA-256 digest, 64 hex characters (either case)")),
    responses(
        (status = 200, description = "Same as GET /messages/{digest}", body = MessageBody,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Matches If-None-Match"),
        (status = 400, description = "Not 64 hex characters", body = ErrorBody),
        (status = 404, description = "No message has this digest", body = ErrorBody),
        (status = 500, description = "Stored bytes failed the integrity check", body = ErrorBody)
    )
)]
async fn fetch_seed(
    state: State<AppState>,
    digest: Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    fetch(state, digest, headers).await
}

/// True when `If-None-Match` names this digest (quoted, weak or bare) or is `*`.
fn if_none_match(headers: &HeaderMap, digest: &Digest) -> bool {
    let mut values = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if values.peek().is_none() {
        return false;
    }
    let wanted = digest.to_string();
    values.filter_map(|v| v.to_str().ok()).any(|value| {
        value.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
            tag == "*" || tag.eq_ignore_ascii_case(&wanted)
        })
    })
}

/// Page through messages, oldest first.
#[utoipa::path(
    get,
    path = "/messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "A page; follow `next` for more. Messages that fail their integrity check are left out and named in `corrupt`", body = PageBody),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 503, description = "Store unavailable; retry", body = ErrorBody)
    )
)]
async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadBody(e.body_text()))?;
    let limit = PageLimit::parse(params.limit.as_deref()).map_err(DomainError::from)?;
    let after = params
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::parse)
        .transpose()?;
    let started = Instant::now();
    let page = traced(
        store_span(state.store.engine(), "page"),
        state.store.page(after, limit),
    )
    .await?;
    observe(&state.metrics.page, started);
    // A corrupt message is left out and named: one bad record must not fail
    // every page that covers it.
    let mut corrupt = page.corrupt;
    let mut items = Vec::with_capacity(page.items.len());
    for stored in page.items {
        match stored.verify() {
            Ok(message) => items.push(MessageBody::from(message)),
            Err(e) => {
                tracing::error!(digest = %e.digest, "skipped a message that failed its integrity check in a listing");
                corrupt.push(e.digest.to_string());
            }
        }
    }
    if !corrupt.is_empty() {
        metrics::counter!(CORRUPT_RECORDS).increment(corrupt.len() as u64);
    }
    Ok(Json(PageBody {
        items,
        next: page.next.map(|c| c.to_string()),
        corrupt,
    }))
}

/// The seed's path for [`list`]: `GET /all-messages`.
#[utoipa::path(
    get,
    path = "/all-messages",
    tag = "messages",
    params(ListParams),
    responses(
        (status = 200, description = "Same as GET /messages", body = PageBody),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody)
    )
)]
async fn list_seed(
    state: State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<PageBody>, ApiError> {
    list(state, params).await
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use super::*;

    const MAX_BYTES: usize = 24;

    fn read(content_type: &'static str, body: &[u8]) -> Result<Message, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        new_message(&headers, Ok(Bytes::copy_from_slice(body)), MAX_BYTES)
    }

    fn status(error: ApiError) -> StatusCode {
        error.into_response().status()
    }

    /// The text a JSON value is a new message of, valid or not (an object,
    /// or serde's array form `[text]`).
    fn text_of(value: &Value) -> Option<&str> {
        match value {
            Value::Object(object) => object.get("message")?.as_str(),
            Value::Array(items) if items.len() == 1 => items[0].as_str(),
            _ => None,
        }
    }

    #[test]
    fn a_json_body_with_trailing_data_or_bytes_that_are_not_utf8_is_refused() {
        for body in [
            &br#"{"message": "hi"} x"#[..],
            b"{\"message\": \"hi\", \"note\": \"\xff\"}",
        ] {
            let error = read("application/json", body).expect_err("not one JSON text");
            assert_eq!(status(error), StatusCode::BAD_REQUEST);
        }
        let message = read("application/json", br#"{"message": "hi"}"#).expect("a message");
        assert_eq!(message.text(), "hi");
    }

    fn message_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![(
            "message",
            fuzz::plausible(
                prop_oneof![fuzz::text(8), fuzz::text(40)]
                    .prop_map(Value::from)
                    .boxed(),
            ),
        )])
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any JSON body: never a panic; bytes that are not one JSON text
        /// are refused (400, or 422 when a field is wrong before the text
        /// goes bad); a JSON text is a message exactly when its `message`
        /// is a string of 1..=max bytes: 413 over it, 422 otherwise.
        #[test]
        fn fuzz_new_message_json(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(message_object()),
            ]),
        ) {
            let answer = read("application/json", &body);
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
                Some(value) => match (text_of(&value), answer) {
                    (Some(text), Ok(message)) => {
                        prop_assert!(!text.is_empty() && text.len() <= MAX_BYTES);
                        prop_assert_eq!(message.text(), text);
                        prop_assert_eq!(message.digest(), Digest::of(text.as_bytes()));
                    }
                    (Some(text), Err(error)) => {
                        let expected = if text.is_empty() {
                            StatusCode::UNPROCESSABLE_ENTITY
                        } else {
                            prop_assert!(text.len() > MAX_BYTES, "{:?} refused: {}", text, error);
                            StatusCode::PAYLOAD_TOO_LARGE
                        };
                        prop_assert_eq!(status(error), expected);
                    }
                    (None, Err(error)) => {
                        let status = status(error);
                        prop_assert!(
                            status == StatusCode::UNPROCESSABLE_ENTITY
                                || (value.is_array() && status == StatusCode::BAD_REQUEST),
                            "{} gave {}", value, status
                        );
                    }
                    (None, Ok(message)) => {
                        prop_assert!(false, "{} gave {:?}", value, message);
                    }
                },
            }
        }

        /// Any text/plain body: a message exactly when it is UTF-8 of
        /// 1..=max bytes.
        #[test]
        fn fuzz_new_message_text(body in prop_oneof![
            fuzz::bytes(40),
            fuzz::text(30).prop_map(String::into_bytes),
        ]) {
            let answer = read("text/plain", &body);
            match std::str::from_utf8(&body) {
                Ok(text) if !text.is_empty() && text.len() <= MAX_BYTES => {
                    let message = answer.expect("a message");
                    prop_assert_eq!(message.text(), text);
                }
                _ => prop_assert!(answer.is_err()),
            }
        }

        /// Any path segment as a digest: never a panic; a digest exactly
        /// when it is 64 hex digits, printed back in lowercase.
        #[test]
        fn fuzz_digest_parse(text in prop_oneof![
            fuzz::text(70),
            "[0-9a-fA-F]{62,66}",
            "[0-9a-fA-F]{60}[\\PC]{1,4}",
        ]) {
            let hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
            match Digest::parse(&text) {
                Ok(digest) => {
                    prop_assert!(hex, "{:?} accepted", text);
                    prop_assert_eq!(digest.to_string(), text.to_ascii_lowercase());
                }
                Err(_) => prop_assert!(!hex, "{:?} refused", text),
            }
        }

        /// Any cursor text: never a panic; one that is accepted names the
        /// position it reads back as.
        #[test]
        fn fuzz_cursor_parse(text in prop_oneof![fuzz::text(24), "s[+-]?[0-9]{0,22}"]) {
            if let Ok(cursor) = crate::domain::Cursor::parse(&text) {
                prop_assert!(text.starts_with('s'));
                prop_assert_eq!(crate::domain::Cursor::parse(&cursor.to_string()), Ok(cursor));
            }
        }
    }

    #[test]
    fn if_none_match_accepts_quoted_weak_bare_and_star() {
        let digest = Digest::of(b"x");
        for value in [
            format!("\"{digest}\""),
            format!("W/\"{digest}\""),
            digest.to_string(),
            "*".into(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(&value).expect("header"),
            );
            assert!(if_none_match(&headers, &digest), "{value}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!if_none_match(&headers, &digest));
    }
}
