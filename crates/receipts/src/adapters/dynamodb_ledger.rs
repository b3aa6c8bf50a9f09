//! DynamoDB transaction ledger (aws-sdk-dynamodb) on the seed's table:
//! `TransactionIdTable`, partition key `TransactionId` (S), no sort key, so
//! an existing seed table is used as it is. Not here: SDK set-up (see
//! [`platform::aws`]).
//!
//! Item: `TransactionId` S | `JobId` S | `UserId` N | `ClaimedAt` N (ms
//! since the Unix epoch). An item with no `JobId` (the seed stored only the
//! transaction id) counts as claimed by another job, named `""`.
//!
//! A claim is one conditional `PutItem` (`attribute_not_exists(TransactionId)`),
//! which DynamoDB decides atomically however many workers race. When the
//! condition fails, the holder comes back in the same answer
//! (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); if an endpoint leaves
//! it out, a strongly consistent `GetItem` reads it. Throttling is retried
//! by the SDK (standard mode, backoff with jitter) within the settings'
//! attempts and timeouts; past that a claim is `Unavailable` and the job is
//! retried later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableDescription, TableStatus,
};
use platform::aws::{AwsSettings, describe_error, sdk_config};

use crate::ports::{Claim, LedgerError, TransactionLedger};

/// The seed's table name.
pub const DEFAULT_TABLE: &str = "TransactionIdTable";
/// Longest wait for a table being created to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

const TRANSACTION_ID: &str = "TransactionId";
const JOB_ID: &str = "JobId";
const USER_ID: &str = "UserId";
const CLAIMED_AT: &str = "ClaimedAt";

type Item = HashMap<String, AttributeValue>;

/// A [`TransactionLedger`] on one DynamoDB table.
pub struct DynamoLedger {
    client: Client,
    table: String,
    closed: AtomicBool,
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
        validate_table_name(table)?;
        let config = sdk_config(settings).await;
        let ledger = Self {
            client: Client::new(&config),
            table: table.to_owned(),
            closed: AtomicBool::new(false),
        };
        let description = match ledger.describe().await {
            Ok(description) => description,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                if !create_if_missing {
                    return Err(LedgerError::Unavailable(format!(
                        "dynamodb table '{table}' does not exist (region {}); create it with \
                         partition key '{TRANSACTION_ID}' (S) or let quintet create it",
                        config.region().map_or("unset", |r| r.as_ref())
                    )));
                }
                ledger.create_table().await?
            }
            Err(e) => return Err(ledger.unavailable("DescribeTable", &e)),
        };
        check_key_schema(table, &description)?;
        ledger.wait_active(description).await?;
        Ok(ledger)
    }

    /// The table this ledger uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn describe(
        &self,
    ) -> Result<
        TableDescription,
        SdkError<aws_sdk_dynamodb::operation::describe_table::DescribeTableError>,
    > {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await?;
        Ok(out
            .table
            .unwrap_or_else(|| TableDescription::builder().build()))
    }

    async fn create_table(&self) -> Result<TableDescription, LedgerError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| {
            LedgerError::Unavailable(format!("dynamodb CreateTable request: {e}"))
        };
        let key = KeySchemaElement::builder()
            .attribute_name(TRANSACTION_ID)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build)?;
        let definition = AttributeDefinition::builder()
            .attribute_name(TRANSACTION_ID)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(definition)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(out) => {
                tracing::info!(table = %self.table, "dynamodb ledger table created");
                Ok(out
                    .table_description
                    .unwrap_or_else(|| TableDescription::builder().build()))
            }
            // Created meanwhile by another instance.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                self.describe()
                    .await
                    .map_err(|e| self.unavailable("DescribeTable", &e))
            }
            Err(e) => Err(self.unavailable("CreateTable", &e)),
        }
    }

    async fn wait_active(&self, mut description: TableDescription) -> Result<(), LedgerError> {
        let deadline = Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            match description.table_status {
                Some(TableStatus::Active) | Some(TableStatus::Updating) | None => return Ok(()),
                Some(TableStatus::Creating) if Instant::now() < deadline => {}
                Some(status) => {
                    return Err(LedgerError::Unavailable(format!(
                        "dynamodb table '{}' is {}",
                        self.table,
                        status.as_str()
                    )));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            description = self
                .describe()
                .await
                .map_err(|e| self.unavailable("DescribeTable", &e))?;
        }
    }

    fn ensure_open(&self) -> Result<(), LedgerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable(format!(
                "dynamodb ledger on table '{}' is closed",
                self.table
            )));
        }
        Ok(())
    }

    fn unavailable<E, R>(&self, operation: &str, error: &SdkError<E, R>) -> LedgerError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        LedgerError::Unavailable(format!(
            "dynamodb table '{}': {}",
            self.table,
            describe_error(operation, error)
        ))
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
            .map_err(|e| self.unavailable("GetItem", &e))?;
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

fn validate_table_name(table: &str) -> Result<(), LedgerError> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(LedgerError::Unavailable(format!(
            "'{}' is not a DynamoDB table name (3..=255 of a-z A-Z 0-9 _ - .)",
            table.chars().take(64).collect::<String>()
        )))
    }
}

fn check_key_schema(table: &str, description: &TableDescription) -> Result<(), LedgerError> {
    let schema = description.key_schema.as_deref().unwrap_or_default();
    let hash_ok = matches!(schema, [only] if only.attribute_name == TRANSACTION_ID && only.key_type == KeyType::Hash);
    let type_ok = description
        .attribute_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|d| d.attribute_name == TRANSACTION_ID && d.attribute_type == ScalarAttributeType::S);
    // moto and DynamoDB always return both; an empty answer is not a wrong schema.
    if schema.is_empty() || (hash_ok && type_ok) {
        return Ok(());
    }
    let found: Vec<String> = schema
        .iter()
        .map(|k| format!("{} {}", k.attribute_name, k.key_type.as_str()))
        .collect();
    Err(LedgerError::Unavailable(format!(
        "dynamodb table '{table}' has key schema [{}]; the receipts ledger needs partition key \
         '{TRANSACTION_ID}' (S) and no sort key",
        found.join(", ")
    )))
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
        user_id: i64,
    ) -> Result<Claim, LedgerError> {
        self.ensure_open()?;
        let item = Item::from([
            (
                TRANSACTION_ID.to_owned(),
                AttributeValue::S(transaction_id.to_owned()),
            ),
            (JOB_ID.to_owned(), AttributeValue::S(job_id.to_owned())),
            (USER_ID.to_owned(), AttributeValue::N(user_id.to_string())),
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
                            LedgerError::Unavailable(format!(
                                "dynamodb table '{}': transaction {transaction_id} failed its \
                                 claim condition but is not in the table",
                                self.table
                            ))
                        })?,
                    }
                }
                _ => return Err(self.unavailable("PutItem", &e)),
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
        self.describe()
            .await
            .map(|_| ())
            .map_err(|e| self.unavailable("DescribeTable", &e))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table_name(DEFAULT_TABLE).is_ok());
        assert!(validate_table_name("ab").is_err());
        assert!(validate_table_name("bad name").is_err());
    }
}
