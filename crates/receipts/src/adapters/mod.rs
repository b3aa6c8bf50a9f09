//! One module per technology implementing a receipts port.

pub mod apple;
pub mod dynamodb_ledger;
pub mod postgres_ledger;
pub mod redb_ledger;
pub mod redb_queue;
pub mod sqs;
