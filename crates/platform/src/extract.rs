//! Request bodies, read the same way by every service. [`JsonBody`] is the
//! extractor for a JSON body; [`limit_bodies`] sets a router's body limit and
//! tells the extractor, so a 413 names the limit.
//!
//! What a REST caller is told: 415 for a missing or other media type (with
//! the body's [`JsonExample`]), 413 over the limit, 400 for bytes that are
//! not one UTF-8 JSON text, 422 naming the field for well-formed JSON of the
//! wrong shape (`values[2]: invalid type: string "x", expected i64`).

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use bytes::Bytes;
use http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ErrorResponse, media_type};

/// axum's own limit, for a router that did not set one with [`limit_bodies`].
const AXUM_DEFAULT_LIMIT: usize = 2 * 1024 * 1024;

/// A request body type's example, shown when the media type is wrong.
pub trait JsonExample {
    /// A body that would be accepted, e.g. `{"a": 1, "b": 2}`.
    const EXAMPLE: &'static str;
}

/// The body limit a router was given, for the extractor's 413 message.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// `router` with request bodies over `bytes` refused (413), the limit known
/// to [`JsonBody`].
pub fn limit_bodies<S>(router: Router<S>, bytes: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(DefaultBodyLimit::max(bytes))
        .layer(axum::Extension(BodyLimit(bytes)))
}

/// A JSON request body read into `T` (see the module's docs for what each
/// refusal answers). The rejection is the [`ErrorResponse`] to send.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + JsonExample,
{
    type Rejection = ErrorResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_media_type(request.headers(), T::EXAMPLE)?;
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(AXUM_DEFAULT_LIMIT, |limit| limit.0);
        let body = Bytes::from_request(request, state).await;
        read_json(body, limit).map(JsonBody)
    }
}

/// Reads a JSON request body into `T` as [`JsonBody`] does, from its parts:
/// for code that holds the headers and bytes already (and for tests).
pub fn json_body<T: DeserializeOwned>(
    headers: &http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    example: &str,
) -> Result<T, ErrorResponse> {
    check_media_type(headers, example)?;
    read_json(body, limit)
}

/// 415 unless the body is declared `application/json` (any parameters).
fn check_media_type(headers: &http::HeaderMap, example: &str) -> Result<(), ErrorResponse> {
    match media_type(headers).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ErrorResponse::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type '{}': send application/json {example}",
                other.chars().take(100).collect::<String>()
            ),
        )),
        None => Err(ErrorResponse::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("missing Content-Type: send application/json {example}"),
        )),
    }
}

/// One UTF-8 JSON text read into `T`: 413 over `limit`, 400 or 422. For a
/// route that accepts other media types too and has checked which it got.
pub fn read_json<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ErrorResponse> {
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

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use http::header::CONTENT_TYPE;
    use tower::ServiceExt;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Pair {
        a: i64,
        b: i64,
    }

    impl JsonExample for Pair {
        const EXAMPLE: &'static str = r#"{"a": 1, "b": 2}"#;
    }

    async fn sum(JsonBody(Pair { a, b }): JsonBody<Pair>) -> String {
        (a + b).to_string()
    }

    /// Posts `body` with `content_type` to a router limited to 32 bytes.
    async fn post_body(content_type: Option<&str>, body: &'static str) -> (StatusCode, String) {
        let router = limit_bodies(Router::new().route("/", post(sum)), 32);
        let mut request = Request::post("/");
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(axum::body::Body::from(body)).expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn every_refusal_says_what_to_send() {
        let json = Some("Application/JSON; charset=utf-8");
        assert_eq!(
            post_body(json, r#"{"a": 1, "b": 2}"#).await,
            (StatusCode::OK, "3".into())
        );
        let (status, body) = post_body(None, "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            body.contains(r#"send application/json {\"a\": 1, \"b\": 2}"#),
            "{body}"
        );
        let (status, body) = post_body(Some("text/plain"), "{}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(body.contains("'text/plain'"), "{body}");
        let (status, body) = post_body(json, r#"{"a": 1, "b": 2, "pad": "0123456789"}"#).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("limit of 32 bytes"), "{body}");
        let (status, body) = post_body(json, r#"{"a": 1, "b": "x"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("b: invalid type"), "{body}");
        let (status, body) = post_body(json, r#"{"a": 1, "b": 2} x"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("invalid JSON"), "{body}");
    }
}

/// `json_body` against any body and media type.
#[cfg(test)]
mod reading {
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

    /// A probe's optional `values`: absent is empty, else every item an i64.
    fn int_list(values: Option<&Value>) -> Option<Vec<i64>> {
        match values {
            None => Some(Vec::new()),
            Some(values) => values.as_array()?.iter().map(Value::as_i64).collect(),
        }
    }

    /// What `json_body` must make of `value`: the probe it holds, if any.
    fn expected(value: &Value) -> Option<Probe> {
        // serde's derived readers also take a struct as an array of its
        // fields in order (`["a", 1]`), trailing defaults optional.
        if let Some(items) = value.as_array() {
            let values = int_list(items.get(2))?;
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
        let values = int_list(object.get("values"))?;
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
