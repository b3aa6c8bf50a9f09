//! REST routes of the receipts service — a way in and out of the queues for
//! users of the embedded queue (and a convenience with SQS) — and the one
//! place where its errors become HTTP statuses.
//!
//! - `POST /receipts/jobs` — a job (`{"receipt","user_id","post_queue"}`;
//!   other fields are accepted and ignored, as the worker ignores them),
//!   checked, then sent to the input queue as it came; its `post_queue` is
//!   created if the queue engine creates queues (embedded). 202 `{"message_id"}`.
//! - `POST /queues/{name}/messages` — any body, sent as is (to test what
//!   the worker does with it). 202 `{"message_id"}`; 404 for an unknown queue.
//! - `POST /queues/{name}/receive?max=&wait_ms=&visibility_ms=` — up to
//!   `max` (1..=10) messages, hidden for `visibility_ms` (default 30 s); 200
//!   `{"messages":[{"message_id","handle","body","receive_count","reason"}]}`.
//! - `POST /queues/{name}/delete` `{"handles":[…]}` — 200 `{"deleted","failed"}`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use platform::ErrorResponse;
use platform::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::{Job, JobError, MAX_USER_ID_CHARS, QueueName, QueueRef, UserId};
use crate::ports::{Delivery, JobQueue, MAX_BATCH, MAX_BODY_BYTES, Outgoing, QueueError};
use platform::backend::{BackendError, FailureKind};

/// Longest long-polling wait a REST receive may ask for.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility a REST receive may ask for (SQS's limit).
const MAX_VISIBILITY: Duration = Duration::from_hours(12);

#[derive(Clone)]
struct AppState {
    queue: Arc<dyn JobQueue>,
    input: QueueRef,
}

/// The receipts routes on `queue`; jobs are submitted to `input`.
pub fn router(queue: Arc<dyn JobQueue>, input: QueueRef) -> Router {
    Router::new()
        .route("/receipts/jobs", post(submit))
        .route("/queues/{name}/messages", post(send))
        .route("/queues/{name}/receive", post(receive))
        .route("/queues/{name}/delete", post(delete))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { queue, input })
}

#[derive(OpenApi)]
#[openapi(
    paths(submit, send, receive, delete),
    components(schemas(JobBody, Sent, Received, Message, DeleteBody, Deleted, ErrorBody)),
    tags((name = "receipts", description = "In-app purchase receipt validation: jobs in, results out"))
)]
struct ReceiptsApi;

/// The routes' `OpenAPI` document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ReceiptsApi::openapi()
}

/// Everything a receipts route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The job body is refused.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The request is refused: the text says why.
    #[error("{0}")]
    BadRequest(String),
    /// The request body could not be read.
    #[error("{}", .0.message)]
    Body(ErrorResponse),
    /// The queue refused or failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Job(JobError::Malformed(_))
            | ApiError::BadRequest(_)
            | ApiError::Queue(QueueError::InvalidHandle | QueueError::TooManyEntries(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Job(JobError::EmptyReceipt) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Job(JobError::ReceiptTooLarge(_))
            | ApiError::Queue(QueueError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(response) => return response.clone().into_response(),
            ApiError::Queue(QueueError::NoSuchQueue(_)) => StatusCode::NOT_FOUND,
            ApiError::Queue(QueueError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Queue(QueueError::TooManyQueues(_)) => StatusCode::CONFLICT,
        };
        if let ApiError::Queue(error @ QueueError::Unavailable(_)) = &self {
            // Logged with the request id by the observe layer, never sent.
            return ErrorResponse::hidden(
                status,
                "receipts queue unavailable; retry later",
                platform::backend::chain(error),
            )
            .into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "receipts request failed");
        }
        ErrorResponse::new(status, self.to_string()).into_response()
    }
}

fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|r| ApiError::Body(ErrorResponse::from_body_rejection(r, MAX_BODY_BYTES)))
}

