//! Opening a DynamoDB table keyed by one string partition key, shared by the
//! adapters that keep items in such a table (kv's store, receipts' ledger):
//! name validation, `DescribeTable`, creating the table on demand
//! (`PAY_PER_REQUEST`), checking its key schema and waiting while it is
//! `CREATING`. Not here: anything about items, which each adapter owns.
//!
//! Errors are one-line `String`s naming the table, for each adapter to wrap
//! in its own "unavailable" error.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus,
};

use super::{AwsSettings, describe_error, sdk_config};

/// Longest wait for a table being created to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
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
) -> Result<Client, String> {
    // Before any SDK set-up, which may reach the network (IMDS) for a region.
    validate_table_name(table.name)?;
    let config = sdk_config(settings).await;
    let client = Client::new(&config);
    let description = match describe_table(&client, table.name).await {
        Ok(description) => description,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            if !create_if_missing {
                return Err(format!(
                    "dynamodb table '{}' does not exist (region {}); create it with \
                     partition key '{}' (S) or let quintet create it",
                    table.name,
                    config.region().map_or("unset", |r| r.as_ref()),
                    table.partition_key,
                ));
            }
            create_table(&client, table).await?
        }
        Err(e) => return Err(unavailable(table.name, "DescribeTable", &e)),
    };
    check_key_schema(table, &description)?;
    wait_active(&client, table.name, description).await?;
    Ok(client)
}

/// `Ok` if `table` is a valid DynamoDB table name: 3 to 255 of
/// `a-z A-Z 0-9 _ - .`.
pub fn validate_table_name(table: &str) -> Result<(), String> {
    let valid = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a DynamoDB table name (3..=255 of a-z A-Z 0-9 _ - .)",
            table.chars().take(64).collect::<String>()
        ))
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

async fn create_table(client: &Client, table: &KeyedTable<'_>) -> Result<TableDescription, String> {
    let build =
        |e: aws_sdk_dynamodb::error::BuildError| format!("dynamodb CreateTable request: {e}");
    let key = KeySchemaElement::builder()
        .attribute_name(table.partition_key)
        .key_type(KeyType::Hash)
        .build()
        .map_err(build)?;
    let definition = AttributeDefinition::builder()
        .attribute_name(table.partition_key)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build)?;
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
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            describe_table(client, table.name)
                .await
                .map_err(|e| unavailable(table.name, "DescribeTable", &e))
        }
        Err(e) => Err(unavailable(table.name, "CreateTable", &e)),
    }
}

/// Waits up to [`TABLE_ACTIVE_TIMEOUT`] while the table is `CREATING`; any
/// other status but `ACTIVE` and `UPDATING` (both usable) is an error.
async fn wait_active(
    client: &Client,
    table: &str,
    mut description: TableDescription,
) -> Result<(), String> {
    let deadline = Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        match description.table_status {
            Some(TableStatus::Active) | Some(TableStatus::Updating) | None => return Ok(()),
            Some(TableStatus::Creating) if Instant::now() < deadline => {}
            Some(status) => {
                return Err(format!("dynamodb table '{table}' is {}", status.as_str()));
            }
        }
        tokio::time::sleep(TABLE_ACTIVE_POLL).await;
        description = describe_table(client, table)
            .await
            .map_err(|e| unavailable(table, "DescribeTable", &e))?;
    }
}

fn check_key_schema(table: &KeyedTable<'_>, description: &TableDescription) -> Result<(), String> {
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
    Err(format!(
        "dynamodb table '{}' has key schema [{}]; {} needs partition key '{}' (S) \
         and no sort key",
        table.name,
        found.join(", "),
        table.needed_by,
        table.partition_key,
    ))
}

fn unavailable<E, R>(table: &str, operation: &str, error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!(
        "dynamodb table '{table}': {}",
        describe_error(operation, error)
    )
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
        let err = validate_table_name("bad name").expect_err("space");
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
        assert_eq!(
            err,
            "dynamodb table 'TransactionIdTable' has key schema [TransactionId HASH, At RANGE]; \
             the receipts ledger needs partition key 'TransactionId' (S) and no sort key"
        );
    }
}
