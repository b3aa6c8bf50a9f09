//! REST mapping of the calculator: every unary gRPC method as
//! `POST /calc/<method>` with the same JSON fields, and the event log as
//! `GET /calc/history`; the one place where calc's errors become HTTP
//! statuses ([`ApiError`]'s `IntoResponse`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use platform::ErrorResponse;
use platform::error::ErrorBody;
use platform::extract::{JsonBody, JsonExample};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::domain::event::{DEFAULT_PAGE, EventQuery, MAX_PAGE, StoredEvent};
use crate::domain::{CalcError, Operation};
use crate::engine::calculator::{Calculator, HistoryError};
use crate::ports::EventLogError;

/// Largest request body: 10,000 values of up to 20 digits, with commas.
const BODY_LIMIT: usize = 512 * 1024;

/// calc's REST routes (`/calc/…`) over `calculator`.
pub fn router(calculator: Arc<Calculator>) -> Router {
    let router = Router::new()
        .route("/calc/add", post(add))
        .route("/calc/subtract", post(subtract))
        .route("/calc/multiply", post(multiply))
        .route("/calc/divide", post(divide))
        .route("/calc/max", post(max))
        .route("/calc/min", post(min))
        .route("/calc/nth-primes", post(nth_primes))
        .route("/calc/history", get(history));
    platform::extract::limit_bodies(router, BODY_LIMIT).with_state(calculator)
}

#[derive(OpenApi)]
#[openapi(
    paths(add, subtract, multiply, divide, max, min, nth_primes, history),
    components(schemas(
        Operands,
        Values,
        NthPrimesBody,
        ResultBody,
        PrimesBody,
        HistoryPage,
        ErrorBody
    )),
    tags((name = "calc", description = "Checked int64 arithmetic, prime numbers, and the log of every calculation"))
)]
struct CalcApi;

/// The document of calc's routes; `max_n` is the server's --calc-max-n,
/// the largest position `POST /calc/nth-primes` answers.
pub fn openapi(max_n: u64) -> utoipa::openapi::OpenApi {
    let mut doc = CalcApi::openapi();
    if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(body))) = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("NthPrimesBody"))
        && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Array(n))) =
            body.properties.get_mut("n")
        && let utoipa::openapi::schema::ArrayItems::RefOrSchema(item) = &mut n.items
        && let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(item)) =
            item.as_mut()
    {
        item.minimum = Some(1.into());
        // The document has always carried the limit as a float; --calc-max-n
        // is at most 10^12 < 2^53, so it is exact.
        #[allow(clippy::cast_precision_loss)]
        let maximum = max_n as f64;
        item.maximum = Some(maximum.into());
    }
    doc
}

/// Everything a calc route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or query could not be read (bad JSON, too large, wrong
    /// type): the answer is ready.
    #[error("{}", .0.message)]
    Request(ErrorResponse),
    /// The calculation was refused (422), cancelled (503) or failed (500).
    #[error(transparent)]
    Calc(#[from] CalcError),
    /// The history could not be read (404 when off, 503, or 500 when corrupt).
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// What a caller is told when the event log fails; the cause is logged.
pub const HISTORY_UNAVAILABLE: &str = "calc history unavailable; retry later";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Request(e) => e.status,
            ApiError::Calc(CalcError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Calc(CalcError::Cancelled | CalcError::NotRecorded(_))
            | ApiError::History(HistoryError::Log(EventLogError::Unavailable(_))) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Well-formed, but not computable: invalid arguments and values out of range alike.
            ApiError::Calc(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::History(HistoryError::Disabled) => StatusCode::NOT_FOUND,
            ApiError::History(HistoryError::Log(EventLogError::Corrupt { .. })) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if let ApiError::History(HistoryError::Log(error @ EventLogError::Unavailable(_))) = &self {
            // The chain is logged with the request id by the observe layer,
            // never sent.
            return ErrorResponse::hidden(
                status,
                HISTORY_UNAVAILABLE,
                platform::backend::chain(error),
            )
            .into_response();
        }
        if let ApiError::Calc(CalcError::Internal(detail)) = &self {
            return ErrorResponse::hidden(status, "calculation failed", detail).into_response();
        }
        if status.is_server_error() {
            tracing::error!(error = %self, "calc request failed");
        }
        ErrorResponse::new(status, self.to_string()).into_response()
    }
}

/// Two operands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operands {
    /// The left operand.
    pub a: i64,
    /// The right operand.
    pub b: i64,
}

