//! Embedded transaction ledger on redb: one table, transaction id →
//! (job id, user id, claimed_at_ms), in a file of its own.
//!
//! Claims go through the platform's group-commit writer: the claims queued
//! by many workers are decided in order in one write transaction (a claim
//! sees the ones before it in its batch), and each worker is answered once
//! that transaction is durable. A batch that inserted nothing (only
//! redeliveries and duplicates) is aborted, not committed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use platform::group_commit::{CommitError, GroupCommit};
use redb::{Database, ReadableTable, TableDefinition};

use crate::ports::{Claim, LedgerError, TransactionLedger};

/// transaction id → (job id, user id, claimed_at_ms)
const CLAIMS: TableDefinition<&str, (&str, i64, i64)> =
    TableDefinition::new("receipt_transactions");

/// Claims waiting for the writer; beyond this, workers wait (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Most claims one transaction decides.
const MAX_BATCH: usize = 512;

fn unavailable(error: impl std::fmt::Display) -> LedgerError {
    LedgerError::Unavailable(error.to_string())
}

fn closed() -> LedgerError {
    unavailable("ledger is closed")
}

struct ClaimOp {
    transaction_id: String,
    job_id: String,
    user_id: i64,
}

/// Transactions claimed so far, in one redb file.
pub struct RedbLedger {
    db: Arc<Database>,
    writer: GroupCommit<ClaimOp, Claim>,
    closed: AtomicBool,
}

impl RedbLedger {
    /// Opens (or creates) the ledger file; fails if another process holds it.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = platform::embedded::create_database(path).map_err(unavailable)?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(CLAIMS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let db = Arc::new(db);
        let writer_db = db.clone();
        let writer = GroupCommit::spawn("receipts-ledger", QUEUE_DEPTH, MAX_BATCH, move |claims| {
            commit(&writer_db, claims).map_err(|e| e.to_string())
        })
        .map_err(unavailable)?;
        Ok(Self {
            db,
            writer,
            closed: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> Result<(), LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
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
        let mut outcomes = Vec::with_capacity(claims.len());
        for claim in claims {
            let holder = table
                .get(claim.transaction_id.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().0.to_owned());
            outcomes.push(match holder {
                None => {
                    table
                        .insert(
                            claim.transaction_id.as_str(),
                            (claim.job_id.as_str(), claim.user_id, claimed_at_ms),
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
        user_id: i64,
    ) -> Result<Claim, LedgerError> {
        self.check_open()?;
        let claim = ClaimOp {
            transaction_id: transaction_id.to_owned(),
            job_id: job_id.to_owned(),
            user_id,
        };
        self.writer.submit(claim).await.map_err(|e| match e {
            CommitError::Closed => closed(),
            CommitError::Failed(error) => unavailable(error),
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.check_open()?;
        self.db.begin_read().map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.writer.close().await;
    }
}
