//! The one JSON error shape every REST route answers with: `{"error": "<what was wrong>"}`.
//! Services decide the status for each of their errors (in their `api/http.rs`);
//! this type only renders it.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

/// An error answer: a status and a message meant for the caller.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// What the body's `error` says.
    pub message: String,
    /// What the caller may not see (a driver's or SDK's text: hosts, SQL,
    /// request details): logged with the request id, never sent.
    detail: Option<String>,
}

/// The hidden detail of a server error, carried from the handler to the
/// observe layer, which logs it with the request id and puts the request id
/// in the body (see `layers::observe`).
#[derive(Debug, Clone)]
pub(crate) struct HiddenDetail {
    /// What the body says instead (`messages store unavailable; retry later`).
    pub(crate) class: String,
    /// The text that stays in the log.
    pub(crate) detail: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong, in words meant for the caller.
    pub error: String,
}

impl ErrorResponse {
    /// An answer with `status` whose body says `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
        }
    }

    /// A failure behind the service (store, queue, key provider): the body
    /// says only `class` (e.g. `messages store unavailable; retry later`) and
    /// the request id; `detail` goes to the log under that request id.
    // By value, as the handlers hand over the error they are done with.
    #[allow(clippy::needless_pass_by_value)]
    pub fn hidden(status: StatusCode, class: impl Into<String>, detail: impl ToString) -> Self {
        Self {
            status,
            message: class.into(),
            detail: Some(detail.to_string()),
        }
    }

    /// Maps a failure to read the request body: over the size limit → 413, else 400.
    // By value, as `map_err` hands over the rejection it is done with.
    #[allow(clippy::needless_pass_by_value)]
    pub fn from_body_rejection(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes"),
            )
        } else {
            Self::new(
                StatusCode::BAD_REQUEST,
                format!("could not read request body: {rejection}"),
            )
        }
    }
}

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let unavailable = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let hidden = self.detail.map(|detail| HiddenDetail {
            class: self.message.clone(),
            detail,
        });
        let body = Json(ErrorBody {
            error: self.message,
        });
        let mut response = (self.status, body).into_response();
        if let Some(hidden) = hidden {
            response.extensions_mut().insert(hidden);
        }
        if unavailable {
            // Every 503 here is transient (a store, a queue, a limit): say when to come back.
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// The media type of a request body, lowercased and without parameters
/// (`Application/JSON; charset=utf-8` → `application/json`); `None` if absent.
pub fn media_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers
        .get(http::header::CONTENT_TYPE)?
        .to_str()
        .unwrap_or("");
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a JSON request body into `T`, answering what a REST caller needs
/// to fix: 415 for a missing or other media type, 413 over `limit`, 400 for
/// malformed JSON, 422 naming the field for well-formed JSON of the wrong
/// shape (`values[2]: invalid type: string "x", expected i64`). `example` is
/// shown in the 415 message.
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &http::HeaderMap,
    body: Result<bytes::Bytes, BytesRejection>,
    limit: usize,
    example: &str,
) -> Result<T, ErrorResponse> {
    match media_type(headers).as_deref() {
        Some("application/json") => {}
        Some(other) => {
            return Err(ErrorResponse::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type '{}': send application/json {example}",
                    other.chars().take(100).collect::<String>()
                ),
            ));
        }
        None => {
            return Err(ErrorResponse::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("missing Content-Type: send application/json {example}"),
            ));
        }
    }
    let body = body.map_err(|r| ErrorResponse::from_body_rejection(r, limit))?;
    // JSON is UTF-8 (RFC 8259 §8.1); serde_json checks only the strings it
    // keeps, so a skipped field could otherwise carry any bytes.
    let text = std::str::from_utf8(&body).map_err(|e| {
        ErrorResponse::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON: the body is not UTF-8 ({e})"),
        )
    })?;
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            ErrorResponse::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{field}{inner}"))
        } else {
            ErrorResponse::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {inner}"))
        }
    })?;
    // A body is one JSON text: `{"a": 1} x` is not one (only whitespace may follow).
    deserializer
        .end()
        .map_err(|e| ErrorResponse::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    Ok(value)
}

