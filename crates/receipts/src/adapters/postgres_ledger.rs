//! `PostgreSQL` transaction ledger (sqlx). Owns its schema: the migrations in
//! `crates/receipts/migrations` are embedded and applied at start.
//!
//! A claim is one statement (below) in the common case. Its fallback: when
//! another session inserts the same transaction id concurrently, our INSERT
//! waits for it and does nothing, but the statement's snapshot, taken before
//! that row was committed, cannot see it; a second statement then reads it.

use async_trait::async_trait;
use sqlx::PgPool;

use crate::domain::UserId;
use crate::ports::{Claim, LedgerError, TransactionLedger};
use platform::backend::BackendError;

/// `(true, our job)` when inserted, `(false, holder)` when the row was there
/// before the statement began, no row in the race described above.
const CLAIM: &str = r"
WITH inserted AS (
    INSERT INTO receipt_transactions (transaction_id, job_id, user_id, user_id_text)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (transaction_id) DO NOTHING
    RETURNING job_id
)
SELECT true AS new, job_id FROM inserted
UNION ALL
SELECT false AS new, job_id FROM receipt_transactions
WHERE transaction_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
";

/// Transactions claimed so far, in table `receipt_transactions`.
pub struct PostgresLedger {
    pool: PgPool,
}

fn unavailable(operation: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |error| BackendError::postgres(operation, error).into()
}

impl PostgresLedger {
    /// Connects to `url` (a `postgres://` URL) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let pool = platform::postgres::connect(url, sqlx::migrate!("./migrations"), "receipts")
            .await
            .map_err(BackendError::from)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl TransactionLedger for PostgresLedger {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn claim(
        &self,
        transaction_id: &str,
        job_id: &str,
        user_id: &UserId,
    ) -> Result<Claim, LedgerError> {
        // An integer user id in `user_id`, a string one in `user_id_text`
        // (see the migration that added it).
        let (user_int, user_text) = match user_id {
            UserId::Int(n) => (Some(*n), None),
            UserId::Text(text) => (None, Some(text.as_str())),
        };
        let row: Option<(bool, String)> = sqlx::query_as(CLAIM)
            .bind(transaction_id)
            .bind(job_id)
            .bind(user_int)
            .bind(user_text)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("claim"))?;
        let (new, holder) = if let Some(row) = row {
            row
        } else {
            let holder: Option<String> = sqlx::query_scalar(
                "SELECT job_id FROM receipt_transactions WHERE transaction_id = $1",
            )
            .bind(transaction_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable("read claim"))?;
            let holder = holder.ok_or_else(|| LedgerError::Inconsistent {
                transaction_id: transaction_id.to_owned(),
            })?;
            (false, holder)
        };
        Ok(if new {
            Claim::New
        } else if holder == job_id {
            Claim::SameJob
        } else {
            Claim::OtherJob { job_id: holder }
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        platform::postgres::ping(&self.pool)
            .await
            .map_err(unavailable("ping"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
