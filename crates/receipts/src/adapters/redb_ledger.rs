//! Embedded transaction ledger on redb: transaction id → (job id, user id,
//! `claimed_at_ms`), in a file of its own. A string user id is kept in a
//! second table (see [`TEXT_USERS`]).
//!
//! Claims go through the platform's group-commit writer: the claims queued
//! by many workers are decided in order in one write transaction (a claim
//! sees the ones before it in its batch), and each worker is answered once
//! that transaction is durable. A batch that inserted nothing (only
//! redeliveries and duplicates) is aborted, not committed.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use platform::backend::{BackendError, CloseGate, FailureKind};
use platform::group_commit::{CommitError, GroupCommit};
use redb::{Database, ReadableTable, TableDefinition};

use crate::domain::UserId;
use crate::ports::{Claim, LedgerError, TransactionLedger};

/// transaction id → (job id, user id, `claimed_at_ms`); the user id is 0 when
/// the job gave a string, which [`TEXT_USERS`] holds.
const CLAIMS: TableDefinition<&str, (&str, i64, i64)> =
    TableDefinition::new("receipt_transactions");
/// transaction id → the string user id of its claim. A table apart rather
/// than a new value type for [`CLAIMS`]: redb refuses to open a table under
/// another type, so ledger files written before string user ids open as they
/// are, and stay readable by the version before this one.
const TEXT_USERS: TableDefinition<&str, &str> =
    TableDefinition::new("receipt_transaction_text_users");

/// Claims waiting for the writer; beyond this, workers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most claims one transaction decides.
const MAX_BATCH: usize = 512;

/// A failed redb call.
fn unavailable(error: impl Into<redb::Error>) -> LedgerError {
    BackendError::redb("ledger", error).into()
}

/// A failure of opening the file or of the group commit.
fn failed(operation: &'static str, cause: impl Into<platform::backend::BoxError>) -> LedgerError {
    BackendError::new("redb", operation, FailureKind::Other, cause).into()
}

fn closed() -> LedgerError {
    BackendError::closed("redb").into()
}

// The ids are what a claim is made of.
#[allow(clippy::struct_field_names)]
struct ClaimOp {
    transaction_id: String,
    job_id: String,
    user_id: UserId,
}

/// Transactions claimed so far, in one redb file.
pub struct RedbLedger {
    db: Arc<Database>,
    writer: GroupCommit<ClaimOp, Claim>,
    closed: CloseGate,
}

impl RedbLedger {
    /// Opens (or creates) the ledger file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = platform::embedded::create_database(path).map_err(|e| failed("open", e))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(CLAIMS).map_err(unavailable)?;
        txn.open_table(TEXT_USERS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer = GroupCommit::spawn("receipts-ledger", QUEUE_DEPTH, MAX_BATCH, move |claims| {
            commit(&writer_db, claims).map_err(|e| {
                platform::backend::BackendError::new(
                    "redb",
                    "commit",
                    platform::backend::FailureKind::Other,
                    e,
                )
            })
        })
        .map_err(|e| BackendError::new("redb", "start writer", FailureKind::Other, e))?;
        Ok(Self {
            db,
            writer,
            closed: CloseGate::default(),
        })
    }

    fn check_open(&self) -> Result<(), LedgerError> {
        self.closed.check("redb")?;
        Ok(())
    }
}

/// Decides `claims` in order in one transaction, committed if any is new.
fn commit(db: &Database, claims: &[ClaimOp]) -> Result<Vec<Claim>, LedgerError> {
    let claimed_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let txn = db.begin_write().map_err(unavailable)?;
    let mut inserted = false;
    let outcomes = {
        let mut table = txn.open_table(CLAIMS).map_err(unavailable)?;
        let mut text_users = txn.open_table(TEXT_USERS).map_err(unavailable)?;
        let mut outcomes = Vec::with_capacity(claims.len());
        for claim in claims {
            let holder = table
                .get(claim.transaction_id.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().0.to_owned());
            outcomes.push(match holder {
                None => {
                    let user_int = match &claim.user_id {
                        UserId::Int(n) => *n,
                        UserId::Text(text) => {
                            text_users
                                .insert(claim.transaction_id.as_str(), text.as_str())
                                .map_err(unavailable)?;
                            0
                        }
                    };
                    table
                        .insert(
                            claim.transaction_id.as_str(),
                            (claim.job_id.as_str(), user_int, claimed_at_ms),
                        )
                        .map_err(unavailable)?;
                    inserted = true;
                    Claim::New
                }
                Some(job_id) if job_id == claim.job_id => Claim::SameJob,
                Some(job_id) => Claim::OtherJob { job_id },
            });
        }
        outcomes
    };
    if inserted {
        txn.commit().map_err(unavailable)?;
    } else {
        txn.abort().map_err(unavailable)?;
    }
    Ok(outcomes)
}

#[async_trait]
impl TransactionLedger for RedbLedger {
    fn kind(&self) -> &'static str {
        "redb"
    }

    async fn claim(
        &self,
        transaction_id: &str,
        job_id: &str,
        user_id: &UserId,
    ) -> Result<Claim, LedgerError> {
        self.check_open()?;
        let claim = ClaimOp {
            transaction_id: transaction_id.to_owned(),
            job_id: job_id.to_owned(),
            user_id: user_id.clone(),
        };
        self.writer.submit(claim).await.map_err(|e| match e {
            CommitError::Closed => closed(),
            CommitError::Failed(error) => failed("commit", error),
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.check_open()?;
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        self.closed.close();
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_string_user_id_is_kept_beside_its_claim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = RedbLedger::open(&dir.path().join("ledger.redb")).expect("open");
        let user = UserId::text("user-8").expect("valid user id");
        assert_eq!(
            ledger.claim("1", "job-a", &user).await.expect("claim"),
            Claim::New
        );
        assert_eq!(
            ledger
                .claim("2", "job-b", &UserId::Int(42))
                .await
                .expect("claim"),
            Claim::New
        );
        let txn = ledger.db.begin_read().expect("read");
        let claims = txn.open_table(CLAIMS).expect("claims");
        let text_users = txn.open_table(TEXT_USERS).expect("text users");
        let claim = |id: &str| {
            claims
                .get(id)
                .expect("get")
                .map(|v| (v.value().0.to_owned(), v.value().1))
        };
        assert_eq!(claim("1"), Some(("job-a".to_owned(), 0)));
        assert_eq!(claim("2"), Some(("job-b".to_owned(), 42)));
        let text = |id: &str| {
            text_users
                .get(id)
                .expect("get")
                .map(|v| v.value().to_owned())
        };
        assert_eq!(text("1").as_deref(), Some("user-8"));
        assert_eq!(text("2"), None);
    }

    #[tokio::test]
    async fn a_ledger_file_from_before_string_user_ids_keeps_its_claims() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.redb");
        {
            // What the previous version wrote: the claims table alone.
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("write");
            txn.open_table(CLAIMS)
                .expect("claims")
                .insert("1", ("job-old", 7, 0))
                .expect("insert");
            txn.commit().expect("commit");
        }
        let ledger = RedbLedger::open(&path).expect("opens as it is");
        let user = UserId::text("user-8").expect("valid user id");
        assert_eq!(
            ledger.claim("1", "job-new", &user).await.expect("claim"),
            Claim::OtherJob {
                job_id: "job-old".into()
            }
        );
        assert_eq!(
            ledger.claim("2", "job-new", &user).await.expect("claim"),
            Claim::New
        );
    }
}
