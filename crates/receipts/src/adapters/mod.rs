//! One module per technology implementing a receipts port.

pub mod postgres_ledger;
pub mod redb_ledger;
pub mod redb_queue;
