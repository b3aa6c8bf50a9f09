//! One module per technology implementing a kv port.

pub mod aws;
pub mod aws_kms;
pub mod dynamodb;
pub mod fjall;
pub mod key_provider;
mod listing;
pub mod local_keys;
pub mod migrate;
pub mod postgres;
pub mod rate_limited;
pub mod redb;