/// A queue in a route's path: by name only.
fn queue_name(name: String) -> Result<QueueRef, ApiError> {
    QueueName::new(name)
        .map(QueueRef::from)
        .map_err(|e| ApiError::BadRequest(format!("queue name: {e}")))
}

async fn send_one(state: &AppState, queue: &QueueRef, body: Vec<u8>) -> Result<String, ApiError> {
    let mut outcomes = state
        .queue
        .send_batch(
            queue,
            &[Outgoing {
                traceparent: platform::trace::traceparent(),
                body,
                reason: None,
            }],
        )
        .await?;
    let engine = state.queue.kind();
    Ok(outcomes.pop().ok_or_else(|| {
        QueueError::from(BackendError::new(
            engine,
            "send",
            FailureKind::Other,
            "no outcome for the message sent",
        ))
    })??)
}

/// A validation job. Other fields are accepted and ignored (the original
/// producers add some, such as `"source"`); the job is queued as it came.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct JobBody {
    /// Base64 of a legacy receipt, or a `StoreKit` 2 signed transaction (JWS);
    /// at least one character that is not ASCII whitespace.
    #[schema(min_length = 1, pattern = "[^\\t\\n\\f\\r ]")]
    receipt: String,
    #[schema(schema_with = user_id_schema)]
    user_id: UserId,
    /// The queue results go to: a queue name (`results`) or a queue URL
    /// (`https://sqs.us-east-1.amazonaws.com/123456789012/results`; the
    /// embedded queue uses its last path segment as the name). The pattern
    /// is `QueueRef`'s rule (hosts are names there, as SQS's are).
    #[schema(
        pattern = "^([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\\.fifo|https?://[A-Za-z][A-Za-z0-9-]*(\\.[A-Za-z][A-Za-z0-9-]*)*(:[0-9]{1,4})?(/[A-Za-z0-9_-]+)*/([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\\.fifo))$",
        max_length = 1024
    )]
    post_queue: String,
}

/// `user_id`: an integer or a bounded string ([`UserId`]), posted back as given.
fn user_id_schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_USER_ID_CHARS)),
        )
        .description(Some(
            "The user the receipt belongs to: an integer or a string; each result carries it back \
             unchanged, with the same JSON type.",
        ))
        .examples([serde_json::json!(42), serde_json::json!("user-8")])
        .into()
}

/// A message for a queue, as the whole `application/octet-stream` body: in
/// the document only (the handler reads the body's bytes).
struct QueueMessage;

impl utoipa::PartialSchema for QueueMessage {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .max_length(Some(MAX_BODY_BYTES))
            .description(Some("The message, 1 to 262144 bytes"))
            .into()
    }
}

impl ToSchema for QueueMessage {
    fn name() -> std::borrow::Cow<'static, str> {
        "QueueMessage".into()
    }
}

/// A message was queued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Sent {
    /// The queued message's id.
    pub message_id: String,
}

/// Queue a validation job.
///
/// Fields besides `receipt`, `user_id` and `post_queue` are accepted and
/// ignored, by this route and by the worker.
#[utoipa::path(post, path = "/receipts/jobs", tag = "receipts",
    request_body(content = JobBody, content_type = "application/json"),
    responses(
        (status = 202, body = Sent, description = "queued on the input queue"),
        (status = 400, body = ErrorBody, description = "not a job; the message names the field"),
        (status = 413, body = ErrorBody, description = "receipt over the size limit"),
        (status = 422, body = ErrorBody, description = "the receipt is only ASCII whitespace"),
        (status = 409, body = ErrorBody, description = "post_queue names a new queue and the embedded queue holds its limit of 1000 queues"),
        (status = 503, body = ErrorBody, description = "queue unavailable"),
    ))]
async fn submit(
    State(state): State<AppState>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    let bytes = body(bytes)?;
    let job = Job::parse(&bytes)?;
    state.queue.ensure(&job.post_queue).await?;
    let input = state.input.clone();
    let message_id = send_one(&state, &input, bytes.to_vec()).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message_id })))
}