impl JsonExample for Operands {
    const EXAMPLE: &'static str = r#"{"a": 1, "b": 2}"#;
}

/// 1 to 10,000 values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// The values, as int64 integers.
    #[schema(min_items = 1, max_items = 10000)]
    pub values: Vec<i64>,
}

impl JsonExample for Values {
    const EXAMPLE: &'static str = r#"{"values": [3, 9]}"#;
}

/// 1 to 10,000 positions, 1-based (1 → 2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NthPrimesBody {
    /// Each from 1 to the server's --calc-max-n.
    #[schema(min_items = 1, max_items = 10000)]
    pub n: Vec<u64>,
}

impl JsonExample for NthPrimesBody {
    const EXAMPLE: &'static str = r#"{"n": [1, 2, 10001]}"#;
}

/// The answer of an int64 operation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultBody {
    /// The exact result.
    pub result: i64,
}

/// The n-th prime for each n, in the order asked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PrimesBody {
    /// One prime per n asked.
    pub primes: Vec<u64>,
}

/// A page of the event log, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// Each: `seq`, `at` (RFC 3339), `request_id`, `method`, `input`, and `result` or `error` {`kind`, `message`}.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<StoredEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryParams {
    /// Only events at or after this time (RFC 3339, e.g. 2026-12-03T08:00:00Z).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only events after this position (the previous page's `next_after`).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Events per page, 1..=1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn binary(
    calculator: &Calculator,
    op: Operation,
    headers: &HeaderMap,
    Operands { a, b }: Operands,
) -> Result<Json<ResultBody>, ApiError> {
    let result = calculator.binary(op, a, b, request_id(headers)).await?;
    Ok(Json(ResultBody { result }))
}

async fn fold(
    calculator: &Calculator,
    op: Operation,
    headers: &HeaderMap,
    Values { values }: Values,
) -> Result<Json<ResultBody>, ApiError> {
    let result = calculator.fold(op, &values, request_id(headers)).await?;
    Ok(Json(ResultBody { result }))
}

/// One `POST /calc/<method>` route over an int64 operation: `$run` reads
/// the `$body` JSON and calls the calculator with `$op`.
macro_rules! int_route {
    ($name:ident, $run:ident, $body:ident, $op:expr, $path:literal, $what:literal, $errors:literal) => {
        #[doc = $what]
        #[utoipa::path(
            post,
            path = $path,
            tag = "calc",
            request_body(content = $body, content_type = "application/json"),
            responses(
                (status = 200, description = $what, body = ResultBody),
                (status = 400, description = "Body is not valid JSON", body = ErrorBody),
                (status = 401, description = "Missing or invalid bearer token", body = ErrorBody),
                (status = 413, description = "Body too large", body = ErrorBody),
                (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
                (status = 422, description = $errors, body = ErrorBody),
                (status = 429, description = "Rate limit exceeded; see Retry-After", body = ErrorBody)
            )
        )]
        async fn $name(
            State(calculator): State<Arc<Calculator>>,
            headers: HeaderMap,
            JsonBody(body): JsonBody<$body>,
        ) -> Result<Json<ResultBody>, ApiError> {
            $run(&calculator, $op, &headers, body).await
        }
    };
}

int_route!(
    add,
    binary,
    Operands,
    Operation::Add,
    "/calc/add",
    "a + b",
    "A field is missing or not an int64 written as an integer (1.0 and 1e3 are refused), or the sum overflows int64"
);
int_route!(
    subtract,
    binary,
    Operands,
    Operation::Subtract,
    "/calc/subtract",
    "a - b",
    "A field is missing or not an int64 written as an integer (1.0 and 1e3 are refused), or the difference overflows int64"
);
int_route!(
    multiply,
    binary,
    Operands,
    Operation::Multiply,
    "/calc/multiply",
    "a * b",
    "A field is missing or not an int64 written as an integer (1.0 and 1e3 are refused), or the product overflows int64"
);
int_route!(
    divide,
    binary,
    Operands,
    Operation::Divide,
    "/calc/divide",
    "a / b, truncated toward zero",
    "A field is missing or not an int64 written as an integer (1.0 and 1e3 are refused), b is 0, or the quotient overflows int64 (MIN / -1)"
);
int_route!(
    max,
    fold,
    Values,
    Operation::Max,
    "/calc/max",
    "The largest of the values",
    "No values, more than 10,000, or one is not an int64 written as an integer (1.0 and 1e3 are refused)"
);
int_route!(
    min,
    fold,
    Values,
    Operation::Min,
    "/calc/min",
    "The smallest of the values",
    "No values, more than 10,000, or one is not an int64 written as an integer (1.0 and 1e3 are refused)"
);

