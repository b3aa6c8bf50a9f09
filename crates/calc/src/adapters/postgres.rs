//! Event log in `PostgreSQL`: table `calc_events` (see `migrations/`), one row
//! per calculation with its inputs and answer as `jsonb`, so the history is
//! also queryable with plain SQL. A batch is one `INSERT … SELECT FROM
//! unnest(…) WITH ORDINALITY`, so positions follow the batch's order.

use async_trait::async_trait;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::event::{CalculationPerformed, EventQuery, Outcome, StoredEvent};
use platform::backend::{BackendError, FailureKind};

use crate::ports::{EventLog, EventLogError};

/// Events in a `PostgreSQL` table, one row each, on a connection pool.
pub struct PostgresEventLog {
    pool: PgPool,
}

/// Maps a sqlx error met during `operation` to the port's error.
fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> EventLogError {
    move |error| EventLogError::Unavailable(BackendError::postgres(operation, error))
}

impl PostgresEventLog {
    /// Connects and applies calc's migrations.
    pub async fn connect(url: &str) -> Result<Self, EventLogError> {
        let pool = platform::postgres::connect_pool(url, sqlx::migrate!("./migrations"), "calc", 8)
            .await
            .map_err(BackendError::from)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl EventLog for PostgresEventLog {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    async fn append(&self, events: &[CalculationPerformed]) -> Result<(), EventLogError> {
        let mut at = Vec::with_capacity(events.len());
        let mut request_id = Vec::with_capacity(events.len());
        let mut method = Vec::with_capacity(events.len());
        let mut input = Vec::with_capacity(events.len());
        let mut result = Vec::with_capacity(events.len());
        let mut error_kind = Vec::with_capacity(events.len());
        let mut error_message = Vec::with_capacity(events.len());
        for event in events {
            at.push(
                event.at.format(&Rfc3339).map_err(|e| {
                    BackendError::new("postgres", "append", FailureKind::Rejected, e)
                })?,
            );
            request_id.push(event.request_id.clone());
            method.push(event.method.clone());
            input.push(event.input.to_string());
            match &event.outcome {
                Outcome::Result(value) => {
                    result.push(Some(value.to_string()));
                    error_kind.push(None);
                    error_message.push(None);
                }
                Outcome::Error { kind, message } => {
                    result.push(None);
                    error_kind.push(Some(kind.clone()));
                    error_message.push(Some(message.clone()));
                }
            }
        }
        sqlx::query(
            "INSERT INTO calc_events (at, request_id, method, input, result, error_kind, error_message) \
             SELECT at::timestamptz, request_id, method, input::jsonb, result::jsonb, error_kind, error_message \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                  WITH ORDINALITY AS e(at, request_id, method, input, result, error_kind, error_message, n) \
             ORDER BY n",
        )
        .bind(at)
        .bind(request_id)
        .bind(method)
        .bind(input)
        .bind(result)
        .bind(error_kind)
        .bind(error_message)
        .execute(&self.pool)
        .await
        .map_err(failed("append"))?;
        Ok(())
    }

    async fn read(&self, query: EventQuery) -> Result<Vec<StoredEvent>, EventLogError> {
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        let since = query
            .since
            .map(|since| since.format(&Rfc3339))
            .transpose()
            .map_err(|e| BackendError::new("postgres", "read", FailureKind::Rejected, e))?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at, \
                    request_id, method, input::text AS input, result::text AS result, \
                    error_kind, error_message \
             FROM calc_events \
             WHERE seq > $1 AND ($2::timestamptz IS NULL OR at >= $2::timestamptz) \
             ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("read"))?;
        rows.iter().map(decode).collect()
    }

    async fn ping(&self) -> Result<(), EventLogError> {
        platform::postgres::ping(&self.pool)
            .await
            .map_err(failed("ping"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, EventLogError> {
    let seq: i64 = row.try_get("seq").map_err(failed("read"))?;
    let seq = u64::try_from(seq).unwrap_or_default();
    let corrupt = |reason: String| EventLogError::Corrupt { seq, reason };
    let at: String = row.try_get("at").map_err(failed("read"))?;
    let at = OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| corrupt(e.to_string()))?;
    let input: String = row.try_get("input").map_err(failed("read"))?;
    let result: Option<String> = row.try_get("result").map_err(failed("read"))?;
    let error_kind: Option<String> = row.try_get("error_kind").map_err(failed("read"))?;
    let error_message: Option<String> = row.try_get("error_message").map_err(failed("read"))?;
    let outcome = match (result, error_kind) {
        (Some(result), None) => {
            Outcome::Result(serde_json::from_str(&result).map_err(|e| corrupt(e.to_string()))?)
        }
        (None, Some(kind)) => Outcome::Error {
            kind,
            message: error_message.unwrap_or_default(),
        },
        _ => return Err(corrupt("neither a result nor an error".into())),
    };
    Ok(StoredEvent {
        seq,
        event: CalculationPerformed {
            at,
            request_id: row.try_get("request_id").map_err(failed("read"))?,
            method: row.try_get("method").map_err(failed("read"))?,
            input: serde_json::from_str(&input).map_err(|e| corrupt(e.to_string()))?,
            outcome,
        },
    })
}