/// The answer for a path no service routes.
fn not_found(method: &http::Method, uri: &http::Uri) -> ErrorResponse {
    ErrorResponse::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// Fallback for unrouted requests: gRPC callers get UNIMPLEMENTED, others a JSON 404.
pub async fn not_found_or_unimplemented(req: axum::extract::Request) -> Response {
    if crate::grpc::is_grpc(req.headers()) {
        return tonic::Status::unimplemented(format!("no gRPC method {}", req.uri().path()))
            .into_http();
    }
    not_found(req.method(), req.uri()).into_response()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use testkit::fuzz;

    use super::*;

    /// A body shaped like the services' request bodies.
    #[derive(Debug, PartialEq, Deserialize)]
    struct Probe {
        name: String,
        count: i64,
        #[serde(default)]
        values: Vec<i64>,
    }

    /// What `json_body` must make of `value`: the probe it holds, if any.
    fn expected(value: &Value) -> Option<Probe> {
        // serde's derived readers also take a struct as an array of its
        // fields in order (`["a", 1]`), trailing defaults optional.
        if let Some(items) = value.as_array() {
            let values = match items.get(2) {
                None => Vec::new(),
                Some(values) => values
                    .as_array()?
                    .iter()
                    .map(Value::as_i64)
                    .collect::<Option<_>>()?,
            };
            if items.len() > 3 {
                return None;
            }
            return Some(Probe {
                name: items.first()?.as_str()?.to_owned(),
                count: items.get(1)?.as_i64()?,
                values,
            });
        }
        let object = value.as_object()?;
        let values = match object.get("values") {
            None => Vec::new(),
            Some(values) => values
                .as_array()?
                .iter()
                .map(Value::as_i64)
                .collect::<Option<_>>()?,
        };
        Some(Probe {
            name: object.get("name")?.as_str()?.to_owned(),
            count: object.get("count")?.as_i64()?,
            values,
        })
    }

    fn json_headers(content_type: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(content_type) {
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        headers
    }

    fn read(content_type: &str, body: &[u8]) -> Result<Probe, ErrorResponse> {
        json_body(
            &json_headers(content_type),
            Ok(bytes::Bytes::copy_from_slice(body)),
            1 << 20,
            r#"{"name": "x", "count": 1}"#,
        )
    }

    #[test]
    fn trailing_data_after_the_json_is_refused() {
        for body in [
            &br#"{"name": "a", "count": 1} x"#[..],
            br#"{"name": "a", "count": 1}{}"#,
            br#"{"name": "a", "count": 1}]"#,
        ] {
            let error = read("application/json", body).expect_err("trailing data");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{}", error.message);
            assert!(error.message.contains("trailing"), "{}", error.message);
        }
        // Whitespace after the value is not data.
        assert!(read("application/json", b"{\"name\": \"a\", \"count\": 1}\n\t ").is_ok());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_even_in_a_skipped_field() {
        let error = read(
            "application/json",
            b"{\"name\": \"a\", \"count\": 1, \"other\": \"\xb0\"}",
        )
        .expect_err("not UTF-8");
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{}", error.message);
        assert!(error.message.contains("not UTF-8"), "{}", error.message);
    }

    fn probe_object() -> BoxedStrategy<Value> {
        fuzz::object_with(vec![
            (
                "name",
                fuzz::plausible(fuzz::text(16).prop_map(Value::from).boxed()),
            ),
            ("count", fuzz::plausible(fuzz::json_number().boxed())),
            (
                "values",
                fuzz::plausible(
                    proptest::collection::vec(fuzz::json_number(), 0..5)
                        .prop_map(Value::from)
                        .boxed(),
                ),
            ),
        ])
    }

    fn probe_array() -> BoxedStrategy<Value> {
        proptest::collection::vec(
            prop_oneof![
                fuzz::text(8).prop_map(Value::from),
                fuzz::json_number(),
                proptest::collection::vec(fuzz::json_number(), 0..3).prop_map(Value::from),
            ],
            0..5,
        )
        .prop_map(Value::from)
        .boxed()
    }

    fn content_type() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => Just("application/json".to_owned()),
            1 => Just("Application/JSON; charset=utf-8".to_owned()),
            1 => Just("text/plain".to_owned()),
            1 => Just(String::new()),
            1 => fuzz::text(24),
        ]
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any body and Content-Type: never a panic; 415 unless the media
        /// type is JSON; bytes that are not one JSON text are refused; a
        /// JSON text is read exactly when it has the shape asked for, and
        /// refused with 422 when it has not.
        #[test]
        fn fuzz_json_body(
            content_type in content_type(),
            (body, mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(64),
                4 => fuzz::json_bytes(prop_oneof![1 => fuzz::json_value(), 4 => probe_object(), 1 => probe_array()]),
            ]),
        ) {
            let _ = mutation;
            let answer = read(&content_type, &body);
            let headers = json_headers(&content_type);
            if media_type(&headers).as_deref() != Some("application/json") {
                let error = answer.expect_err("not JSON's media type");
                prop_assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                return Ok(());
            }
            match fuzz::json(&body) {
                None if fuzz::is_json(&body) => {
                    // A JSON text with a number beyond f64's range: held to
                    // nothing but not panicking.
                }
                None => {
                    let error = answer.expect_err("not one JSON text");
                    prop_assert!(
                        error.status == StatusCode::BAD_REQUEST
                            || error.status == StatusCode::UNPROCESSABLE_ENTITY,
                        "{:?}", error
                    );
                }
                Some(value) => match (expected(&value), answer) {
                    (Some(probe), Ok(read)) => prop_assert_eq!(read, probe),
                    // serde_json calls an array's extra items a syntax error.
                    (None, Err(error)) if value.is_array() && error.status == StatusCode::BAD_REQUEST => {}
                    (None, Err(error)) => {
                        prop_assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", error.message);
                    }
                    (expected, answer) => prop_assert!(false, "{} gave {:?}, expected {:?}", value, answer, expected),
                },
            }
        }
    }

    #[test]
    fn a_well_formed_body_is_read() {
        let body =
            serde_json::to_vec(&json!({"name": "a", "count": -3, "values": [1, 2]})).expect("json");
        assert_eq!(
            read("application/json", &body).expect("reads"),
            Probe {
                name: "a".into(),
                count: -3,
                values: vec![1, 2],
            }
        );
    }
}