/// The n-th prime for each n (1-based: n = 1 → 2).
#[utoipa::path(
    post,
    path = "/calc/nth-primes",
    tag = "calc",
    request_body(content = NthPrimesBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The primes, in the order asked", body = PrimesBody),
        (status = 400, description = "Body is not valid JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 422, description = "No n, more than 10,000, an n of 0, one not written as an integer (1.0 is refused), or an n above the server's --calc-max-n", body = ErrorBody),
        (status = 503, description = "The request timed out before the answer was found", body = ErrorBody)
    )
)]
async fn nth_primes(
    State(calculator): State<Arc<Calculator>>,
    headers: HeaderMap,
    JsonBody(NthPrimesBody { n }): JsonBody<NthPrimesBody>,
) -> Result<Json<PrimesBody>, ApiError> {
    let primes = calculator.nth_primes(n, request_id(&headers)).await?;
    Ok(Json(PrimesBody { primes }))
}

fn bad_param(message: String) -> ApiError {
    ApiError::Request(ErrorResponse::new(StatusCode::BAD_REQUEST, message))
}

/// A page of the event log: every calculation performed (answered, refused
/// or cancelled), oldest first.
#[utoipa::path(
    get,
    path = "/calc/history",
    tag = "calc",
    params(HistoryParams),
    responses(
        (status = 200, description = "A page of events", body = HistoryPage),
        (status = 400, description = "since, after or limit is malformed", body = ErrorBody),
        (status = 404, description = "This server keeps no events (--calc-events none)", body = ErrorBody),
        (status = 503, description = "The event log cannot be reached; retry", body = ErrorBody)
    )
)]
async fn history(
    State(calculator): State<Arc<Calculator>>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let Query(params) = params.map_err(|e| bad_param(e.body_text()))?;
    let since = params
        .since
        .map(|text| {
            OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| {
                bad_param(format!(
                    "since: '{text}' is not an RFC 3339 time (e.g. 2026-12-03T08:00:00Z): {e}"
                ))
            })
        })
        .transpose()?;
    let after = params
        .after
        .map(|text| {
            // Positions are int64 in the document (JSON's integers); none is near 2^63.
            text.parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| bad_param(format!("after: '{text}' is not a position (0, 1, 2, …)")))
        })
        .transpose()?
        .unwrap_or(0);
    let limit = match params.limit {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(bad_param(format!(
                    "limit: '{text}' is not a whole number from 1 to {MAX_PAGE}"
                )));
            }
        },
    };
    let query = EventQuery::new(after, since, limit);
    let events = calculator.history(query).await?;
    let next_after = match events.last() {
        Some(last) if events.len() == query.limit => Some(last.seq),
        _ => None,
    };
    Ok(Json(HistoryPage { events, next_after }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};
    use testkit::fuzz;

    use super::*;
    use crate::domain::{self, MAX_VALUES, primes};

    fn read<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        platform::extract::json_body(
            &headers,
            Ok(bytes::Bytes::copy_from_slice(raw)),
            BODY_LIMIT,
            "{}",
        )
        .map_err(ApiError::Request)
    }

    /// The fields of a body read with `deny_unknown_fields`, in order: from
    /// an object holding no other field, or from serde's array form.
    fn fields<'v>(value: &'v Value, names: &[&str]) -> Option<Vec<&'v Value>> {
        match value {
            Value::Object(object) => {
                if object.keys().any(|key| !names.contains(&key.as_str())) {
                    return None;
                }
                names.iter().map(|name| object.get(*name)).collect()
            }
            Value::Array(items) if items.len() == names.len() => Some(items.iter().collect()),
            _ => None,
        }
    }

    fn int_array(value: &Value) -> Option<Vec<i64>> {
        value.as_array()?.iter().map(Value::as_i64).collect()
    }

    fn body_object() -> BoxedStrategy<Value> {
        let ints = || {
            fuzz::plausible(
                proptest::collection::vec(fuzz::json_number(), 0..6)
                    .prop_map(Value::from)
                    .boxed(),
            )
        };
        let small_n = || {
            fuzz::plausible(
                proptest::collection::vec(
                    prop_oneof![4 => (0u64..=1200).prop_map(Value::from), 1 => fuzz::json_number()],
                    0..6,
                )
                .prop_map(Value::from)
                .boxed(),
            )
        };
        prop_oneof![
            fuzz::object_with(vec![
                ("a", fuzz::plausible(fuzz::json_number().boxed())),
                ("b", fuzz::plausible(fuzz::json_number().boxed())),
            ]),
            fuzz::object_with(vec![("values", ints())]),
            fuzz::object_with(vec![("n", small_n())]),
            // The valid shapes without an extra field, which deny_unknown_fields refuses.
            (fuzz::json_number(), fuzz::json_number()).prop_map(|(a, b)| {
                Value::Object(Map::from_iter([("a".into(), a), ("b".into(), b)]))
            }),
            (ints(), small_n()).prop_map(|(values, n)| {
                Value::Object(Map::from_iter([("values".into(), values), ("n".into(), n)]))
            }),
        ]
        .boxed()
    }

    /// The largest n the fuzzed bodies are computed up to.
    const MAX_N: u64 = 1000;

    /// The nth prime for n up to 1200, by trial division.
    fn naive_nth_prime(n: u64) -> u64 {
        let mut found = 0;
        let mut candidate = 1u64;
        while found < n {
            candidate += 1;
            if (2..candidate)
                .take_while(|d| d * d <= candidate)
                .all(|d| !candidate.is_multiple_of(d))
            {
                found += 1;
            }
        }
        candidate
    }

    proptest! {
        #![proptest_config(fuzz::config(256))]

        /// Any body to calc's routes, read as each of its three body types:
        /// never a panic; bytes that are not one JSON text are refused; a
        /// JSON text is read exactly when it has the type's fields and no
        /// other, each an integer of the right range; what is read is then
        /// computed without a panic, refusing what the domain refuses.
        #[test]
        fn fuzz_calc_bodies(
            (raw, _mutation) in fuzz::mutated(prop_oneof![
                1 => fuzz::bytes(48),
                1 => fuzz::json_bytes(fuzz::json_value()),
                4 => fuzz::json_bytes(body_object()),
            ]),
        ) {
            let operands = read::<Operands>(&raw);
            let values = read::<Values>(&raw);
            let nth = read::<NthPrimesBody>(&raw);
            let Some(value) = fuzz::json(&raw) else {
                if !fuzz::is_json(&raw) {
                    prop_assert!(operands.is_err() && values.is_err() && nth.is_err());
                }
                return Ok(());
            };

            let expected = fields(&value, &["a", "b"])
                .and_then(|f| Some((f[0].as_i64()?, f[1].as_i64()?)));
            match (expected, operands) {
                (Some((a, b)), Ok(read)) => {
                    prop_assert_eq!((read.a, read.b), (a, b));
                    for op in [Operation::Add, Operation::Subtract, Operation::Multiply, Operation::Divide] {
                        let _ = op.apply(a, b);
                    }
                }
                (None, Err(_)) => {}
                (expected, read) => prop_assert!(false, "{} gave {:?}, expected {:?}", value, read, expected),
            }

            let expected = fields(&value, &["values"]).and_then(|f| int_array(f[0]));
            match (expected, values) {
                (Some(expected), Ok(read)) => {
                    prop_assert_eq!(&read.values, &expected);
                    let max = domain::fold(Operation::Max, &read.values);
                    let min = domain::fold(Operation::Min, &read.values);
                    if (1..=MAX_VALUES).contains(&expected.len()) {
                        prop_assert_eq!(max, Ok(*expected.iter().max().expect("values")));
                        prop_assert_eq!(min, Ok(*expected.iter().min().expect("values")));
                    } else {
                        prop_assert!(max.is_err() && min.is_err());
                    }
                }
                (None, Err(_)) => {}
                (expected, read) => prop_assert!(false, "{} gave {:?}, expected {:?}", value, read, expected),
            }

            let expected = fields(&value, &["n"]).and_then(|f| {
                f[0].as_array()?.iter().map(Value::as_u64).collect::<Option<Vec<_>>>()
            });
            match (expected, nth) {
                (Some(expected), Ok(read)) => {
                    prop_assert_eq!(&read.n, &expected);
                    let answer = primes::nth_primes(&read.n, MAX_N, &|| false);
                    if read.n.iter().all(|n| (1..=MAX_N).contains(n)) {
                        let primes = answer.expect("every n in range");
                        for (n, prime) in read.n.iter().zip(primes) {
                            prop_assert_eq!(prime, naive_nth_prime(*n), "n = {}", n);
                        }
                    } else {
                        prop_assert!(answer.is_err());
                    }
                }
                (None, Err(_)) => {}
                (expected, read) => prop_assert!(false, "{} gave {:?}, expected {:?}", value, read, expected),
            }
        }
    }
}
