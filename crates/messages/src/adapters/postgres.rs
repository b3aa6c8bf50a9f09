//! `PostgreSQL` message store (sqlx). Owns its schema: the migrations in
//! `crates/messages/migrations` are embedded and applied at start.
//!
//! Table `messages(seq, digest, body, created_at)`; `body` is `bytea` so any
//! UTF-8 text (NUL included) is stored byte for byte.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use platform::backend::BackendError;
use sqlx::{PgPool, Row};

use crate::domain::{Cursor, Digest, Message, PAGE_MAX_BYTES, PageLimit, StoredMessage};
use crate::ports::{Corruption, MessageStore, Page, PutOutcome, StoreError};

/// Messages in a `PostgreSQL` table, on a connection pool.
pub struct PostgresMessageStore {
    pool: PgPool,
}

/// Maps a sqlx error met during `operation` to the port's error: a value
/// that does not decode is a corrupt record, anything else the backend failing.
fn failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |error| match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(Corruption::new("a messages row", error.to_string()))
        }
        other => StoreError::Unavailable(BackendError::postgres(operation, other)),
    }
}

const SELECT: &str = "SELECT seq, digest, body, (extract(epoch FROM created_at) * 1000)::bigint AS created_at_ms \
                      FROM messages";

impl PostgresMessageStore {
    /// Connects to `url` (a `postgres://` URL) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool =
            platform::postgres::connect_pool(url, sqlx::migrate!("./migrations"), "messages", 16)
                .await
                .map_err(BackendError::from)?;
        Ok(Self { pool })
    }
}

fn stored(row: &sqlx::postgres::PgRow) -> Result<StoredMessage, StoreError> {
    let digest: Vec<u8> = row.try_get("digest").map_err(failed("read"))?;
    let seq: i64 = row.try_get("seq").map_err(failed("read"))?;
    Ok(StoredMessage {
        digest: Digest::from_bytes(&digest).ok_or_else(|| {
            StoreError::Corrupt(Corruption::new(
                format!("sequence {seq}"),
                format!("a digest of {} bytes", digest.len()),
            ))
        })?,
        body: row.try_get("body").map_err(failed("read"))?,
        created_at_ms: row.try_get("created_at_ms").map_err(failed("read"))?,
        seq: u64::try_from(seq).map_err(|_| {
            StoreError::Corrupt(Corruption::new(
                format!("sequence {seq}"),
                "a negative sequence",
            ))
        })?,
    })
}

#[async_trait]
impl MessageStore for PostgresMessageStore {
    async fn put(&self, message: &Message, created_at_ms: i64) -> Result<PutOutcome, StoreError> {
        let result = sqlx::query(
            "INSERT INTO messages (digest, body, created_at) \
             VALUES ($1, $2, to_timestamp($3::int8::float8 / 1000)) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(message.digest().as_bytes().as_slice())
        .bind(message.text().as_bytes())
        .bind(created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(failed("insert message"))?;
        Ok(if result.rows_affected() == 1 {
            PutOutcome::Created
        } else {
            PutOutcome::AlreadyStored
        })
    }

    async fn get(&self, digest: &Digest) -> Result<Option<StoredMessage>, StoreError> {
        let row = sqlx::query(&format!("{SELECT} WHERE digest = $1"))
            .bind(digest.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("get message"))?;
        row.as_ref().map(stored).transpose()
    }

    async fn page(&self, after: Option<Cursor>, limit: PageLimit) -> Result<Page, StoreError> {
        let after = after.map_or(0, |c| i64::try_from(c.seq()).unwrap_or(i64::MAX));
        let query = format!("{SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2");
        // Streamed, so a page that hits the byte bound stops reading early.
        let mut rows = sqlx::query(&query)
            .bind(after)
            .bind(i64::from(limit.get()) + 1)
            .fetch(&self.pool);
        let mut items: Vec<StoredMessage> = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        while let Some(row) = rows.try_next().await.map_err(failed("page messages"))? {
            let message = stored(&row)?;
            bytes += message.body.len();
            if items.len() == limit.get() as usize || (!items.is_empty() && bytes > PAGE_MAX_BYTES)
            {
                next = items.last().map(|m| Cursor::new(m.seq));
                break;
            }
            items.push(message);
        }
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
