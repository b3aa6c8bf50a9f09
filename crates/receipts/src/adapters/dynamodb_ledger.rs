//! `DynamoDB` transaction ledger (aws-sdk-dynamodb) on the seed's table:
//! `TransactionIdTable`, partition key `TransactionId` (S), no sort key, so
//! an existing seed table is used as it is. Not here: SDK set-up (see
//! [`platform::aws`]) and opening the table (see [`platform::aws::dynamodb`]).
//!
//! Item: `TransactionId` S | `JobId` S | `UserId` N, or S for a string
//! user id | `ClaimedAt` N (ms since the Unix epoch). An item with no `JobId` (the seed stored only the
//! transaction id) counts as claimed by another job, named `""`.
//!
//! A claim is one conditional `PutItem` (`attribute_not_exists(TransactionId)`),
//! which `DynamoDB` decides atomically however many workers race. When the
//! condition fails, the holder comes back in the same answer
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); if an endpoint leaves
//! it out, a strongly consistent `GetItem` reads it. Throttling is retried
//! by the SDK (standard mode, backoff with jitter) within the settings'
//! attempts and timeouts; past that a claim is `Unavailable` and the job is
//! retried later.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use platform::aws::AwsSettings;
use platform::aws::dynamodb::{KeyedTable, describe_table, open_table};
use platform::backend::{BackendError, CloseGate};

use crate::domain::UserId;
use crate::ports::{Claim, LedgerError, TransactionLedger};

/// The seed's table name.
pub const DEFAULT_TABLE: &str = "TransactionIdTable";

const TRANSACTION_ID: &str = "TransactionId";
const JOB_ID: &str = "JobId";
const USER_ID: &str = "UserId";
const CLAIMED_AT: &str = "ClaimedAt";

type Item = HashMap<String, AttributeValue>;

/// A [`TransactionLedger`] on one `DynamoDB` table.
pub struct DynamoLedger {
    client: Client,
    table: String,
    closed: CloseGate,
}

impl std::fmt::Debug for DynamoLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoLedger")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl DynamoLedger {
    /// Connects to `table` and checks its key schema (partition key
    /// `TransactionId`, type S, no sort key). A missing table is created
    /// (on-demand billing) when `create_if_missing`, and is an error otherwise.
    pub async fn connect(
        settings: &AwsSettings,
        table: &str,
        create_if_missing: bool,
    ) -> Result<Self, LedgerError> {
        let spec = KeyedTable {
            name: table,
            partition_key: TRANSACTION_ID,
            needed_by: "the receipts ledger",
        };
        let client = open_table(settings, &spec, create_if_missing)
            .await
            .map_err(BackendError::from)?;
        Ok(Self {
            client,
            table: table.to_owned(),
            closed: CloseGate::default(),
        })
    }

    /// The table this ledger uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn ensure_open(&self) -> Result<(), LedgerError> {
        Ok(self.closed.check("dynamodb")?)
    }

    fn unavailable<E, R>(operation: &'static str, error: SdkError<E, R>) -> LedgerError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        BackendError::aws("dynamodb", operation, error).into()
    }

    /// The job holding `transaction_id`, read strongly consistent.
    async fn holder(&self, transaction_id: &str) -> Result<Option<String>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(TRANSACTION_ID, AttributeValue::S(transaction_id.to_owned()))
            .consistent_read(true)
            .projection_expression("#t, #j")
            .expression_attribute_names("#t", TRANSACTION_ID)
            .expression_attribute_names("#j", JOB_ID)
            .send()
            .await
            .map_err(|e| Self::unavailable("GetItem", e))?;
        Ok(out
            .item
            .filter(|item| !item.is_empty())
            .map(|item| Self::job_of(&item)))
    }

    /// The holder an item names; an item without a `JobId` string (the
    /// seed wrote only `TransactionId`) was claimed by a job we cannot name.
    fn job_of(item: &Item) -> String {
        match item.get(JOB_ID) {
            Some(AttributeValue::S(job)) => job.clone(),
            _ => String::new(),
        }
    }
}

#[async_trait]
impl TransactionLedger for DynamoLedger {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    async fn claim(
        &self,
        transaction_id: &str,
        job_id: &str,
        user_id: &UserId,
    ) -> Result<Claim, LedgerError> {
        self.ensure_open()?;
        let user_id = match user_id {
            UserId::Int(n) => AttributeValue::N(n.to_string()),
            UserId::Text(text) => AttributeValue::S(text.as_str().to_owned()),
        };
        let item = Item::from([
            (
                TRANSACTION_ID.to_owned(),
                AttributeValue::S(transaction_id.to_owned()),
            ),
            (JOB_ID.to_owned(), AttributeValue::S(job_id.to_owned())),
            (USER_ID.to_owned(), user_id),
            (
                CLAIMED_AT.to_owned(),
                AttributeValue::N(now_ms().to_string()),
            ),
        ]);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#t)")
            .expression_attribute_names("#t", TRANSACTION_ID)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let holder = match put {
            Ok(_) => return Ok(Claim::New),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item.as_ref().filter(|item| !item.is_empty()) {
                        Some(item) => Self::job_of(item),
                        None => self.holder(transaction_id).await?.ok_or_else(|| {
                            LedgerError::Inconsistent {
                                transaction_id: transaction_id.to_owned(),
                            }
                        })?,
                    }
                }
                _ => return Err(Self::unavailable("PutItem", e)),
            },
        };
        Ok(if holder == job_id {
            Claim::SameJob
        } else {
            Claim::OtherJob { job_id: holder }
        })
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.ensure_open()?;
        describe_table(&self.client, &self.table)
            .await
            .map(|_| ())
            .map_err(|e| Self::unavailable("DescribeTable", e))
    }

    async fn close(&self) {
        self.closed.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_name_is_valid() {
        assert!(platform::aws::dynamodb::validate_table_name(DEFAULT_TABLE).is_ok());
    }
}
