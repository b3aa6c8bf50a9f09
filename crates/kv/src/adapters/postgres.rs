//! `PostgreSQL` kv store (sqlx). Owns its schema: the migrations in
//! `crates/kv/migrations` are embedded and applied at start. A row holds the
//! record's parts in columns (`key_id`, `wrapped_key`, `nonce`,
//! `ciphertext`, `size`), so an operator can see which key wrapped what.

use async_trait::async_trait;
use sqlx::{PgPool, Row};

use crate::domain::record::NONCE_LEN;
use crate::domain::{
    Entry, KeyPrefix, KvKey, Page, PageLimit, RecordFormat, SealedRecord, WrappedKey,
};
use crate::ports::{KvStore, StoreError};
use platform::backend::BackendError;

/// A [`KvStore`] on a `PostgreSQL` table (`kv_items`).
pub struct PostgresKvStore {
    pool: PgPool,
}

/// A failed `PostgreSQL` call of `operation`.
fn failed(operation: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::Unavailable(BackendError::postgres(operation, error))
}

impl PostgresKvStore {
    /// Connects to `url` (a `postgres://` URL) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = platform::postgres::connect(url, sqlx::migrate!("./migrations"), "kv")
            .await
            .map_err(BackendError::from)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl KvStore for PostgresKvStore {
    fn engine(&self) -> &'static str {
        "postgresql"
    }

    async fn put(&self, key: &KvKey, record: &SealedRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO kv_items (key, key_id, wrapped_key, nonce, ciphertext, size, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now()) \
             ON CONFLICT (key) DO UPDATE SET key_id = EXCLUDED.key_id, \
             wrapped_key = EXCLUDED.wrapped_key, nonce = EXCLUDED.nonce, \
             ciphertext = EXCLUDED.ciphertext, size = EXCLUDED.size, updated_at = now()",
        )
        .bind(key.as_str())
        .bind(&record.wrapped.key_id)
        .bind(&record.wrapped.bytes)
        .bind(&record.nonce[..])
        .bind(&record.ciphertext)
        .bind(i64::try_from(record.plaintext_len()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(failed("put"))?;
        Ok(())
    }

    async fn get(&self, key: &KvKey) -> Result<Option<SealedRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, wrapped_key, nonce, ciphertext FROM kv_items WHERE key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("get"))?;
        let Some(row) = row else { return Ok(None) };
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let nonce: Vec<u8> = row.try_get("nonce").map_err(failed("get"))?;
        let nonce: [u8; NONCE_LEN] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| corrupt(format!("nonce of {} bytes", nonce.len())))?;
        let ciphertext: Vec<u8> = row.try_get("ciphertext").map_err(failed("get"))?;
        if ciphertext.len() < crate::domain::record::TAG_LEN {
            return Err(corrupt("ciphertext shorter than its tag".into()));
        }
        Ok(Some(SealedRecord {
            format: RecordFormat::V1,
            wrapped: WrappedKey {
                key_id: row.try_get("key_id").map_err(failed("get"))?,
                bytes: row.try_get("wrapped_key").map_err(failed("get"))?,
            },
            wrapped_alternates: Vec::new(),
            nonce,
            ciphertext,
        }))
    }

    async fn delete(&self, key: &KvKey) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM kv_items WHERE key = $1")
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed("delete"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&KvKey>,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        let rows = sqlx::query(
            "SELECT key, size FROM kv_items WHERE key LIKE $1 AND ($2::text IS NULL OR key > $2) \
             ORDER BY key LIMIT $3",
        )
        .bind(platform::postgres::like_prefix(prefix.as_str()))
        .bind(after.map(KvKey::as_str))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list"))?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("key").map_err(failed("list"))?;
            let size: i64 = row.try_get("size").map_err(failed("list"))?;
            let key = KvKey::new(key.clone()).map_err(|e| StoreError::Corrupt {
                key: key.chars().take(64).collect(),
                reason: e.to_string(),
            })?;
            entries.push(Entry {
                key,
                size: u64::try_from(size).unwrap_or(0),
            });
        }
        let next = limit.cut(&mut entries, |e| e.key.clone());
        Ok(Page {
            entries,
            next,
            corrupt: Vec::new(),
        })
    }

    async fn rewrap(
        &self,
        key: &KvKey,
        old: &WrappedKey,
        new: &WrappedKey,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE kv_items SET key_id = $4, wrapped_key = $5, updated_at = now() \
             WHERE key = $1 AND key_id = $2 AND wrapped_key = $3",
        )
        .bind(key.as_str())
        .bind(&old.key_id)
        .bind(&old.bytes)
        .bind(&new.key_id)
        .bind(&new.bytes)
        .execute(&self.pool)
        .await
        .map_err(failed("rewrap"))?;
        Ok(done.rows_affected() > 0)
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
