//! `PostgreSQL` message store (sqlx). Owns its schema: the migrations in
//! `crates/messages/migrations` are embedded and applied at start.
//!
//! Table `messages(seq, digest, body, created_at)`; `body` is `bytea` so any
//! UTF-8 text (NUL included) is stored byte for byte.
//!
//! Puts go through the platform's group-commit writer: the puts waiting
//! while the previous statement ran are inserted by one multi-row
//! `INSERT … SELECT … FROM unnest(…) ON CONFLICT DO NOTHING RETURNING digest`,
//! one transaction and one WAL flush for the group, and each caller is
//! answered once it has committed. Rows go in digest order, so replicas
//! inserting overlapping groups take their unique-index locks in the same
//! order and cannot deadlock; the order among puts that arrived together
//! is theirs to have, none of them was first.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use platform::backend::BackendError;
use platform::group_commit::{CommitError, GroupCommit};
use sqlx::{PgPool, Row};

use crate::domain::{Cursor, Digest, Message, PAGE_MAX_BYTES, PageLimit, StoredMessage};
use crate::ports::{Corruption, MessageStore, Page, PutOutcome, StoreError};

/// Puts waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most puts one statement inserts.
const MAX_BATCH: usize = 512;

struct Put {
    digest: Digest,
    body: Vec<u8>,
    created_at_ms: i64,
}

/// Messages in a `PostgreSQL` table, on a connection pool, inserted in groups.
pub struct PostgresMessageStore {
    pool: PgPool,
    writer: GroupCommit<Put, PutOutcome>,
}

/// Inserts one group in one statement: each new digest once, in digest
/// order; a put is `Created` when its row was inserted by it (the first put
/// of a digest new to the table), `AlreadyStored` otherwise.
async fn insert_group(pool: PgPool, puts: Vec<Put>) -> Result<Vec<PutOutcome>, BackendError> {
    // The first put of each digest, in digest order.
    let mut first: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (i, put) in puts.iter().enumerate() {
        first.entry(put.digest.as_bytes().as_slice()).or_insert(i);
    }
    let digests: Vec<&[u8]> = first.keys().copied().collect();
    let bodies: Vec<&[u8]> = first.values().map(|&i| puts[i].body.as_slice()).collect();
    let created_at: Vec<i64> = first.values().map(|&i| puts[i].created_at_ms).collect();
    let inserted: Vec<Vec<u8>> = sqlx::query_scalar(
        "INSERT INTO messages (digest, body, created_at) \
         SELECT d, b, to_timestamp(t::float8 / 1000) \
         FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) AS u(d, b, t) ORDER BY d \
         ON CONFLICT (digest) DO NOTHING RETURNING digest",
    )
    .bind(&digests)
    .bind(&bodies)
    .bind(&created_at)
    .fetch_all(&pool)
    .await
    .map_err(|e| BackendError::postgres("insert messages", e))?;
    let inserted: HashSet<Vec<u8>> = inserted.into_iter().collect();
    Ok(puts
        .iter()
        .enumerate()
        .map(|(i, put)| {
            let digest = put.digest.as_bytes().as_slice();
            if first.get(digest) == Some(&i) && inserted.contains(digest) {
                PutOutcome::Created
            } else {
                PutOutcome::AlreadyStored
            }
        })
        .collect())
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
        let writer_pool = pool.clone();
        let writer = GroupCommit::spawn_async("messages", QUEUE_DEPTH, MAX_BATCH, move |puts| {
            insert_group(writer_pool.clone(), puts)
        });
        Ok(Self { pool, writer })
    }

    /// Copies messages from another store, keeping their order and times:
    /// one statement, rows inserted in the order given (so they list after
    /// what the table holds, in the order they had), a digest already in
    /// the table left as it is. Returns how many rows were new. For
    /// `quintet copy`; a rerun of the same messages inserts nothing.
    pub async fn import(&self, messages: &[StoredMessage]) -> Result<u64, StoreError> {
        let digests: Vec<&[u8]> = messages
            .iter()
            .map(|m| m.digest.as_bytes().as_slice())
            .collect();
        let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
        let created_at: Vec<i64> = messages.iter().map(|m| m.created_at_ms).collect();
        let result = sqlx::query(
            "INSERT INTO messages (digest, body, created_at) \
             SELECT d, b, to_timestamp(t::float8 / 1000) \
             FROM unnest($1::bytea[], $2::bytea[], $3::int8[]) WITH ORDINALITY AS u(d, b, t, n) \
             ORDER BY n ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digests)
        .bind(&bodies)
        .bind(&created_at)
        .execute(&self.pool)
        .await
        .map_err(failed("import messages"))?;
        Ok(result.rows_affected())
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
    fn engine(&self) -> &'static str {
        "postgresql"
    }

    async fn put(&self, message: &Message, created_at_ms: i64) -> Result<PutOutcome, StoreError> {
        let put = Put {
            digest: message.digest(),
            body: message.text().as_bytes().to_vec(),
            created_at_ms,
        };
        self.writer.submit(put).await.map_err(|e| match e {
            CommitError::Closed => StoreError::Unavailable(BackendError::closed("postgres")),
            failed @ CommitError::Failed(_) => StoreError::Unavailable(failed.into()),
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
        // Puts already queued are inserted before the pool closes.
        self.writer.close().await;
        self.pool.close().await;
    }
}
