//! Opening a DynamoDB table keyed by one string partition key, shared by the
//! adapters that keep items in such a table (kv's store, receipts' ledger):
//! name validation, `DescribeTable`, creating the table on demand
//! (`PAY_PER_REQUEST`), checking its key schema and waiting while it is
//! `CREATING`. Not here: anything about items, which each adapter owns.
//!
//! Errors are [`TableError`]s naming the table; each converts into the
//! [`BackendError`] an adapter's "unavailable" case wraps.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus,
};

use super::{AwsSettings, sdk_config};
use crate::backend::{BackendError, FailureKind};

/// A name DynamoDB would refuse (3 to 255 of `a-z A-Z 0-9 _ - .`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a DynamoDB table name (3..=255 of a-z A-Z 0-9 _ - .)")]
pub struct TableNameError(String);

/// Why a table could not be opened; every case names the table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The name is not one DynamoDB takes.
    #[error(transparent)]
    Name(#[from] TableNameError),
    /// The table does not exist and was not to be created.
    #[error(
        "dynamodb table '{table}' does not exist (region {region}); create it with partition \
         key '{partition_key}' (S) or let quintet create it"
    )]
    Missing {
        /// The table.
        table: String,
        /// The region it was looked for in.
        region: String,
        /// The partition key it needs.
        partition_key: String,
    },
    /// The table's key schema is not the one the adapter needs.
    #[error(
        "dynamodb table '{table}' has key schema [{found}]; {needed_by} needs partition key \
         '{partition_key}' (S) and no sort key"
    )]
    WrongSchema {
        /// The table.
        table: String,
        /// Its key schema, as `name TYPE` items.
        found: String,
        /// Who needs the shape.
        needed_by: String,
        /// The partition key needed.
        partition_key: String,
    },
    /// The table is in a state it cannot be used in (or stayed `CREATING`).
    #[error("dynamodb table '{table}' is {status}")]
    NotUsable {
        /// The table.
        table: String,
        /// Its status.
        status: String,
    },
    /// A `CreateTable` request could not be built.
    #[error("dynamodb CreateTable request: {0}")]
    Request(#[from] aws_sdk_dynamodb::error::BuildError),
    /// A call to DynamoDB failed.
    #[error("dynamodb table '{table}': {}", crate::backend::chain(.source))]
    Call {
        /// The table.
        table: String,
        /// The failed call, classified.
        #[source]
        source: BackendError,
    },
}

impl TableError {
    /// What kind of failure it is: a failed call's own, else a refusal.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Call { source, .. } => source.kind(),
            Self::NotUsable { .. } | Self::Request(_) => FailureKind::Other,
            Self::Name(_) | Self::Missing { .. } | Self::WrongSchema { .. } => {
                FailureKind::Rejected
            }
        }
    }
}

/// "dynamodb open table: <kind>", with the whole [`TableError`] as source.
impl From<TableError> for BackendError {
    fn from(error: TableError) -> Self {
        BackendError::new("dynamodb", "open table", error.kind(), error)
    }
}

/// Longest wait for a table being created to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_mins(2);
/// Pause between `DescribeTable` calls while a table is being created.
const TABLE_ACTIVE_POLL: Duration = Duration::from_millis(500);

/// The table an adapter needs: partition key `partition_key` (S), no sort key.
#[derive(Debug, Clone, Copy)]
pub struct KeyedTable<'a> {
    /// The table's name (checked by [`validate_table_name`]).
    pub name: &'a str,
    /// The partition key's attribute name.
    pub partition_key: &'a str,
    /// Who needs that shape, as the wrong-schema error names it
    /// (e.g. "quintet", "the receipts ledger").
    pub needed_by: &'a str,
}

/// Checks `table`'s name, builds a client from `settings`, and makes sure
/// the table exists with the expected key schema and is usable. A missing
/// table is created (on-demand billing) when `create_if_missing`, and is an
/// error telling how to create it otherwise.
pub async fn open_table(
    settings: &AwsSettings,
    table: &KeyedTable<'_>,
    create_if_missing: bool,
) -> Result<Client, TableError> {
    // Before any SDK set-up, which may reach the network (IMDS) for a region.
    validate_table_name(table.name)?;
    let config = sdk_config(settings).await;
    let client = Client::new(&config);
    let description = match describe_table(&client, table.name).await {
        Ok(description) => description,
        Err(e)
            if e.as_service_error()
                .is_some_and(DescribeTableError::is_resource_not_found_exception) =>
        {
            if !create_if_missing {
                return Err(TableError::Missing {
                    table: table.name.to_owned(),
                    region: config.region().map_or("unset", |r| r.as_ref()).to_owned(),
                    partition_key: table.partition_key.to_owned(),
                });
            }
            create_table(&client, table).await?
        }
        Err(e) => return Err(unavailable(table.name, "DescribeTable", e)),
    };
    check_key_schema(table, &description)?;
    wait_active(&client, table.name, description).await?;
    Ok(client)
}

/// `Ok` if `table` is a valid DynamoDB table name: 3 to 255 of
/// `a-z A-Z 0-9 _ - .`.
pub fn validate_table_name(table: &str) -> Result<(), TableNameError> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(TableNameError(table.chars().take(64).collect()))
    }
}

/// `DescribeTable` for `table`; an answer without a description reads as an
/// empty one. Also an adapter's health check.
pub async fn describe_table(
    client: &Client,
    table: &str,
) -> Result<TableDescription, SdkError<DescribeTableError>> {
    let out = client.describe_table().table_name(table).send().await?;
    Ok(out
        .table
        .unwrap_or_else(|| TableDescription::builder().build()))
}