/// Send any body to a queue, as is.
#[utoipa::path(post, path = "/queues/{name}/messages", tag = "receipts",
    params(("name" = String, Path, pattern = "^([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\\.fifo)$", description = "queue name: 1 to 80 ASCII letters, digits, - or _, optionally ending in .fifo")),
    request_body(content = QueueMessage, content_type = "application/octet-stream"),
    responses(
        (status = 202, body = Sent),
        (status = 400, body = ErrorBody, description = "invalid queue name, or an empty body"),
        (status = 404, body = ErrorBody, description = "no such queue"),
        (status = 413, body = ErrorBody, description = "over 256 KiB"),
    ))]
async fn send(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Sent>), ApiError> {
    let queue = queue_name(name)?;
    let bytes = body(bytes)?;
    // SQS refuses an empty message body; so does the embedded queue, alike.
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the message body is empty; send 1 to 262144 bytes".into(),
        ));
    }
    let message_id = send_one(&state, &queue, bytes.to_vec()).await?;
    Ok((StatusCode::ACCEPTED, Json(Sent { message_id })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReceiveQuery {
    /// Most messages to return, 1..=10 (default 10).
    #[param(minimum = 1, maximum = 10)]
    max: Option<usize>,
    /// Long-polling wait in ms, up to 20000 (default 0).
    #[param(minimum = 0, maximum = 20000)]
    wait_ms: Option<u64>,
    /// How long received messages stay hidden, in ms (default 30000; at most 12 h).
    #[param(minimum = 0, maximum = 43_200_000)]
    visibility_ms: Option<u64>,
}

/// One received message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Message {
    /// The message's id (the same across deliveries).
    pub message_id: String,
    /// This delivery's handle, for `POST /queues/{name}/delete`.
    pub handle: String,
    /// The body as text (results and jobs are JSON).
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// Why it was sent here (dead letters carry the reason).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The W3C trace context it was sent in (with `--otlp-endpoint`: a result
    /// carries its job's), for a consumer to continue the trace.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceparent: Option<String>,
}

/// What a receive returned.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Received {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
}

/// Receive messages from a queue (they stay hidden for the visibility time;
/// delete them once handled).
#[utoipa::path(post, path = "/queues/{name}/receive", tag = "receipts",
    params(("name" = String, Path, pattern = "^([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\\.fifo)$", description = "queue name: 1 to 80 ASCII letters, digits, - or _, optionally ending in .fifo"), ReceiveQuery),
    responses(
        (status = 200, body = Received),
        (status = 400, body = ErrorBody, description = "invalid parameter"),
        (status = 404, body = ErrorBody, description = "no such queue"),
    ))]
async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<ReceiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Received>, ApiError> {
    let queue = queue_name(name)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let max = query.max.unwrap_or(MAX_BATCH);
    if !(1..=MAX_BATCH).contains(&max) {
        return Err(ApiError::BadRequest(format!(
            "max must be 1 to {MAX_BATCH}"
        )));
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0));
    if wait > MAX_WAIT {
        return Err(ApiError::BadRequest("wait_ms must be at most 20000".into()));
    }
    let visibility = Duration::from_millis(query.visibility_ms.unwrap_or(30_000));
    if visibility > MAX_VISIBILITY {
        return Err(ApiError::BadRequest(
            "visibility_ms must be at most 43_200_000 (12 h)".into(),
        ));
    }
    let deliveries = state.queue.receive(&queue, max, wait, visibility).await?;
    Ok(Json(Received {
        messages: deliveries.into_iter().map(message).collect(),
    }))
}

fn message(delivery: Delivery) -> Message {
    Message {
        message_id: delivery.message_id,
        handle: delivery.handle,
        body: String::from_utf8_lossy(&delivery.body).into_owned(),
        receive_count: delivery.receive_count,
        reason: delivery.reason,
        traceparent: delivery.traceparent,
    }
}

/// Handles to delete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeleteBody {
    /// Handles from a receive (1..=10).
    #[schema(min_items = 1, max_items = 10)]
    pub handles: Vec<String>,
}

