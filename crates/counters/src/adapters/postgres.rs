//! `PostgreSQL` counter store (sqlx). Owns its schema: the migrations in
//! `crates/counters/migrations` are embedded and applied at start.
//!
//! Table `counters(key, value, updated_at)` is plain and human-readable; a
//! flush is one statement (below): the totals and the instance's flushed
//! sequence change together or not at all.

use async_trait::async_trait;
use platform::backend::{BackendError, FailureKind};
use sqlx::{PgPool, Row};

use crate::domain::{Counter, CounterKey, KeyPrefix, PageLimit};
use crate::ports::{CounterStore, FlushBatch, Page, StoreError};

/// Counter totals in a `PostgreSQL` table, on a connection pool.
pub struct PostgresCounterStore {
    pool: PgPool,
}

/// Maps a sqlx error met during `operation` to the port's error.
fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| {
        if let sqlx::Error::Database(db) = &error
            && db.code().as_deref() == Some("22003")
        {
            // numeric_value_out_of_range: a total would leave bigint.
            return StoreError::Overflow {
                key: "(one of the batch)".to_owned(),
            };
        }
        StoreError::Unavailable(BackendError::postgres(operation, error))
    }
}

/// One round trip per flush. `guard` advances the instance's flushed sequence
/// only if this batch is new; the UPSERT applies only if `guard` did. Keys are
/// unique within a batch (the engine sums per key first): `PostgreSQL` refuses
/// to update one row twice in a statement.
const APPLY: &str = r"
WITH guard AS (
    INSERT INTO counter_flushes (instance_id, flushed_seq, updated_at)
    VALUES ($1, $2, now())
    ON CONFLICT (instance_id) DO UPDATE
        SET flushed_seq = EXCLUDED.flushed_seq, updated_at = now()
        WHERE counter_flushes.flushed_seq < EXCLUDED.flushed_seq
    RETURNING 1
), applied AS (
    INSERT INTO counters (key, value, updated_at)
    SELECT k, d, now() FROM unnest($3::text[], $4::bigint[]) AS t(k, d)
    WHERE EXISTS (SELECT 1 FROM guard)
    ON CONFLICT (key) DO UPDATE
        SET value = counters.value + EXCLUDED.value, updated_at = now()
    RETURNING key, value
)
SELECT key, value FROM applied
";

impl PostgresCounterStore {
    /// Connects to `url` (a `postgres://` URL) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool =
            platform::postgres::connect_pool(url, sqlx::migrate!("./migrations"), "counters", 8)
                .await
                .map_err(BackendError::from)?;
        Ok(Self { pool })
    }

    async fn totals(&self, keys: &[String]) -> Result<Vec<Counter>, StoreError> {
        let rows = sqlx::query("SELECT key, value FROM counters WHERE key = ANY($1)")
            .bind(keys)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("totals"))?;
        rows.iter().map(counter).collect()
    }
}

fn counter(row: &sqlx::postgres::PgRow) -> Result<Counter, StoreError> {
    let key: String = row.try_get("key").map_err(failed("read"))?;
    let value = row.try_get("value").map_err(failed("read"))?;
    Ok(Counter {
        key: CounterKey::parse(key.clone(), usize::MAX).map_err(|e| StoreError::Corrupt {
            key: key.chars().take(300).collect(),
            reason: format!("not a counter key: {e}"),
        })?,
        value,
    })
}

#[async_trait]
impl CounterStore for PostgresCounterStore {
    async fn load(&self, key: &CounterKey) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT value FROM counters WHERE key = $1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("load"))
    }

    async fn load_with_flushed(
        &self,
        key: &CounterKey,
        instance: &str,
    ) -> Result<(Option<i64>, u64), StoreError> {
        // One statement: one snapshot of both tables.
        let (total, flushed): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT value FROM counters WHERE key = $1), \
                    (SELECT flushed_seq FROM counter_flushes WHERE instance_id = $2)",
        )
        .bind(key.as_str())
        .bind(instance)
        .fetch_one(&self.pool)
        .await
        .map_err(failed("load"))?;
        Ok((total, flushed.map_or(0, |s| u64::try_from(s).unwrap_or(0))))
    }

    async fn apply(&self, batch: &FlushBatch) -> Result<Vec<Counter>, StoreError> {
        let keys: Vec<String> = batch
            .deltas
            .iter()
            .map(|(k, _)| k.as_str().to_owned())
            .collect();
        let deltas: Vec<i64> = batch.deltas.iter().map(|(_, d)| *d).collect();
        let seq = i64::try_from(batch.seq)
            .map_err(|e| BackendError::new("postgres", "apply", FailureKind::Rejected, e))?;
        let rows = sqlx::query(APPLY)
            .bind(&batch.instance)
            .bind(seq)
            .bind(&keys)
            .bind(&deltas)
            .fetch_all(&self.pool)
            .await
            .map_err(failed("apply"))?;
        if rows.is_empty() && !keys.is_empty() {
            // Already applied (a replay after a crash): report the current totals.
            return self.totals(&keys).await;
        }
        rows.iter().map(counter).collect()
    }

    async fn flushed_seq(&self, instance: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT flushed_seq FROM counter_flushes WHERE instance_id = $1")
                .bind(instance)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed("flushed seq"))?;
        Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&CounterKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        let rows = sqlx::query(
            "SELECT key, value FROM counters WHERE key LIKE $1 AND ($2::text IS NULL OR key > $2) \
             ORDER BY key LIMIT $3",
        )
        .bind(platform::postgres::like_prefix(prefix.as_str()))
        .bind(after.map(CounterKey::as_str))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("page"))?;
        let mut items = rows.iter().map(counter).collect::<Result<Vec<_>, _>>()?;
        let next = limit.cut(&mut items, |c| c.key.clone());
        Ok(Page {
            items,
            next,
            corrupt: Vec::new(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        platform::postgres::ping(&self.pool)
            .await
            .map_err(failed("ping"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