async fn create_table(
    client: &Client,
    table: &KeyedTable<'_>,
) -> Result<TableDescription, TableError> {
    let key = KeySchemaElement::builder()
        .attribute_name(table.partition_key)
        .key_type(KeyType::Hash)
        .build()?;
    let definition = AttributeDefinition::builder()
        .attribute_name(table.partition_key)
        .attribute_type(ScalarAttributeType::S)
        .build()?;
    let created = client
        .create_table()
        .table_name(table.name)
        .key_schema(key)
        .attribute_definitions(definition)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(out) => {
            tracing::info!(
                table = %table.name,
                partition_key = %table.partition_key,
                "dynamodb table created"
            );
            Ok(out
                .table_description
                .unwrap_or_else(|| TableDescription::builder().build()))
        }
        // Created meanwhile by another instance.
        Err(e)
            if e.as_service_error()
                .is_some_and(CreateTableError::is_resource_in_use_exception) =>
        {
            describe_table(client, table.name)
                .await
                .map_err(|e| unavailable(table.name, "DescribeTable", e))
        }
        Err(e) => Err(unavailable(table.name, "CreateTable", e)),
    }
}

/// Waits up to [`TABLE_ACTIVE_TIMEOUT`] while the table is `CREATING`; any
/// other status but `ACTIVE` and `UPDATING` (both usable) is an error.
async fn wait_active(
    client: &Client,
    table: &str,
    mut description: TableDescription,
) -> Result<(), TableError> {
    let deadline = Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        match description.table_status {
            Some(TableStatus::Active | TableStatus::Updating) | None => return Ok(()),
            Some(TableStatus::Creating) if Instant::now() < deadline => {}
            Some(status) => {
                return Err(TableError::NotUsable {
                    table: table.to_owned(),
                    status: status.as_str().to_owned(),
                });
            }
        }
        tokio::time::sleep(TABLE_ACTIVE_POLL).await;
        description = describe_table(client, table)
            .await
            .map_err(|e| unavailable(table, "DescribeTable", e))?;
    }
}

fn check_key_schema(
    table: &KeyedTable<'_>,
    description: &TableDescription,
) -> Result<(), TableError> {
    let schema = description.key_schema.as_deref().unwrap_or_default();
    let hash_ok = matches!(schema, [only]
        if only.attribute_name == table.partition_key && only.key_type == KeyType::Hash);
    let type_ok = description
        .attribute_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|d| {
            d.attribute_name == table.partition_key && d.attribute_type == ScalarAttributeType::S
        });
    // moto and DynamoDB always return both; an empty answer is not a wrong schema.
    if schema.is_empty() || (hash_ok && type_ok) {
        return Ok(());
    }
    let found: Vec<String> = schema
        .iter()
        .map(|k| format!("{} {}", k.attribute_name, k.key_type.as_str()))
        .collect();
    Err(TableError::WrongSchema {
        table: table.name.to_owned(),
        found: found.join(", "),
        needed_by: table.needed_by.to_owned(),
        partition_key: table.partition_key.to_owned(),
    })
}

fn unavailable<E, R>(table: &str, operation: &'static str, error: SdkError<E, R>) -> TableError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    TableError::Call {
        table: table.to_owned(),
        source: BackendError::aws("dynamodb", operation, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEDGER: KeyedTable<'static> = KeyedTable {
        name: "TransactionIdTable",
        partition_key: "TransactionId",
        needed_by: "the receipts ledger",
    };

    fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("name and type are set")
    }

    fn definition(name: &str, attribute_type: ScalarAttributeType) -> AttributeDefinition {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(attribute_type)
            .build()
            .expect("name and type are set")
    }

    #[test]
    fn table_names_are_checked() {
        assert!(validate_table_name("key_value_table").is_ok());
        assert!(validate_table_name("a.b-c_9").is_ok());
        assert!(validate_table_name(&"t".repeat(255)).is_ok());
        assert!(validate_table_name("ab").is_err());
        assert!(validate_table_name(&"t".repeat(256)).is_err());
        let err = validate_table_name("bad name")
            .expect_err("space")
            .to_string();
        assert!(
            err.contains("'bad name' is not a DynamoDB table name"),
            "{err}"
        );
    }

    #[test]
    fn one_string_partition_key_is_the_only_schema_accepted() {
        let good = TableDescription::builder()
            .key_schema(key("TransactionId", KeyType::Hash))
            .attribute_definitions(definition("TransactionId", ScalarAttributeType::S))
            .build();
        assert!(check_key_schema(&LEDGER, &good).is_ok());
        // An answer without a schema is not a wrong schema.
        assert!(check_key_schema(&LEDGER, &TableDescription::builder().build()).is_ok());

        let numeric = TableDescription::builder()
            .key_schema(key("TransactionId", KeyType::Hash))
            .attribute_definitions(definition("TransactionId", ScalarAttributeType::N))
            .build();
        assert!(check_key_schema(&LEDGER, &numeric).is_err());

        let with_sort_key = TableDescription::builder()
            .key_schema(key("TransactionId", KeyType::Hash))
            .key_schema(key("At", KeyType::Range))
            .attribute_definitions(definition("TransactionId", ScalarAttributeType::S))
            .build();
        let err = check_key_schema(&LEDGER, &with_sort_key).expect_err("sort key");
        assert_eq!(err.kind(), FailureKind::Rejected);
        assert_eq!(
            err.to_string(),
            "dynamodb table 'TransactionIdTable' has key schema [TransactionId HASH, At RANGE]; \
             the receipts ledger needs partition key 'TransactionId' (S) and no sort key"
        );
    }
}