/// What a delete did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// How many were deleted.
    pub deleted: usize,
    /// Handles that could not be deleted, with why.
    pub failed: Vec<String>,
}

/// Reads a delete body: one UTF-8 JSON text holding 1 to [`MAX_BATCH`] handles.
pub fn delete_request(bytes: &[u8]) -> Result<DeleteBody, ApiError> {
    // JSON is UTF-8 (RFC 8259 §8.1); serde_json checks only the strings it
    // keeps, so a skipped field could otherwise carry any bytes.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: the body is not UTF-8 ({e})")))?;
    let request: DeleteBody = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    if request.handles.is_empty() || request.handles.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "handles: give 1 to {MAX_BATCH}"
        )));
    }
    Ok(request)
}

/// Delete received messages by handle.
#[utoipa::path(post, path = "/queues/{name}/delete", tag = "receipts",
    params(("name" = String, Path, pattern = "^([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\\.fifo)$", description = "queue name: 1 to 80 ASCII letters, digits, - or _, optionally ending in .fifo")),
    request_body(content = DeleteBody, content_type = "application/json"),
    responses(
        (status = 200, body = Deleted),
        (status = 400, body = ErrorBody, description = "not 1 to 10 handles"),
        (status = 404, body = ErrorBody, description = "no such queue"),
    ))]
async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let queue = queue_name(name)?;
    let bytes = body(bytes)?;
    let request = delete_request(&bytes)?;
    let outcomes = state.queue.delete_batch(&queue, &request.handles).await?;
    let mut deleted = 0;
    let mut failed = Vec::new();
    for (handle, outcome) in request.handles.iter().zip(outcomes) {
        match outcome {
            Ok(()) => deleted += 1,
            Err(e) => failed.push(format!("{handle}: {e}")),
        }
    }
    Ok(Json(Deleted { deleted, failed }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;
    use testkit::fuzz;

    use super::*;

    /// The handles a JSON value holds, if it is a valid delete body (an
    /// object, or serde's array form `[handles]`).
    fn expected(value: &Value) -> Option<Vec<String>> {
        let handles = match value {
            Value::Object(object) => object.get("handles")?,
            Value::Array(items) if items.len() == 1 => &items[0],
            _ => return None,
        };
        let handles = handles
            .as_array()?
            .iter()
            .map(|handle| handle.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        (1..=MAX_BATCH).contains(&handles.len()).then_some(handles)
    }

    #[test]
    fn a_delete_body_that_is_not_utf8_is_refused_even_in_a_skipped_field() {
        let body = b"{\"handles\": [\"h\"], \"note\": \"\xff\"}";
        assert!(matches!(delete_request(body), Err(ApiError::BadRequest(_))));
        let read = delete_request(br#"{"handles": ["h"]}"#).expect("a delete body");
        assert_eq!(read.handles, ["h"]);
    }

    fn delete_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![(
            "handles",
            fuzz::plausible(
                proptest::collection::vec(
                    fuzz::plausible(fuzz::text(12).prop_map(Value::from).boxed()),
                    0..=MAX_BATCH + 1,
                )
                .prop_map(Value::from)
                .boxed(),
            ),
        )])
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any delete body: never a panic; bytes that are not one JSON text
        /// are refused; a JSON text is read exactly when it holds 1 to 10
        /// string handles.
        #[test]
        fn fuzz_queue_delete_body(
            (body, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(delete_object()),
            ]),
        ) {
            let answer = delete_request(&body);
            match fuzz::json(&body) {
                None if fuzz::is_json(&body) => {}
                None => prop_assert!(answer.is_err()),
                Some(value) => match (expected(&value), answer) {
                    (Some(handles), Ok(read)) => prop_assert_eq!(read.handles, handles),
                    (None, Err(ApiError::BadRequest(_))) => {}
                    (expected, answer) => {
                        prop_assert!(false, "{} gave {:?}, expected {:?}", value, answer, expected);
                    }
                },
            }
        }
    }
}
